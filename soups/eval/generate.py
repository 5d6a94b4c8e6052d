"""Batched chat generation from a model, expert or soup directory (transformers, or vLLM when installed).

Engines: `ChatGenerator` (transformers + PEFT) and `soups.eval.vllm_engine.VllmGenerator` (one vLLM engine,
adapters swapped into its weights), one interface; `open_generator` picks by `--engine` (auto: vLLM when
installed).

A directory is either a full Hugging Face model (config.json: a base or a full soup) or a PEFT
LoRA adapter (adapter_config.json: an expert or an adapter soup), whose base comes from its
soup.json / expert.json, else from `base_model_name_or_path`, through `soups.base.resolve_base`.
Prompts go through the model's chat template (system prompt optional), left-padded, in batches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soups.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

def resolve_model(path: str | Path) -> tuple[Path, Path | None]:
    """(base model directory, adapter directory or None) for a model, expert or soup directory."""
    path = Path(path).expanduser()
    if (path / "adapter_config.json").is_file():
        return adapter_base(path), path
    if (path / "config.json").is_file():
        return path, None
    if str(path) == "default" and not path.exists():
        from soups.base import resolve_base

        return resolve_base("default"), None
    raise CheckpointError(
        f"{path}: neither a model directory (config.json) nor a LoRA adapter (adapter_config.json); "
        "pass a base, expert or soup directory"
    )


def adapter_base(adapter: Path) -> Path:
    """The base model directory an adapter was trained or merged on."""
    from soups.base import resolve_base

    for meta in ("soup.json", "expert.json"):
        if (adapter / meta).is_file():
            try:
                return resolve_base(adapter)
            except CheckpointError:
                log.debug("%s: %s names no resolvable base; trying adapter_config.json", adapter, meta)
    ref = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not ref:
        raise CheckpointError(f"{adapter}: adapter names no base (soup.json, expert.json, base_model_name_or_path)")
    try:
        return resolve_base(ref)
    except CheckpointError as e:
        raise CheckpointError(
            f"{adapter}: its base {ref!r} is not a local model directory; fix base_model_name_or_path "
            "in adapter_config.json or add soup.json naming the base path"
        ) from e


def default_dtype(device: str, model_dir: Path | None = None) -> str:
    """The dtype soups generates in when none is given: the fastest that stays correct (bench/generate.py).

    On a GPU, the checkpoint's own dtype. On a CPU, bfloat16 when the checkpoint is stored in bfloat16 (no
    weight loses precision; the embedded base is) and the CPU multiplies bf16 natively (AMX or AVX512-BF16),
    where it decodes about twice as fast as float32 at soups' batch size; float32 otherwise (bf16 is
    emulated, slowly, on other CPUs). bf16 autocast over float32 weights was slower than float32 there.
    """
    if device != "cpu":
        return "auto"
    if model_dir is None or _stored_dtype(Path(model_dir)) != "bfloat16":
        return "float32"
    import torch

    native = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)() or getattr(
        torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return "bfloat16" if native else "float32"


def _stored_dtype(model_dir: Path) -> str | None:
    try:
        cfg = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return str(cfg.get("dtype") or cfg.get("torch_dtype") or "").removeprefix("torch.") or None


def generation_dtype(dtype: str | None, model_dir: Path, device: str | None = None) -> str:
    """The dtype a generator runs `model_dir` in: `dtype`, else `default_dtype`; `auto` names the checkpoint's
    stored dtype when it records one (what the response cache keys on)."""
    if device is None:
        from soups.vllm_server import on_gpu

        device = "cuda" if on_gpu() else "cpu"
    dtype = dtype or default_dtype(device, model_dir)
    return (_stored_dtype(Path(model_dir)) or "auto") if dtype == "auto" else str(dtype)


ENGINES = ("auto", "vllm", "transformers")


def resolve_engine(engine: str, flag: str = "--engine") -> str:
    """`auto` -> vllm when installed (bench/generate.py: ~10x the tokens/s of transformers on CPU), else
    transformers; an unknown engine, or vllm when it is not installed, is a ConfigError naming `flag`."""
    from soups.eval.vllm_engine import vllm_available

    if engine not in ENGINES:
        raise ConfigError(f"{flag} {engine}: unknown engine; choose {', '.join(ENGINES)}")
    if engine == "auto":
        return "vllm" if vllm_available() else "transformers"
    if engine == "vllm" and not vllm_available():
        raise ConfigError(f"{flag} vllm: vLLM is not installed; run `make install-vllm`, "
                          f"or use {flag} transformers")
    return engine


def open_generator(model: str | Path, engine: str = "auto", *, dtype: str | None = None):
    """A ChatGenerator (transformers) or a VllmGenerator (vLLM, adapters swapped into its weights) on `model`."""
    if resolve_engine(engine) == "vllm":
        from soups.eval.vllm_engine import VllmGenerator

        return VllmGenerator(model, dtype=dtype)
    return ChatGenerator(model, dtype=dtype)


class GeneratorSession:
    """One generator on `base_dir` for many evaluations: opened on first use (a fully cached run loads
    nothing), engine and dtype resolved up front (the response cache keys on them), closed on exit."""

    def __init__(self, base_dir: Path, engine: str = "auto", dtype: str | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.engine = resolve_engine(engine)
        self.dtype = generation_dtype(dtype, self.base_dir)
        self._gen = None

    def get(self):
        if self._gen is None:
            self._gen = open_generator(self.base_dir, self.engine, dtype=self.dtype)
        return self._gen

    def close(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None and hasattr(gen, "close"):
            gen.close()

    def __enter__(self) -> GeneratorSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _torch_dtype(dtype: Any, device: str, model_dir: Path | None = None):
    import torch

    if dtype is None:
        dtype = default_dtype(device, model_dir)
    if isinstance(dtype, str):
        if dtype == "auto":
            return "auto"
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ConfigError(f"--dtype {dtype}: not a torch dtype; use float32, bfloat16, float16 or auto")
        return getattr(torch, dtype)
    return dtype


def _fit_cpu_threads() -> None:
    """On an oversubscribed CPU (load average above the core count), use one intra-op thread.

    OpenMP threads spin-wait for each other; when other processes hold the cores, each decoding
    step gets ~10x slower with 2 threads than with 1 (measured on a 2-core box under load).
    Skipped when the user set OMP_NUM_THREADS or SOUPS_THREADS.
    """
    import torch

    if os.environ.get("SOUPS_THREADS"):
        torch.set_num_threads(max(1, int(os.environ["SOUPS_THREADS"])))
        return
    if os.environ.get("OMP_NUM_THREADS") or not hasattr(os, "getloadavg"):
        return
    cores = os.cpu_count() or 1
    if os.getloadavg()[0] > cores and torch.get_num_threads() > 1:
        log.info("CPU oversubscribed (load %.1f on %d cores): generating with 1 thread", os.getloadavg()[0], cores)
        torch.set_num_threads(1)


class ChatGenerator:
    """A loaded model (+ optional LoRA adapter) and tokenizer that answers chat prompts in batches."""

    def __init__(self, model: str | Path, *, adapter: str | Path | None = None, dtype: Any = None,
                 device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        base_dir, own_adapter = resolve_model(model)
        if own_adapter is not None and adapter is not None:
            raise ConfigError(f"{model} is already an adapter; pass its base as the model to add --adapter {adapter}")
        adapter = Path(adapter) if adapter is not None else own_adapter
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            _fit_cpu_threads()
        tok_dir = adapter if adapter is not None and (adapter / "tokenizer_config.json").is_file() else base_dir
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        if self.tokenizer.chat_template is None:
            raise CheckpointError(f"{tok_dir}: tokenizer has no chat template; use an instruction-tuned base")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=_torch_dtype(dtype, self.device, base_dir))
        if adapter is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter)
        self.model.to(self.device).eval()
        self.base_dir, self.adapter = base_dir, adapter
        self._loaded = 0

    def set_adapter(self, adapter: str | Path | None) -> None:
        """Swap the LoRA adapter on the loaded base (None: the base alone), without reloading the base."""
        from peft import PeftModel

        if adapter is not None:
            base, is_adapter = resolve_model(adapter)
            if is_adapter is None or base.resolve() != self.base_dir.resolve():
                raise ConfigError(f"{adapter}: not a LoRA adapter on base {self.base_dir}; load it with its own base")
        old = self.model.active_adapter if isinstance(self.model, PeftModel) else None
        if adapter is not None:
            self._loaded += 1
            name = f"soup{self._loaded}"
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(adapter, adapter_name=name)
                self.model.set_adapter(name)
            else:
                self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
            self.model.to(self.device).eval()
            if old is not None:
                self.model.delete_adapter(old)
        self.adapter = Path(adapter) if adapter is not None else None

    def chat_text(self, prompt: str, system: str | None = None) -> str:
        """The prompt rendered through the chat template, ending with the assistant turn's opening."""
        from soups.chat import render

        return render(self.tokenizer, prompt, system)

    def generate(self, prompts: Sequence[str], *, system: str | None = None, max_new_tokens: int = 128,
                 batch_size: int = 8, greedy: bool = True, seed: int = 0, progress: bool = True,
                 label: str = "generating") -> list[str]:
        """Responses to `prompts`, in order (batches sorted by length; greedy by default)."""
        import torch

        if max_new_tokens < 1 or batch_size < 1:
            raise ConfigError(f"--max-new-tokens {max_new_tokens} / --batch-size {batch_size}: both must be >= 1")
        texts = [self.chat_text(p, system) for p in prompts]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        gen_cfg = self.model.generation_config
        kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id,
                                      do_sample=not greedy)
        if greedy:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(temperature=gen_cfg.temperature or 1.0, top_p=gen_cfg.top_p or 1.0)
        out: list[str] = [""] * len(texts)
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        off = self.model.disable_adapter() if self.adapter is None and hasattr(self.model, "disable_adapter") \
            else contextlib.nullcontext()
        with _progress(progress, label, len(texts)) as advance, torch.inference_mode(), off:
            for n, batch in enumerate(batches):
                torch.manual_seed(seed + n)
                enc = self.tokenizer([texts[i] for i in batch], return_tensors="pt", padding=True,
                                     padding_side="left", add_special_tokens=False).to(self.device)
                ids = self.model.generate(**enc, **kwargs)
                new = ids[:, enc["input_ids"].shape[1]:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True)):
                    out[i] = text.strip()
                advance(len(batch))
        return out


class _progress:
    """A rich progress bar over prompts (or nothing when disabled)."""

    def __init__(self, enabled: bool, label: str, total: int) -> None:
        self.enabled, self.label, self.total = enabled, label, total

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def generate_chat(model: Path, prompts: list[str], *, adapter: Path | None = None, system: str | None = None,
                  max_new_tokens: int = 128, batch_size: int = 8, greedy: bool = True, seed: int = 0,
                  dtype: Any = None, progress: bool = True) -> list[str]:
    """Load `model` (a model, expert or soup directory; plus `adapter` if given) and answer `prompts`."""
    gen = ChatGenerator(model, adapter=adapter, dtype=dtype)
    return gen.generate(prompts, system=system, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        greedy=greedy, seed=seed, progress=progress)


def vllm_lora_rank(r: int) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds rank `r`."""
    from soups.vllm_server import VLLM_LORA_RANKS, max_lora_rank_for

    rank = max_lora_rank_for(r)
    if rank is None:
        raise ConfigError(f"adapter rank {r} exceeds vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}; "
                          "use --format full")
    return rank


def generate_vllm(model: Path, prompts: list[str], *, adapter: Path | None = None, system: str | None = None,
                  max_new_tokens: int = 128, greedy: bool = True, seed: int = 0, dtype: Any = None) -> list[str]:
    """Same as `generate_chat`, through vLLM's offline engine with its LoRA kernels (adapters served unmerged;
    bench/generate.py compares it with the swap engine, soups.eval.vllm_engine.VllmGenerator, which
    `soups generate --engine vllm` uses)."""
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as e:
        raise ConfigError("--engine vllm: vLLM is not installed; pip install vllm, or use --engine transformers") \
            from e
    base_dir, own_adapter = resolve_model(model)
    adapter = Path(adapter) if adapter is not None else own_adapter
    kwargs: dict[str, Any] = {}
    lora = None
    if adapter is not None:
        r = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
        kwargs.update(enable_lora=True, max_lora_rank=vllm_lora_rank(r), max_loras=1)
        lora = LoRARequest("soup", 1, str(adapter))
    from soups.chat import render
    from soups.eval.vllm_engine import vllm_cpu_env
    from soups.vllm_server import engine_kwargs

    vllm_cpu_env()  # the engine in this process: starts faster and exits cleanly with the command
    kwargs.update(engine_kwargs())  # on CPU: an explicit KV-cache size, not a fraction of all RAM
    llm = LLM(model=str(base_dir), dtype=dtype or "auto", seed=seed, **kwargs)
    tok = llm.get_tokenizer()
    texts = [render(tok, p, system) for p in prompts]
    params = SamplingParams(temperature=0.0 if greedy else 1.0, max_tokens=max_new_tokens, seed=seed)
    outs = llm.generate(texts, params, lora_request=lora)
    return [o.outputs[0].text.strip() for o in outs]
