"""`VllmGenerator`: `ChatGenerator`'s interface on one vLLM offline engine, adapters swapped into its weights.

Why: on a CPU vLLM decodes the embedded base about 10x faster than transformers (bench/generate.py), but its
LoRA kernels are 2.6-4.8x slower than the base there; an evaluation answers with many adapters on one base,
one at a time. So the engine runs the base, and `set_adapter` writes the adapter into the weights:
`W = W_base + s B A` (the exact expert delta, DESIGN.md "Merge math"; s from `soups.io.adapter.lora_scale`:
alpha / r, rsLoRA, rank_pattern / alpha_pattern) for each module it targets, and `W_base` again where the
previous adapter differed. The tensors go through vLLM's in-place reload (`reload_weights`, Hugging Face
names in checkpoint format: vLLM stacks q/k/v and gate/up and re-packs them for its CPU kernels), then the
prefix cache is cleared (its KV was computed by the old weights). Base tensors stream one at a time from the
base's safetensors (mmap); no second copy of the model is held.

The engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so the weights reach it without IPC. A full
model directory (a base, a full soup) is served as its own engine; only adapters on that engine's base swap in.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from soups.errors import AdapterError, CheckpointError, ConfigError

log = logging.getLogger(__name__)

# vLLM's reload warns about every layer it was not given; a swap gives only the layers an adapter touches
_RELOAD_LOGGERS = tuple(f"vllm.model_executor.model_loader.reload.{m}" for m in ("layerwise", "inplace"))


def vllm_available() -> bool:
    """Whether vLLM can be imported here (the `make install-vllm` extra)."""
    return importlib.util.find_spec("vllm") is not None


def vllm_cpu_env() -> None:
    """The engine in this process, and on a busy CPU unpinned threads (soups.vllm_server.cpu_thread_env):
    one intra-op thread when the machine is oversubscribed, else vLLM would bind a thread to every core again."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from soups.vllm_server import on_gpu

    if not on_gpu():
        import torch

        from soups.eval.generate import _fit_cpu_threads

        _fit_cpu_threads()
        if torch.get_num_threads() < (os.cpu_count() or 1):
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")


class VllmGenerator:
    """A vLLM engine on a base (or full model) that answers chat prompts; LoRA adapters swapped into its weights."""

    def __init__(self, model: str | Path, *, adapter: str | Path | None = None, dtype: Any = None,
                 seed: int = 0) -> None:
        if not vllm_available():
            raise ConfigError("--engine vllm: vLLM is not installed; run `make install-vllm`, "
                              "or use --engine transformers")
        from vllm import LLM

        from soups.eval.generate import generation_dtype, resolve_model
        from soups.io.checkpoint import read_index
        from soups.io.files import read_json
        from soups.vllm_server import engine_kwargs

        base_dir, own_adapter = resolve_model(model)
        if own_adapter is not None and adapter is not None:
            raise ConfigError(f"{model} is already an adapter; pass its base as the model to add --adapter {adapter}")
        vllm_cpu_env()
        self.base_dir, self.adapter = base_dir, None
        self.dtype = generation_dtype(dtype, base_dir)
        t0 = time.perf_counter()
        import torch

        keep = torch.set_num_threads  # vLLM's CPU worker makes it a no-op for the whole process; ours
        try:  # (the merge's one compute thread, soups' load rule) keep working between generations
            self.llm = LLM(model=str(base_dir), dtype=self.dtype, seed=seed, **engine_kwargs())
        finally:
            torch.set_num_threads = keep
        log.info("vLLM engine on %s (%s) started in %.1f s", base_dir, self.dtype, time.perf_counter() - t0)
        self.tokenizer = self.llm.get_tokenizer()
        self._index = read_index(base_dir)
        self._tied = bool(read_json(base_dir / "config.json", None, CheckpointError, "re-save the model")
                          .get("tie_word_embeddings"))
        self._packed = self.llm.apply_model(lambda m: dict(getattr(m, "packed_modules_mapping", None) or {}))[0]
        self._touched: set[str] = set()  # modules whose engine weights differ from the base's
        self._broken: str | None = None
        self.set_adapter(adapter if adapter is not None else own_adapter)

    def set_adapter(self, adapter: str | Path | None) -> None:
        """Answer with `adapter` (a LoRA adapter on this engine's base) merged into the weights; None: the base."""
        from soups.eval.generate import resolve_model
        from soups.io.adapter import load_adapter

        lora = None
        if adapter is not None:
            base, is_adapter = resolve_model(adapter)
            if is_adapter is None or base.resolve() != self.base_dir.resolve():
                raise ConfigError(f"{adapter}: not a LoRA adapter on base {self.base_dir}; load it with its own base")
            lora = load_adapter(Path(adapter))
            self._check(lora)
        modules = lora.modules if lora is not None else {}
        names = self._load_order(self._touched | set(modules))
        if names:
            self._reload(names, modules)
        self._touched = set(modules)
        self.adapter = Path(adapter) if adapter is not None else None

    def _check(self, lora) -> None:
        """Every targeted module is a weight of the base with B A's shape (checked before the engine is touched)."""
        for m in lora.modules.values():
            info = self._index.tensors.get(f"{m.module}.weight")
            shape = ((m.b or m.b_tensor).shape[0], (m.a or m.a_tensor).shape[1])
            if info is None or tuple(info.shape) != tuple(shape):
                raise AdapterError(f"{lora.path}: module {m.module} ({shape[0]}x{shape[1]}) is not a weight of the "
                                   f"base {self.base_dir}; the adapter was trained on another base")
            if m.module == "lm_head" and self._tied:
                raise AdapterError(f"{lora.path}: targets lm_head on a base with tied embeddings; not supported")

    def _load_order(self, modules: set[str]) -> list[str]:
        """The base weights to push for `modules`: with every module vLLM loads into the same layer (its
        `packed_modules_mapping`: q/k/v, gate/up; else every weight of the parent module), layer by layer."""
        names: list[str] = []
        for module in sorted(modules):
            parent, _, leaf = module.rpartition(".")
            group = next((g for g in self._packed.values() if leaf in g), None)
            if group is None and not self._packed:
                siblings = [n[:-len(".weight")] for n in self._index.tensors
                            if n.endswith(".weight") and n.rpartition(".")[0].rpartition(".")[0] == parent]
            else:
                siblings = [f"{parent}.{s}" if parent else s for s in (group or [leaf])]
            names += [f"{s}.weight" for s in siblings if f"{s}.weight" in self._index.tensors]
        return list(dict.fromkeys(names))

    def _reload(self, names: list[str], modules: dict) -> None:
        """Push `names` into the engine (base tensor, plus s B A where `modules` targets it) and reset its KV."""
        from soups.io.checkpoint import TensorReader

        if self._broken:
            raise CheckpointError(self._broken)
        dtype = self.llm.llm_engine.model_config.dtype
        t0 = time.perf_counter()
        try:
            with TensorReader() as reader, _quiet(_RELOAD_LOGGERS):
                weights = _swapped(names, modules, self._index, reader, dtype)
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                                  "is_checkpoint_format": True})
        except BaseException:
            self._broken = (f"the vLLM engine on {self.base_dir} was interrupted while swapping weights; "
                            "its weights are unknown, start a new one")
            raise
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM did not clear its prefix cache after a weight swap (requests still running)")
        log.info("swapped %d weights into the engine in %.2f s", len(names), time.perf_counter() - t0)

    def chat_text(self, prompt: str, system: str | None = None) -> str:
        """The prompt rendered through the chat template, ending with the assistant turn's opening."""
        from soups.chat import render

        return render(self.tokenizer, prompt, system)

    def generate(self, prompts: Sequence[str], *, system: str | None = None, max_new_tokens: int = 128,
                 batch_size: int = 8, greedy: bool = True, seed: int = 0, progress: bool = True,
                 label: str = "generating") -> list[str]:
        """Responses to `prompts`, in order; greedy = temperature 0. All prompts go to the engine at once
        (continuous batching); `batch_size` is accepted for ChatGenerator's interface and only checked."""
        from vllm import SamplingParams

        from soups.eval.generate import _progress

        if max_new_tokens < 1 or batch_size < 1:
            raise ConfigError(f"--max-new-tokens {max_new_tokens} / --batch-size {batch_size}: both must be >= 1")
        if self._broken:
            raise CheckpointError(self._broken)
        ids = [self.tokenizer(self.chat_text(p, system), add_special_tokens=False)["input_ids"] for p in prompts]
        # the model's generation_config (e.g. a repetition penalty) applies, as in transformers' generate
        defaults = {k: v for k, v in self.llm.llm_engine.model_config.get_diff_sampling_param().items()
                    if k != "max_tokens"}
        params = SamplingParams.from_optional(**{**defaults, "max_tokens": max_new_tokens, "seed": seed,
                                                 "temperature": 0.0 if greedy else defaults.get("temperature", 1.0)})
        with _progress(progress, label, len(ids)) as advance:
            outs = self.llm.generate([{"prompt_token_ids": i} for i in ids], params,
                                     use_tqdm=(lambda *a, **kw: _Bar(advance, *a, **kw)) if progress else False)
        return [o.outputs[0].text.strip() for o in outs]

    def close(self) -> None:
        """Stop the engine and free its memory (weights, KV cache)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
            import gc

            gc.collect()


def _swapped(names: list[str], modules: dict, index, reader, dtype) -> Iterator[tuple[str, Any]]:
    """(name, tensor) for each weight in `names`: W_base, plus s B A for a targeted module (DESIGN.md), summed in
    float32 and rounded once to the engine's dtype; one tensor at a time."""
    import torch

    for name in names:
        info = index.tensors[name]
        w = torch.from_numpy(reader.f32(info))
        m = modules.get(name[:-len(".weight")])
        if m is not None:
            a = m.a_tensor if m.a_tensor is not None else reader.f32(m.a)
            b = m.b_tensor if m.b_tensor is not None else reader.f32(m.b)
            w.addmm_(torch.from_numpy(b), torch.from_numpy(a), alpha=m.scale)
        reader.release(info)
        yield name, w.to(dtype)


@contextlib.contextmanager
def _quiet(names: Sequence[str]):
    """Loggers `names` at ERROR for the duration."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class _Bar:
    """The slice of tqdm's interface vLLM's `generate(use_tqdm=...)` uses, advancing soups' rich bar instead."""

    def __init__(self, advance, iterable=None, *args, **kwargs) -> None:
        self.advance, self.iterable, self.n, self.postfix, self._t0 = advance, iterable, 0, None, time.perf_counter()

    def __iter__(self):
        return iter(self.iterable or ())

    @property
    def format_dict(self) -> dict:
        return {"elapsed": max(1e-9, time.perf_counter() - self._t0)}

    def update(self, n: int = 1) -> None:
        self.n += n
        self.advance(n)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass
