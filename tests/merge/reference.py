"""Independent float64 reference for merges, written from DESIGN.md's math (not from soups.merge)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

PREFIX = "base_model.model."


def expert_deltas(
    path: Path, scales: dict[str, float] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    """module -> (A, B, s) in float64, s = alpha/r (alpha/sqrt(r) with rsLoRA) unless given in `scales`."""
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    sd = load_file(str(Path(path) / "adapter_model.safetensors"))
    out = {}
    for key, a in sd.items():
        if ".lora_A." not in key:
            continue
        module = key[len(PREFIX) :].split(".lora_A.")[0]
        b = sd[key.replace(".lora_A.", ".lora_B.")]
        r = a.shape[0]
        alpha = cfg["lora_alpha"]
        s = (scales or {}).get(module, alpha / (math.sqrt(r) if cfg.get("use_rslora") else r))
        out[module] = (a.double(), b.double(), s)
    return out


def exact_reference(base_sd: dict, experts: list[dict], weights: list[float]) -> dict[str, torch.Tensor]:
    """W + sum_i w_i s_i B_i A_i in float64, for every targeted module."""
    ref = {}
    for deltas, w in zip(experts, weights):
        for module, (a, b, s) in deltas.items():
            name = f"{module}.weight"
            ref.setdefault(name, base_sd[name].double().clone())
            ref[name] += w * s * (b @ a)
    return ref


def linear_reference(base_sd: dict, experts: list[dict], weights: list[float]) -> dict[str, torch.Tensor]:
    """The paper's averaging: W + s (sum_i w_i B_i)(sum_i w_i A_i), for experts with equal r/alpha/targets."""
    ref = {}
    for module in experts[0]:
        a = sum(w * e[module][0] for e, w in zip(experts, weights))
        b = sum(w * e[module][1] for e, w in zip(experts, weights))
        s = experts[0][module][2]
        name = f"{module}.weight"
        ref[name] = base_sd[name].double() + s * (b @ a)
    return ref


def rounding_tolerance(dtype: torch.dtype) -> float:
    """One rounding of the output dtype (half an ulp, relative) plus float32 compute slack."""
    return {torch.bfloat16: 2**-8, torch.float16: 2**-11, torch.float32: 2**-20}[dtype] * 1.05
