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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import AdapterError, BaseMismatchError, ConfigError, WeightsError
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
from soups.merge.methods import Part, get_method
from soups.weights import normalize_weights, parse_weights, weights_from_mapping

log = logging.getLogger(__name__)

LOOKAHEAD = 2  # blocks (or whole tensors) computed ahead of the writer
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
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
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


@dataclass
class MergeSpec:
    """Everything a merge needs; the CLI builds it from flags and an optional recipe."""

    experts: list[str]
    weights: list[float] | Mapping[str, float] | str
    out: Path
    base: str | Path = "default"
    method: str = "exact"
    rank: int | None = None
    format: str = "full"
    normalize: bool = True
    dtype: str | None = None
    shard_size: str | int = "5GB"
    force: bool = False
    allow_pickle: bool = False


@dataclass
class MergeResult:
    out: Path
    format: str
    method: str
    rank: int | None
    max_lora_rank: int | None
    weights: dict[str, float]
    files: list[str] = field(default_factory=list)
    energy: dict[str, float] = field(default_factory=dict)


def max_lora_rank_for(rank: int) -> int | None:
    """The smallest `--max-lora-rank` vLLM accepts that fits `rank` (None if over 512)."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), None)


def _dtype_code(name: str | None, flag: str = "--dtype") -> str | None:
    if name is None:
        return None
    name = DTYPE_ALIASES.get(name.lower(), name.lower()).removeprefix("torch.")
    if name not in TORCH_TO_ST or TORCH_TO_ST[name] not in ("F32", "F16", "BF16", "F64"):
        raise ConfigError(f"{flag} {name!r} is not supported; use bfloat16, float16 or float32")
    return TORCH_TO_ST[name]


def default_expert_names() -> list[str]:
    """The default expert set, in the order positional weights follow (experts/default.yaml)."""
    import yaml

    from soups.config import experts_dir

    path = experts_dir() / "default.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; pass --experts explicitly")
    data = yaml.safe_load(path.read_text()) or {}
    names = data.get("experts")
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{path}: `experts` should be a non-empty list of expert names")
    return [str(n) for n in names]


def _resolve_weights(spec: MergeSpec, names: list[str]) -> list[float]:
    if isinstance(spec.weights, str):
        return parse_weights(spec.weights, names)
    if isinstance(spec.weights, Mapping):
        return weights_from_mapping(spec.weights, names)
    values = [float(v) for v in spec.weights]
    if len(values) != len(names):
        raise WeightsError(f"--weights: {len(values)} weight(s) for {len(names)} expert(s); give one per expert")
    return values


def _check_base(adapters: Sequence[Adapter], base_index: CheckpointIndex, base_fp: str, tied: bool) -> None:
    """Every expert was trained on this base (fingerprint) and its shapes fit the base's weights."""
    from soups.base import check_same_base

    check_same_base({f"expert {a.name}": a.base_fingerprint for a in adapters}, base_fp)
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

    method: object
    adapters_all: list[Adapter]
    adapters: list[Adapter]  # the kept (non-zero weight) experts
    raw: list[float]
    norm: list[float]
    weights: list[float]  # applied weights of the kept experts
    base_dir: Path
    base_index: CheckpointIndex
    base_fp: str
    out_dtype: str | None
    shard_size: int


def prepare(spec: MergeSpec) -> Prepared:
    """Validate everything and return what the writer needs (raises SoupsError on bad input)."""
    from soups.base import fingerprint, resolve_base
    from soups.config import experts_dir
    from soups.io.atomic import check_output

    check_output(Path(spec.out), spec.force)
    if spec.format not in ("full", "adapter"):
        raise ConfigError(f"--format {spec.format!r} is unknown; choose full or adapter")
    method = get_method(spec.method)
    out_dtype = _dtype_code(spec.dtype)
    shard_size = parse_size(spec.shard_size)

    names = list(spec.experts) if spec.experts else default_expert_names()
    paths = [resolve_expert(n, experts_dir()) for n in names]
    short = [Path(n).name if Path(n).is_dir() else str(n) for n in names]
    raw = _resolve_weights(spec, short)
    norm = normalize_weights(raw, short, spec.normalize)
    adapters_all = [load_adapter(p, name=s, allow_pickle=spec.allow_pickle) for p, s in zip(paths, short)]
    kept = [(a, w) for a, w in zip(adapters_all, norm) if w != 0]
    adapters = [a for a, _ in kept]
    weights = [w for _, w in kept]

    base_dir = resolve_base(spec.base)
    base_index = read_index(base_dir)
    base_cfg = json.loads((base_dir / "config.json").read_text())
    tied = bool(base_cfg.get("tie_word_embeddings", False))
    base_fp = fingerprint(base_dir)
    _check_base(adapters, base_index, base_fp, tied)
    method.check(adapters, spec.rank)
    return Prepared(
        method, adapters_all, adapters, raw, norm, weights, base_dir, base_index, base_fp, out_dtype, shard_size
    )


def merge(spec: MergeSpec | None = None, /, progress: bool = False, **kwargs) -> MergeResult:
    """Build a soup: `merge(MergeSpec(...))` or `merge(experts=[...], weights=[...], out=..., **options)`."""
    from soups.io.atomic import atomic_dir
    from soups.merge.provenance import soup_record, write_provenance

    spec = spec or MergeSpec(**kwargs)
    p = prepare(spec)
    method, adapters_all, adapters, norm, weights = p.method, p.adapters_all, p.adapters, p.norm, p.weights
    base_dir, base_index, base_fp, out_dtype, shard_size = (
        p.base_dir,
        p.base_index,
        p.base_fp,
        p.out_dtype,
        p.shard_size,
    )
    modules = sorted({m for a in adapters for m in a.modules})
    result = MergeResult(
        Path(spec.out), spec.format, spec.method, None, None, {a.name: w for a, w in zip(adapters_all, norm)}
    )
    info: dict = {}
    with TensorReader() as reader, atomic_dir(Path(spec.out), force=spec.force) as tmp:
        parts = _factors_loader(adapters, weights, reader)
        if spec.format == "full":
            dtype = out_dtype or base_index.float_dtype() or "F32"
            info["dtype"] = ST_DTYPES[dtype][0]
            plan = _plan_full(base_index, set(modules), parts, method, spec.rank, dtype, reader, info)
            with _one_compute_thread():
                result.files = _write(tmp, plan, shard_size, "model", progress)
            _copy_base_files(base_dir, tmp, None if out_dtype is None else info["dtype"])
        else:
            dtype = out_dtype or "F32"
            info["dtype"] = ST_DTYPES[dtype][0]
            rank = method.adapter_rank(adapters, spec.rank)
            plan = _plan_adapter(base_index, modules, adapters, parts, method, spec.rank, dtype, info)
            result.files = _write(tmp, plan, 1 << 62, "adapter_model", progress)
            _write_adapter_config(tmp, base_dir, base_index, modules, rank, spec, adapters)
            result.rank, result.max_lora_rank = rank, max_lora_rank_for(rank)
        if info.get("energy"):
            result.energy = dict(sorted(info.pop("energy").items()))
            vals = list(result.energy.values())
            info["svd_energy"] = {"min": min(vals), "mean": sum(vals) / len(vals)}
        record = soup_record(
            spec, base_dir, base_fp, adapters_all, p.raw, norm, result.rank, result.max_lora_rank, info
        )
        write_provenance(tmp, record)
    return result


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


def _plan_full(base_index, targeted, parts, method, rank, dtype, reader, info) -> list[OutTensor]:
    info["energy"] = {}
    buffers = _Buffers(ring=LOOKAHEAD + 2)

    def merged(t, module):
        def produce():
            reader.prefetch(t)
            f = method.factors(parts(module), rank)
            if "energy" in f.info:
                info["energy"][module] = f.info["energy"]
            yield from _add_delta(reader.raw(t), t.dtype, f.A, f.B, f.scale, dtype, buffers)
            reader.release(t)

        return produce

    def converted(t):
        return lambda: _converted(reader, t, dtype)

    plan = []
    for name, t in base_index.tensors.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module in targeted:
            plan.append(OutTensor(name, dtype, t.shape, produce=merged(t, module)))
        elif t.dtype in ("F32", "F16", "BF16", "F64") and t.dtype != dtype:
            plan.append(OutTensor(name, dtype, t.shape, produce=converted(t)))
        else:
            plan.append(OutTensor(name, t.dtype, t.shape, copy_from=t))
    return plan


def _plan_adapter(base_index, modules, adapters, parts, method, rank, dtype, info):
    """lora_A / lora_B per module; both come from one factors() call (A first, B reuses it)."""
    info["energy"] = {}
    cache: dict[str, object] = {}

    def factor(module, which):
        def produce():
            if which == "A":
                f = method.factors(parts(module), rank)
                if "energy" in f.info:
                    info["energy"][module] = f.info["energy"]
                cache[module] = f.B
                return from_f32(f.A, dtype)
            return from_f32(cache.pop(module), dtype)

        return produce

    plan = []
    for module in modules:
        w = base_index.tensors[f"{module}.weight"]
        r = method.adapter_rank(adapters, rank, module)
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


def _write_adapter_config(tmp, base_dir, base_index, modules, rank, spec, adapters) -> None:
    """A plain PEFT LoRA config that PEFT and vLLM load (no bias, DoRA or modules_to_save)."""
    if spec.method == "linear":  # keep the experts' own r/alpha (equal by the method's check)
        ref = adapters[0].config
        lora = {k: ref.get(k) for k in ("r", "lora_alpha", "use_rslora")}
        lora |= {"rank_pattern": ref.get("rank_pattern") or {}, "alpha_pattern": ref.get("alpha_pattern") or {}}
    else:  # factors carry the scale: r = lora_alpha = R
        lora = {"r": rank, "lora_alpha": rank, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(base_dir),
        **lora,
        "target_modules": _target_modules(base_index, modules),
        "lora_dropout": 0.0,
        "bias": "none",
        "use_dora": False,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
