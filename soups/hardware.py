"""What the hardware does fast: bf16 autocast where it pays, float32 where it doesn't.

On CPUs with AMX or AVX-512-BF16 (Sapphire Rapids and newer Xeons, Zen 4+), bf16 autocast makes a
small model's forward+backward about 2x faster than float32 and generation about 1.8x (measured on
SmolLM2-135M, one thread); on CPUs without them bf16 is emulated and slower, so float32 stays.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when /proc/cpuinfo lists AMX-BF16 or AVX-512-BF16 (False where it cannot be read)."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in BF16_CPU_FLAGS)


def fast_bf16(device: str) -> bool:
    """Whether bf16 autocast is faster than float32 on `device` ("cpu", "cuda", "cuda:0", ...)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device == "cpu" and cpu_has_fast_bf16()


def resolve_autocast(mode: str, device: str) -> bool:
    """`auto` -> fast_bf16(device); `bf16` -> on; `off` -> off."""
    return fast_bf16(device) if mode == "auto" else mode == "bf16"


@contextlib.contextmanager
def autocast(enabled: bool, device: str = "cpu") -> Iterator[None]:
    """torch.autocast to bf16 on `device` when `enabled`, else nothing.

    Without autocast's weight cache: torch keeps the bf16 copy of each trainable weight for as long as the
    context lasts, and PPO runs its whole loop (rollouts, optimizer steps, more rollouts) in one context, so
    with the cache every forward pass went on using the LoRA weights of its first step (the policy never
    moved, whatever the optimizer did to the float32 weights)."""
    import torch

    if not enabled:
        yield
        return
    with torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16,
                        cache_enabled=False):
        yield
