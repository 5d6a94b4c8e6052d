"""Safetensors checkpoints without loading them: read headers, stream tensors, write planned shards.

Reading parses each file's JSON header (no weights touched) and checks that every tensor's
bytes lie inside the file, so a truncated file fails before any write. Writing plans every
output tensor's name, dtype and shape up front, writes each shard's header first, then the
tensors one at a time: peak memory is one tensor, and the layout is deterministic.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import CheckpointError

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

# safetensors dtype code <-> torch dtype name, and item sizes
ST_DTYPES = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}
TORCH_TO_ST = {name: code for code, (name, _) in ST_DTYPES.items()}
FLOAT_CODES = {"F64", "F32", "F16", "BF16"}


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes live: file, absolute byte range, dtype code, shape."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass
class CheckpointIndex:
    """All tensors of a model directory (or one adapter file), by name."""

    root: Path
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def total_size(self) -> int:
        return sum(t.nbytes for t in self.tensors.values())

    def float_dtype(self) -> str | None:
        """The dtype code most float tensors share (the model's dtype)."""
        sizes: dict[str, int] = {}
        for t in self.tensors.values():
            if t.dtype in FLOAT_CODES:
                sizes[t.dtype] = sizes.get(t.dtype, 0) + t.nbytes
        return max(sizes, key=sizes.get) if sizes else None


def read_header(path: Path) -> tuple[dict, int]:
    """Parse a safetensors header; returns (header dict, data start offset). Validates bounds."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{path}: not a safetensors file (too short); re-save or re-download it")
            (n,) = struct.unpack("<Q", head)
            if n > min(size - 8, 100_000_000):
                raise CheckpointError(f"{path}: corrupt safetensors header (length {n}); re-save or re-download it")
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        if isinstance(e, FileNotFoundError):
            raise CheckpointError(f"{path}: file not found; check the model directory") from None
        raise CheckpointError(f"{path}: unreadable safetensors header ({e}); re-save or re-download it") from None
    data_start = 8 + n
    if not isinstance(header, dict) or not all(_entry_ok(v) for k, v in header.items() if k != "__metadata__"):
        raise CheckpointError(f"{path}: corrupt safetensors header (not tensor entries); re-save or re-download it")
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if data_start + end > size:
        raise CheckpointError(
            f"{path}: truncated ({size} bytes, header needs {data_start + end}); re-save or re-download it"
        )
    return header, data_start


def _entry_ok(v) -> bool:
    """One header entry: {"dtype": str, "shape": [ints >= 0], "data_offsets": [start <= end]}."""
    if not isinstance(v, dict) or not isinstance(v.get("dtype"), str):
        return False
    shape, offsets = v.get("shape"), v.get("data_offsets")

    def ints(xs) -> bool:
        return isinstance(xs, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in xs)

    return ints(shape) and ints(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]


def read_file_index(path: Path, index: CheckpointIndex | None = None) -> CheckpointIndex:
    """Add one safetensors file's tensors to `index` (a new one by default)."""
    path = Path(path)
    index = index or CheckpointIndex(root=path.parent)
    header, data_start = read_header(path)
    meta = header.pop("__metadata__", None)
    index.metadata.update(meta if isinstance(meta, dict) else {})
    for name, v in header.items():
        if v["dtype"] not in ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has unsupported dtype {v['dtype']}")
        s, e = v["data_offsets"]
        index.tensors[name] = TensorInfo(name, path, v["dtype"], tuple(v["shape"]), data_start + s, data_start + e)
    return index


def read_index(model_dir: Path) -> CheckpointIndex:
    """Index a Hugging Face model directory's safetensors (sharded or single)."""
    model_dir = Path(model_dir)
    index = CheckpointIndex(root=model_dir)
    idx_path = model_dir / INDEX_NAME
    if idx_path.is_file():
        from soups.io.files import read_json

        weight_map = read_json(idx_path, None, CheckpointError, "re-save the model").get("weight_map")
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise CheckpointError(f"{idx_path}: malformed index (no `weight_map` of tensor -> file); re-save it")
        for shard in sorted(set(weight_map.values())):
            if not (model_dir / shard).is_file():
                raise CheckpointError(f"{model_dir / shard}: shard listed in {INDEX_NAME} is missing")
            read_file_index(model_dir / shard, index)
        missing = sorted(set(weight_map) - set(index.tensors))
        if missing:
            raise CheckpointError(f"{idx_path}: tensor {missing[0]} is listed but not in its shard; re-save the model")
    else:
        files = sorted(model_dir.glob("*.safetensors"))
        if not files:
            pickled = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
            hint = f" (found {pickled[0]}: convert it to safetensors)" if pickled else ""
            raise CheckpointError(f"{model_dir}: no *.safetensors weights{hint}")
        for f in files:
            read_file_index(f, index)
    return index


class TensorReader:
    """mmap-backed reads of single tensors as numpy arrays; keeps one mapping per file open.

    numpy, not torch: a merge never needs torch, so `soups merge` starts in a fraction of the time.
    """

    def __init__(self) -> None:
        self._maps: dict[Path, tuple[object, mmap.mmap]] = {}

    def _map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            f = open(path, "rb")
            # copy-on-write mapping: a stray write never reaches the file
            self._maps[path] = (f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY))
        return self._maps[path][1]

    def raw(self, info: TensorInfo):
        """The tensor's stored elements (bf16 as uint16), a view over the mapped file."""
        import numpy as np

        dt = NUMPY_DTYPES.get(info.dtype)
        if dt is None:
            raise CheckpointError(
                f"{info.file}: tensor {info.name} is {info.dtype}; soups can only merge float tensors"
            )
        count = info.nbytes // np.dtype(dt).itemsize
        return np.frombuffer(self._map(info.file), dtype=dt, count=count, offset=info.start).reshape(info.shape)

    def f32(self, info: TensorInfo):
        """The tensor as a new float32 array."""
        return to_f32(self.raw(info), info.dtype)

    def prefetch(self, info: TensorInfo) -> None:
        """Start reading the tensor's pages from disk in the background (read-ahead before it is used)."""
        self._advise(info, "MADV_WILLNEED")

    def release(self, info: TensorInfo) -> None:
        """Unmap the tensor's pages once used (they stay in the page cache): resident memory stays flat."""
        self._advise(info, "MADV_DONTNEED")  # private, never-written mapping: a later read maps the file again

    def _advise(self, info: TensorInfo, flag: str) -> None:
        m = self._map(info.file)
        if not hasattr(mmap, flag) or info.nbytes == 0:
            return
        start = info.start - info.start % mmap.PAGESIZE
        m.madvise(getattr(mmap, flag), start, info.end - start)

    def close(self) -> None:
        for f, m in self._maps.values():
            try:
                m.close()
            except BufferError:
                pass  # a view is still alive; the mapping goes when it does
            f.close()
        self._maps.clear()

    def __enter__(self) -> TensorReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


NUMPY_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def to_f32(arr, code: str):
    """Stored elements -> new float32 array (bf16 is the top half of a float32)."""
    import numpy as np

    if code == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32, copy=True)


def from_f32(arr, code: str):
    """float32 array -> stored elements of dtype `code`, rounded once (round to nearest even; NaN stays NaN)."""
    import numpy as np

    if code == "BF16":
        u = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)
        rounded = ((u + (0x7FFF + ((u >> 16) & 1))) >> 16).astype(np.uint16)
        nan = np.isnan(arr)
        if nan.any():
            rounded[nan] = 0x7FC0
        return rounded
    return np.ascontiguousarray(arr, dtype=NUMPY_DTYPES[code])


def parse_size(value: str | int, flag: str = "--shard-size") -> int:
    """'5GB' -> 5e9, '500MiB' -> 500*2**20, 1000 -> 1000."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}B"
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", str(value), re.IGNORECASE)
    if not m or float(m.group(1)) <= 0:
        raise CheckpointError(f"{flag} {value!r}: expected a size like 5GB, 500MB or 2GiB")
    base = 1024 if m.group(3) else 1000
    power = " KMGT".index(m.group(2).upper() or " ")
    size = float(m.group(1)) * base**power
    if not 1000 <= size <= 1e15:
        raise CheckpointError(f"{flag} {value!r}: a shard must hold 1KB to 1PB; use e.g. 5GB or 500MB")
    return int(size)


@dataclass(frozen=True)
class OutTensor:
    """A planned output tensor; `produce()` returns its bytes-like data (or `copy_from` gives a source range)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    produce: Callable[[], object] | None = None  # -> numpy array of stored elements (see from_f32)
    copy_from: TensorInfo | None = None

    @property
    def nbytes(self) -> int:
        n = ST_DTYPES[self.dtype][1]
        for d in self.shape:
            n *= d
        return n


def plan_shards(tensors: list[OutTensor], shard_size: int) -> list[list[OutTensor]]:
    """Split tensors (in the given order) into shards of at most `shard_size` bytes (a bigger tensor alone)."""
    shards: list[list[OutTensor]] = [[]]
    filled = 0
    for t in tensors:
        if shards[-1] and filled + t.nbytes > shard_size:
            shards.append([])
            filled = 0
        shards[-1].append(t)
        filled += t.nbytes
    return shards


def _header_bytes(shard: list[OutTensor], metadata: dict[str, str]) -> bytes:
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    for t in shard:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _copy_range(src: TensorInfo, dst_fd: int) -> None:
    with open(src.file, "rb") as f:
        offset, left = src.start, src.nbytes
        while left:
            n = os.copy_file_range(f.fileno(), dst_fd, left, offset)  # kernel copy, no user memory
            if n <= 0:
                raise CheckpointError(f"{src.file}: ended early while copying {src.name}")
            offset += n
            left -= n


def write_shards(
    out_dir: Path,
    tensors: list[OutTensor],
    *,
    shard_size: int,
    prefix: str = "model",
    metadata: dict[str, str] | None = None,
    on_tensor: Callable[[OutTensor], None] | None = None,
    lookahead: int = 2,
) -> list[str]:
    """Write planned tensors to `<prefix>.safetensors` or `<prefix>-0000k-of-0000n.safetensors` + index.

    Tensors are written in plan order, sorted within a shard by (itemsize desc, name) for alignment.
    Computed tensors (`produce`: one array, or an iterator of row blocks) run on one worker thread up
    to `lookahead` pieces ahead of the writer (soups.io.producer), so computing overlaps writing while
    memory stays bounded. Returns the file names.
    """
    from concurrent.futures import ThreadPoolExecutor

    from soups.io.producer import Producer

    metadata = {"format": "pt", **(metadata or {})}
    ordered = [sorted(s, key=lambda t: (-ST_DTYPES[t.dtype][1], t.name)) for s in plan_shards(tensors, shard_size)]
    names = (
        [f"{prefix}.safetensors"]
        if len(ordered) == 1
        else [f"{prefix}-{i + 1:05d}-of-{len(ordered):05d}.safetensors" for i in range(len(ordered))]
    )
    copied = lambda t: t.copy_from is not None and t.copy_from.dtype == t.dtype  # noqa: E731
    todo = [t for shard in ordered for t in shard if not copied(t)]
    weight_map: dict[str, str] = {}
    flusher = ThreadPoolExecutor(1, thread_name_prefix="soups-flush")  # writeback overlaps compute
    with flusher, Producer(todo, depth=lookahead) as producer:
        for fname, shard in zip(names, ordered):
            with open(out_dir / fname, "wb", buffering=0) as f:  # raw writes and kernel copies interleave
                _write_all(f, _header_bytes(shard, metadata))
                unflushed = 0
                for t in shard:
                    if copied(t):
                        _copy_range(t.copy_from, f.fileno())
                    else:
                        _write_tensor(f, t, producer.pieces())
                    weight_map[t.name] = fname
                    unflushed += t.nbytes
                    if unflushed >= FLUSH_BYTES:  # start writing back what is done, off the main thread
                        flusher.submit(_sync_and_close, os.dup(f.fileno()))
                        unflushed = 0
                    if on_tensor:
                        on_tensor(t)
    if len(names) > 1:
        total = sum(t.nbytes for t in tensors)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / f"{prefix}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


FLUSH_BYTES = 256 << 20


def _sync_and_close(fd: int) -> None:
    """fdatasync a duplicated descriptor (so the writer may close its own), then close it."""
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def _write_tensor(f, t: OutTensor, pieces) -> None:
    """Write a computed tensor from its pieces (the whole array or blocks of rows), checking them against the plan."""
    import numpy as np

    want, written = np.dtype(NUMPY_DTYPES[t.dtype]), 0
    for data in pieces:
        whole = tuple(data.shape) == t.shape
        if data.dtype != want or not (whole or (data.ndim == len(t.shape) and data.shape[1:] == t.shape[1:])):
            raise AssertionError(f"planned {t.name} as {t.dtype}{t.shape}, got {data.dtype}{tuple(data.shape)}")
        if data.size:
            _write_all(f, np.ascontiguousarray(data).reshape(-1).view(np.uint8))
        written += data.nbytes
    if written != t.nbytes:
        raise AssertionError(f"planned {t.name} as {t.nbytes} bytes, its producer gave {written}")


def _write_all(f, buf) -> None:
    view = memoryview(buf).cast("B")
    while view:
        n = f.write(view)
        view = view[n:]
