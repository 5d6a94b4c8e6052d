"""The merge engine: stream a base through the experts' deltas into a full checkpoint or one adapter.

Everything is validated before the first byte is written (weights, experts, base identity,
shapes, method constraints). Output is built in a temporary directory beside `--out` and
renamed into place when complete (soups.io.atomic). Base tensors are read through mmap one at
a time; untouched tensors are copied byte for byte by the kernel; merged tensors are computed
in float32 on a worker thread while the main thread writes, and rounded once to the output dtype.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import AdapterError, BaseMismatchError, CheckpointError
from soups.io.adapter import Adapter, load_adapter, resolve_expert
from soups.io.checkpoint import (
    ST_DTYPES,
    TORCH_TO_ST,
    CheckpointIndex,
    OutTensor,
    TensorReader,
    from_f32,
    parse_size,
    read_index,
    to_f32,
    write_shards,
)
from soups.io.files import read_json
from soups.merge.methods import Method, Part, get_method
from soups.recipe import Soup, default_expert_names  # noqa: F401  (default_expert_names: part of the merge API)
from soups.vllm_server import max_lora_rank_for

log = logging.getLogger(__name__)

LOOKAHEAD = 2  # blocks (or whole tensors) computed ahead of the writer
BASE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)
ENGINE_OPTIONS = ("out", "shard_size", "force", "allow_pickle")


@dataclass
class MergeResult:
    out: Path
    soup: Soup
    rank: int | None
    max_lora_rank: int | None
    weights: dict[str, float]  # expert name -> applied weight
    files: list[str] = field(default_factory=list)
    report: dict[str, dict[str, float]] = field(default_factory=dict)  # what the method reported, per module

    @property
    def format(self) -> str:
        return self.soup.format

    @property
    def method(self) -> str:
        return self.soup.method


def _check_base(adapters: Sequence[Adapter], base_index: CheckpointIndex, base_fp: str, tied: bool) -> None:
    """Every expert was trained on this base (fingerprint) and its shapes fit the base's weights."""
    from soups.base import check_same_base

    recorded = {f"expert {a.name}": a.base_fingerprint for a in adapters}
    check_same_base({k: fp for k, fp in recorded.items() if fp is not None}, base_fp)  # refusals first, then
    for a in adapters:
        for m in a.modules.values():
            w = base_index.tensors.get(f"{m.module}.weight")
            if w is None:
                raise BaseMismatchError(
                    f"expert {a.name}: module {m.module} does not exist in the base; wrong --base?"
                )
            a_in = (m.a or m.a_tensor).shape[1]
            b_out = (m.b or m.b_tensor).shape[0]
            if tuple(w.shape) != (b_out, a_in):
                raise BaseMismatchError(
                    f"expert {a.name}: module {m.module} is {b_out}x{a_in} but the base has {w.shape[0]}x{w.shape[1]}"
                    "; the expert was trained on another base"
                )
            if tied and m.module == "lm_head":
                raise AdapterError(f"expert {a.name}: targets lm_head on a base with tied embeddings; not supported")
    check_same_base({k: fp for k, fp in recorded.items() if fp is None}, base_fp)  # the warnings, if all is well


def _factors_loader(adapters: Sequence[Adapter], weights: Sequence[float], reader: TensorReader):
    """module -> list[Part] (float32 numpy), reading each expert's A and B for that module only."""

    def parts(module: str) -> list[Part]:
        out = []
        for a, w in zip(adapters, weights):
            m = a.modules.get(module)
            if m is None:
                out.append(Part(w, 0.0, None, None, a.max_rank))
                continue
            A = m.a_tensor if m.a_tensor is not None else reader.f32(m.a)
            B = m.b_tensor if m.b_tensor is not None else reader.f32(m.b)
            out.append(Part(w, m.scale, A, B, a.max_rank))
        return out

    return parts


@dataclass
class Prepared:
    """A validated merge: what the writer needs."""

    soup: Soup
    method: Method
    params: object  # the method's parameters (its pydantic model)
    adapters_all: list[Adapter]
    adapters: list[Adapter]  # the kept (non-zero weight) experts
    norm: list[float]
    weights: list[float]  # applied weights of the kept experts
    base_dir: Path
    base_index: CheckpointIndex
    base_fp: str
    out_dtype: str | None
    shard_size: int


def prepare(soup: Soup, out: Path, *, force: bool = False, allow_pickle: bool = False,
            shard_size: str | int = "5GB") -> Prepared:
    """Validate everything and return what the writer needs (raises SoupsError on bad input)."""
    from soups.base import fingerprint, resolve_base
    from soups.config import experts_dir
    from soups.io.atomic import check_output

    check_output(Path(out), force)
    method, params = get_method(soup.method), soup.method_params()
    out_dtype = TORCH_TO_ST[soup.dtype] if soup.dtype else None
    size = parse_size(shard_size)
    paths = [resolve_expert(n, experts_dir()) for n in soup.experts]
    norm = soup.applied()
    adapters_all = [load_adapter(p, name=s, allow_pickle=allow_pickle) for p, s in zip(paths, soup.names)]
    kept = [(a, w) for a, w in zip(adapters_all, norm) if w != 0]
    adapters = [a for a, _ in kept]
    weights = [w for _, w in kept]

    base_dir = resolve_base(soup.base)
    base_index = read_index(base_dir)
    base_cfg = read_json(base_dir / "config.json", "--base", CheckpointError, "re-save or re-download the model")
    tied = bool(base_cfg.get("tie_word_embeddings", False))
    base_fp = fingerprint(base_dir)
    method.check(adapters, params)  # every refusal before _check_base's warnings, so an error is the only line
    _check_base(adapters, base_index, base_fp, tied)
    return Prepared(soup, method, params, adapters_all, adapters, norm, weights, base_dir, base_index, base_fp,
                    out_dtype, size)


def merge(soup: Soup | None = None, /, out: Path | str | None = None, *, progress: bool = False,
          **options) -> MergeResult:
    """Build a soup into `out`: `merge(soup, out)`, or `merge(experts=[...], weights=[...], out=..., **fields)`
    with the fields of a recipe (`method="svd", rank=16`, ...). Engine options: `shard_size` (default 5GB),
    `force` (replace a non-empty `out`), `allow_pickle` (read .bin/.pt adapters)."""
    from soups.io.atomic import atomic_dir
    from soups.merge.provenance import soup_record, write_provenance

    engine = {k: options.pop(k) for k in ENGINE_OPTIONS if k in options}
    out = Path(out if out is not None else engine.get("out") or "")
    engine.pop("out", None)
    if soup is None:
        soup = Soup.build(options.pop("experts", None), options.pop("weights"), **options)
    elif options:
        raise TypeError(f"merge(soup, out) takes engine options only, not {', '.join(options)}")
    p = prepare(soup, out, **engine)
    modules = sorted({m for a in p.adapters for m in a.modules})
    result = MergeResult(out, soup, None, None, {a.name: w for a, w in zip(p.adapters_all, p.norm)})
    info: dict = {"report": {}}
    with TensorReader() as reader, atomic_dir(out, force=engine.get("force", False)) as tmp:
        parts = _factors_loader(p.adapters, p.weights, reader)
        if soup.format == "full":
            dtype = p.out_dtype or p.base_index.float_dtype() or "F32"
            info["dtype"] = ST_DTYPES[dtype][0]
            plan = _plan_full(p, set(modules), parts, dtype, reader, info)
            with _one_compute_thread():
                result.files = _write(tmp, plan, p.shard_size, "model", progress)
            _copy_base_files(p.base_dir, tmp, None if p.out_dtype is None else info["dtype"])
        else:
            dtype = p.out_dtype or "F32"
            info["dtype"] = ST_DTYPES[dtype][0]
            rank = p.method.rank(p.adapters, p.params)
            plan = _plan_adapter(p, modules, parts, dtype, info)
            result.files = _write(tmp, plan, 1 << 62, "adapter_model", progress)
            _write_adapter_config(tmp, p, modules, rank)
            result.rank, result.max_lora_rank = rank, max_lora_rank_for(rank)
        result.report = {k: dict(sorted(v.items())) for k, v in info.pop("report").items() if v}
        record = soup_record(soup, p, result.rank, result.max_lora_rank, info["dtype"], result.report)
        write_provenance(tmp, record, soup)
    return result


def _factors(p: Prepared, parts, module: str, info: dict):
    """The method's factors at `module`; the numbers it reports are kept per module (info["report"])."""
    f = p.method.factors(parts(module), p.params)
    for key, value in f.info.items():
        info["report"].setdefault(key, {})[module] = float(value)
    return f


_BITS = {"BF16": "uint16"}  # stored as uint16 in numpy
BLOCK_ELEMS = 1 << 18  # a full merge works in blocks of rows of about this many elements (1 MiB in float32)


def _block_rows(shape: tuple) -> int:
    """Rows per block for a tensor: fixed by its shape, so the same inputs give the same bytes."""
    cols = 1
    for d in shape[1:]:
        cols *= d
    return max(1, BLOCK_ELEMS // max(1, cols))


class _Buffers:
    """One float32 work block and a ring of output blocks, reused for every tensor: memory is a few blocks,
    whatever the model or tensor size, and no fresh (page-faulting) allocation per block.

    The ring is deeper than the writer's look-ahead, so an output block is never reused before it is written.
    """

    def __init__(self, ring: int = 4) -> None:
        self.ring = ring
        self.work = None
        self.outs: dict = {}
        self.turn: dict = {}

    def get(self, shape: tuple, out_dtype):
        import torch

        n = 1
        for d in shape:
            n *= d
        if self.work is None or self.work.numel() < n:
            self.work = torch.empty(max(n, BLOCK_ELEMS), dtype=torch.float32)
        ring = self.outs.get(out_dtype)
        if ring is None or ring[0].numel() < n:
            ring = self.outs[out_dtype] = [torch.empty(max(n, BLOCK_ELEMS), dtype=out_dtype) for _ in range(self.ring)]
            self.turn[out_dtype] = -1
        self.turn[out_dtype] = (self.turn[out_dtype] + 1) % self.ring
        return self.work[:n].view(shape), ring[self.turn[out_dtype]][:n].view(shape)


@contextlib.contextmanager
def _one_compute_thread():
    """Full merges compute on one intra-op thread and restore the setting after: the writer and the kernel's
    writeback use the other cores, and OpenMP's barrier per block makes two threads several times slower
    than one on a loaded machine (bench/scale.py)."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _add_delta(raw, code: str, A, B, scale: float, out_code: str, buffers: _Buffers):
    """W' = to_dtype(float32(W) + scale * B @ A), rounded once (DESIGN.md); yields blocks of rows.

    Per block, torch does three passes that stay in cache (cast in, one fused addmm, cast out), into
    reused buffers; only full merges import torch (the adapter path stays on numpy).
    """
    import torch

    w = torch.from_numpy(raw)
    if code in _BITS:
        w = w.view(getattr(torch, ST_DTYPES[code][0]))
    A, B = torch.from_numpy(A), torch.from_numpy(B)
    out_dtype = getattr(torch, ST_DTYPES[out_code][0])
    step = _block_rows(tuple(w.shape))
    for i in range(0, w.shape[0], step):
        rows = w[i : i + step]
        W, out = buffers.get(tuple(rows.shape), out_dtype)
        W.copy_(rows)
        W.addmm_(B[i : i + step], A, alpha=scale)
        out.copy_(W)
        yield (out.view(getattr(torch, _BITS[out_code])) if out_code in _BITS else out).numpy()


def _converted(reader: TensorReader, t, dtype: str):
    """A float tensor in another float dtype, rounded once, in blocks of rows."""
    raw = reader.raw(t)
    if raw.ndim == 0:
        yield from_f32(to_f32(raw, t.dtype), dtype)
        return
    step = _block_rows(tuple(t.shape))
    for i in range(0, raw.shape[0], step):
        yield from_f32(to_f32(raw[i : i + step], t.dtype), dtype)
    reader.release(t)


def _plan_full(p: Prepared, targeted, parts, dtype, reader, info) -> list[OutTensor]:
    buffers = _Buffers(ring=LOOKAHEAD + 2)

    def merged(t, module):
        def produce():
            reader.prefetch(t)
            f = _factors(p, parts, module, info)
            yield from _add_delta(reader.raw(t), t.dtype, f.A, f.B, f.scale, dtype, buffers)
            reader.release(t)

        return produce

    def converted(t):
        return lambda: _converted(reader, t, dtype)

    plan = []
    for name, t in p.base_index.tensors.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module in targeted:
            plan.append(OutTensor(name, dtype, t.shape, produce=merged(t, module)))
        elif t.dtype in ("F32", "F16", "BF16", "F64") and t.dtype != dtype:
            plan.append(OutTensor(name, dtype, t.shape, produce=converted(t)))
        else:
            plan.append(OutTensor(name, t.dtype, t.shape, copy_from=t))
    return plan


def _plan_adapter(p: Prepared, modules, parts, dtype, info):
    """lora_A / lora_B per module; both come from one factors() call (A first, B reuses it)."""
    cache: dict[str, object] = {}

    def factor(module, which):
        def produce():
            if which == "A":
                f = _factors(p, parts, module, info)
                cache[module] = f.B
                return from_f32(f.A, dtype)
            return from_f32(cache.pop(module), dtype)

        return produce

    plan = []
    for module in modules:
        w = p.base_index.tensors[f"{module}.weight"]
        r = p.method.rank(p.adapters, p.params, module)
        key = f"base_model.model.{module}"
        plan.append(OutTensor(f"{key}.lora_A.weight", dtype, (r, w.shape[1]), produce=factor(module, "A")))
        plan.append(OutTensor(f"{key}.lora_B.weight", dtype, (w.shape[0], r), produce=factor(module, "B")))
    return plan


def _write(tmp: Path, plan: list[OutTensor], shard_size: int, prefix: str, progress: bool) -> list[str]:
    total = sum(t.nbytes for t in plan)
    if not progress:
        return write_shards(tmp, plan, shard_size=shard_size, prefix=prefix, lookahead=LOOKAHEAD)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("merging"), BarColumn(), DownloadColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task("merge", total=total)
        return write_shards(
            tmp,
            plan,
            shard_size=shard_size,
            prefix=prefix,
            lookahead=LOOKAHEAD,
            on_tensor=lambda t: bar.advance(task, t.nbytes),
        )


def _copy_base_files(base_dir: Path, out: Path, new_dtype: str | None) -> None:
    """Config, generation config, tokenizer files and chat template, byte for byte (dtype updated if changed)."""
    for name in BASE_FILES:
        src = base_dir / name
        if src.is_file():
            shutil.copyfile(src, out / name)
    if new_dtype is not None and (out / "config.json").is_file():
        cfg = json.loads((out / "config.json").read_text())
        cfg["torch_dtype" if "torch_dtype" in cfg else "dtype"] = new_dtype
        (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _target_modules(base_index: CheckpointIndex, modules: list[str]) -> list[str]:
    """Leaf names (e.g. q_proj) when they cover exactly the soup's modules, else the full module names."""
    leaves = sorted({m.rsplit(".", 1)[-1] for m in modules})
    covered = {n[: -len(".weight")] for n in base_index.tensors if n.endswith(".weight")}
    covered = {m for m in covered if m.rsplit(".", 1)[-1] in leaves}
    return leaves if covered == set(modules) else sorted(modules)


def _write_adapter_config(tmp: Path, p: Prepared, modules: list[str], rank: int) -> None:
    """A plain PEFT LoRA config that PEFT and vLLM load (no bias, DoRA or modules_to_save); r, lora_alpha,
    rsLoRA and patterns are the method's (Method.adapter_config)."""
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(p.base_dir),
        **p.method.adapter_config(p.adapters, p.params, rank),
        "target_modules": _target_modules(p.base_index, modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_dora": False,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
