"""7B-scale merge benchmark: `soups merge` on a Llama-2-7B-shaped base, against the limit's parts and PEFT, in one run.

Why: DESIGN.md claims the engine streams per tensor, so a 7B-70B base merges on a small machine at about the
cost of copying it. This measures it at 7B scale on this machine instead of assuming it.

What: builds once, under the cache directory, a random bf16 base shaped like Llama-2-7B (hidden 4096, 32 layers,
intermediate 11008, vocab 32000, untied lm_head: 13.5 GB in two shards + index, the Hub's layout), streamed by soups'
own shard writer (a few tensors in memory), and 3 experts (r=16 on all seven projections). Then it times whole
processes from outside (start-up included), each command once: start-up, copy + sync of the base, the delta
matmuls alone (in-process), `soups merge` full (sharded output + index, fsynced), `soups merge --format adapter`,
and PEFT's load / cat / merge_and_unload / save path, stopped if its RssAnon passes the memory limit (its measured
failure is reported with its peak). Every command starts alike: dirty pages flushed and the base's pages dropped from
the page cache (`posix_fadvise(DONTNEED)`, only our files), so each one reads the base from disk. The same merge on
the 0.9 GB base of `make bench` checks that peak memory is flat in the base size.

Disk: the cached base and experts (about 14 GB) plus one 13.5 GB output at a time, removed after each command
(about 28 GB in all). Launch: `make bench-scale`, or
    .venv/bin/python bench/scale.py [--cache DIR] [--no-peft] [--peft-limit-gib 24]
The cache defaults to $SOUPS_BENCH_CACHE or ~/.cache/soups/bench-scale; results also go to <cache>/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.merge import (  # noqa: E402  (the same helpers as `make bench`)
    STARTUP,
    WORK,
    OverLimit,
    accuracy,
    base_files,
    copy_and_sync,
    make_base,
    make_expert,
    matmul_seconds,
    peft_commands,
    soups_merge,
    timed,
)

LLAMA2_7B = dict(layers=32, hidden=4096, inter=11008, vocab=32000, heads=32, tie=False, shard_size="10GB")
LLAMA2_70B_PARAMS = 68.98e9  # the 70B's parameter count, for the extrapolation
TARGETS = {"full / limit": 1.25, "full / PEFT": 0.4, "adapter s": 3.0, "peak GB": 1.5}


def cache_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("SOUPS_BENCH_CACHE") or Path.home() / ".cache" / "soups" / "bench-scale")


def evict(paths: list[Path]) -> None:
    """Flush dirty pages, then drop these files' pages from the page cache: the next reader goes to disk."""
    os.sync()
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", help="where the 7B-shaped base and experts are built once (default: see above)")
    ap.add_argument("--no-peft", action="store_true", help="skip the PEFT path")
    ap.add_argument(
        "--peft-limit-gib",
        type=float,
        default=24.0,
        help="stop PEFT past this RssAnon (capped at available memory minus 3 GiB, for the others)",
    )
    args = ap.parse_args()

    cache = cache_dir(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"preparing the 7B-shaped base and experts under {cache} (once) ...", flush=True)
    base = make_base(cache / "llama2-7b-shaped", **LLAMA2_7B)
    experts = [make_expert(cache / f"expert{i}", base, seed=i) for i in range(3)]
    small = make_base(WORK / "base-32", 32)  # `make bench`'s base
    small_ex = [make_expert(WORK / f"expert{i}-32", small, seed=i) for i in range(3)]
    print(f"  ready in {time.perf_counter() - t0:.0f} s", flush=True)
    inputs = base_files(base) + [e / "adapter_model.safetensors" for e in experts]
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    rows: dict[str, tuple[float, int | None]] = {}
    notes: list[str] = []

    def run(name: str, cmd: list[str], out: Path | None = None, keep: bool = False, **kw) -> None:
        evict(inputs)
        rows[name] = timed(cmd, **kw)
        print(f"  {name}: {rows[name][0]:.1f} s, {rows[name][1] / 1e6:.0f} MB", flush=True)
        if out is not None and not keep:
            shutil.rmtree(out, ignore_errors=True)

    try:
        run("start-up (python importing torch, safetensors)", STARTUP)
        run("copy base + sync", copy_and_sync(base, scratch / "copy"), scratch / "copy")
        evict(inputs)
        rows["delta matmuls alone (float32, in-process)"] = (matmul_seconds(experts, 2.0 / 3), None)
        print(f"  delta matmuls alone: {rows['delta matmuls alone (float32, in-process)'][0]:.1f} s", flush=True)
        full = scratch / "full"
        run("soups merge (full, sharded + index, fsynced)", soups_merge(base, experts, full), full, keep=True)
        shards = len(list(full.glob("*.safetensors")))
        index = "index" if (full / "model.safetensors.index.json").is_file() else "NO index"
        notes.append(f"full output: {shards} shards + {index}, {size_of(full) / 1e9:.2f} GB")
        adapter = scratch / "adapter"
        run(
            "soups merge --format adapter",
            soups_merge(base, experts, adapter, "--format", "adapter"),
            adapter,
            keep=True,
        )
        notes.append(accuracy(base, experts, full, adapter, (0, 15, 31)))
        shutil.rmtree(full)
        if not args.no_peft:
            limit = int(min(args.peft_limit_gib * 2**30, mem_available() - 3 * 2**30))
            name = "PEFT full (load, cat, merge_and_unload, save)"
            cmd = peft_commands(base, experts, scratch / "peft_full", scratch / "peft_adapter")[name]
            try:
                run(name, cmd, scratch / "peft_full", mem_limit=limit)
            except OverLimit as e:  # its wall so far bounds PEFT's time from below
                rows[name + " STOPPED"] = (e.wall, e.peak)
                ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
                notes.append(
                    f"PEFT full {e}: the limit is min(--peft-limit-gib, available memory - 3 GiB), so that "
                    f"the other jobs keep theirs (machine: {ram:.0f} GiB RAM)"
                )
                shutil.rmtree(scratch / "peft_full", ignore_errors=True)
        evict(base_files(small))
        small_out = scratch / "small"
        _, small_peak = timed(soups_merge(small, small_ex, small_out))
        shutil.rmtree(small_out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(rows, notes, base, small, small_peak, cache)


def report(rows, notes, base: Path, small: Path, small_peak: int, cache: Path) -> None:
    size, small_size = size_of(base), size_of(small)
    load = os.getloadavg()
    print(
        f"\nbase: {size / 1e9:.2f} GB bf16, Llama-2-7B-shaped, {len(base_files(base))} shards; 3 experts r=16 on "
        f"7 projections; one run; machine: {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end"
    )
    print(f"{'command':<52} {'wall s':>8} {'peak RssAnon MB':>16}")
    for k, (wall, peak) in rows.items():
        print(f"{k:<52} {wall:>8.2f} {peak / 1e6 if peak is not None else float('nan'):>16.0f}")
    get = lambda prefix: next(v for k, v in rows.items() if k.startswith(prefix))  # noqa: E731
    limit = get("start-up")[0] + get("copy")[0] + get("delta")[0]
    full_s, full_peak = get("soups merge (full")
    ad_s = get("soups merge --format")[0]
    peft_name, (peft, _) = next(((k, v) for k, v in rows.items() if k.startswith("PEFT")), ("", (float("nan"), 0)))
    stopped = " (PEFT stopped: an upper bound)" if peft_name.endswith("STOPPED") else ""
    checks = [
        ("full / (start-up + copy+sync + matmuls)", full_s / limit, TARGETS["full / limit"]),
        ("full / copy+sync alone", full_s / get("copy")[0], None),
        ("full / PEFT full path" + stopped, full_s / peft, TARGETS["full / PEFT"]),
        ("adapter merge, s", ad_s, TARGETS["adapter s"]),
        ("peak RssAnon of the full merge, GB", full_peak / 1e9, TARGETS["peak GB"]),
        (f"peak RssAnon 13.5 GB base / {small_size / 1e9:.1f} GB base (flat: ~1)", full_peak / small_peak, None),
    ]
    print(f"\nlimit (start-up + copy+sync + matmuls): {limit:.2f} s")
    print(f"{'check':<52} {'value':>7} {'target':>8}")
    for name, value, target in checks:
        verdict = "" if target is None else (" ok" if value <= target else " MISSED")
        print(f"{name:<52} {value:>7.2f} {'<= ' + str(target) if target else '':>8}{verdict}")
    scale = LLAMA2_70B_PARAMS / (size / 2)
    print(
        f"peak RssAnon: {full_peak / 1e6:.0f} MB at {size / 1e9:.1f} GB, {small_peak / 1e6:.0f} MB at "
        f"{small_size / 1e9:.2f} GB"
    )
    for n in notes:
        print(n)
    print(
        f"\n70B from these figures (x{scale:.1f} the bytes; time linear in bytes, memory per tensor): full merge "
        f"~{full_s * scale / 60:.0f} min, copy+sync ~{get('copy')[0] * scale / 60:.0f} min; disk "
        f"{2 * size * scale / 1e9:.0f} GB (base + output)"
    )
    (cache / "scale.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "notes": notes,
                "checks": checks,
                "small_peak": small_peak,
                "base_bytes": size,
                "load_end": load,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
