"""Serving N users: one vLLM engine with N soup adapters (multi-LoRA) vs one merged checkpoint per user.

For N in (1, 8, 32) users, each with its own weight vector over 3 experts, it measures
- memory per user: the process's resident memory added by the engine(s) and the users' soups,
  divided by N (+ the soup's size on disk),
- aggregate tokens/s: every user sends R concurrent requests of T new tokens (greedy). The adapter
  setup serves them all from one engine (continuous batching across users); the merged setup runs one
  engine per user, one after the other, so its figure is the best case of N servers time-sharing the
  same machine (no contention overhead counted),
and prints the ratios. Each measurement runs in a fresh subprocess (clean memory baseline). The model is
a random Llama (hidden 256, 4 layers, float32, SmolLM2's vocabulary) so that 32 engines fit a 2-core
24 GB CPU machine in a few minutes; KV cache is the same per user in both setups (8 MiB). Engines run
unpinned on one OpenMP thread (VLLM_CPU_OMP_THREADS_BIND=nobind, OMP_NUM_THREADS=1) for steady figures
on a shared machine.

    .venv/bin/python bench/serve.py                 # N = 1, 8, 32; 5-10 minutes on 2 busy CPU cores
    .venv/bin/python bench/serve.py --users 1,8     # quicker
Results: printed, and written to .bench/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

KV_PER_USER = 8 << 20
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def prepare(work: Path, n_max: int) -> dict:
    """Base, 3 experts, and for every user a soup adapter and a merged checkpoint."""
    from soups.base import resolve_base
    from soups.merge.engine import merge
    from tests.helpers import make_lora_expert, make_tiny_llama

    base = work / "base"
    if not (base / "config.json").is_file():
        make_tiny_llama(base, dtype="float32", tie=True, hidden=256, layers=4, tokenizer_from=resolve_base("default"))
    experts = []
    for i in range(3):
        e = work / f"expert{i}"
        if not (e / "adapter_config.json").is_file():
            make_lora_expert(base, e, r=8, alpha=16, targets=TARGETS, seed=10 + i)
        experts.append(str(e))
    users = []
    for u in range(n_max):
        w = [1 + (u * 7 + 3 * i) % 5 for i in range(3)]  # distinct weight vectors
        adapter, full = work / f"adapter{u}", work / f"full{u}"
        if not (adapter / "soup.json").is_file():
            merge(experts=experts, weights=w, base=str(base), format="adapter", out=adapter, force=True)
        if not (full / "soup.json").is_file():
            merge(experts=experts, weights=w, base=str(base), format="full", out=full, force=True)
        users.append({"adapter": str(adapter), "full": str(full)})
    return {"base": str(base), "users": users}


def _prompts(n_users: int, per_user: int) -> list[str]:
    topics = ["soup", "rain", "trains", "tea", "cats", "maps", "bread", "snow"]
    return [
        f"User {u} asks: tell me about {topics[(u + r) % len(topics)]}."
        for u in range(n_users)
        for r in range(per_user)
    ]


def run_one(kind: str, n: int, world: dict, per_user: int, tokens: int) -> dict:
    """One measurement in this (fresh) process; returns memory and throughput."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    # vLLM's CPU backend pins its OpenMP threads to cores; on a shared machine a pinned engine can land on a busy
    # core and run 10-30x slower (measured here). Unpinned, one thread: steady figures, equal for both setups.
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import vllm
    from vllm.lora.request import LoRARequest

    from soups.vllm_server import engine_kwargs

    params = vllm.SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)
    warm = vllm.SamplingParams(temperature=0, max_tokens=2)  # one warm-up request per engine, not timed
    prompts = _prompts(n, per_user)
    common = dict(dtype="float32", max_model_len=256, distributed_executor_backend="uni", seed=0)
    common |= engine_kwargs() | {"kv_cache_memory_bytes": KV_PER_USER * (n if kind == "adapters" else 1)}
    users = world["users"][:n]
    before = rss()
    if kind == "adapters":
        t = time.perf_counter()
        llm = vllm.LLM(
            world["base"], enable_lora=True, max_lora_rank=32, max_loras=min(n, 32), max_cpu_loras=n, **common
        )
        start_s = time.perf_counter() - t
        loras = [LoRARequest(f"user{u}", u + 1, users[u]["adapter"]) for u in range(n) for _ in range(per_user)]
        llm.generate(prompts[:1], warm, lora_request=loras[:1], use_tqdm=False)
        t, c = time.perf_counter(), time.process_time()
        outs = llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
        gen_s, cpu_s = time.perf_counter() - t, time.process_time() - c
        disk = sum(f.stat().st_size for u in users for f in Path(u["adapter"]).glob("*.safetensors"))
    else:
        engines, start_s, gen_s, cpu_s, outs = [], 0.0, 0.0, 0.0, []
        for u in range(n):
            t = time.perf_counter()
            engines.append(vllm.LLM(users[u]["full"], **common))
            start_s += time.perf_counter() - t
            engines[-1].generate(prompts[:1], warm, use_tqdm=False)
        for u in range(n):
            t, c = time.perf_counter(), time.process_time()
            outs += engines[u].generate(prompts[u * per_user : (u + 1) * per_user], params, use_tqdm=False)
            gen_s, cpu_s = gen_s + time.perf_counter() - t, cpu_s + time.process_time() - c
        disk = sum(f.stat().st_size for u in users for f in Path(u["full"]).glob("*.safetensors"))
    new_tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {
        "kind": kind,
        "n": n,
        "mem_per_user": (rss() - before) / n,
        "disk_per_user": disk / n,
        "tok_s": new_tokens / gen_s,
        "tok_cpu_s": new_tokens / cpu_s,
        "start_s": start_s,
        "new_tokens": new_tokens,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", default="1,8,32", help="comma-separated user counts")
    ap.add_argument("--requests", type=int, default=4, help="concurrent requests per user")
    ap.add_argument("--tokens", type=int, default=16, help="new tokens per request")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "serve")
    ap.add_argument("--one", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    counts = [int(x) for x in args.users.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    if args.one:
        world = json.loads((args.work / "world.json").read_text())
        res = run_one(args.one[0], int(args.one[1]), world, args.requests, args.tokens)
        print("RESULT " + json.dumps(res), flush=True)
        return
    t0 = time.perf_counter()
    world = prepare(args.work, max(counts))
    (args.work / "world.json").write_text(json.dumps(world))
    results = {}
    for n in counts:
        for kind in ("adapters", "merged"):
            cmd = [
                sys.executable,
                __file__,
                "--one",
                kind,
                str(n),
                "--work",
                str(args.work),
                "--requests",
                str(args.requests),
                "--tokens",
                str(args.tokens),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode != 0 or not line:
                sys.exit(f"bench {kind} N={n} failed:\n{out.stderr[-3000:]}")
            results[(kind, n)] = json.loads(line[0][7:])
            print(f"  {kind:8s} N={n:3d}: {results[(kind, n)]}", file=sys.stderr, flush=True)
    mib = 1 << 20
    print(
        f"\nN users x {args.requests} concurrent requests x {args.tokens} new tokens (float32 random Llama, "
        "hidden 256, 4 layers, CPU). adapters = one engine, one soup LoRA per user; merged = one engine per user.\n"
        "tok/s: tokens per second of wall time; tok/cpu-s: per second of CPU time (steadier on a shared machine).\n"
    )
    print(
        "| users | mem/user adapters | mem/user merged | merged/adapters mem | disk/user adapter | disk/user merged "
        "| tok/s adapters | tok/s merged | adapters/merged tok/s | adapters/merged tok/cpu-s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in counts:
        a, m = results[("adapters", n)], results[("merged", n)]
        rows.append({"users": n, "adapters": a, "merged": m})
        print(
            f"| {n} | {a['mem_per_user'] / mib:.0f} MiB | {m['mem_per_user'] / mib:.0f} MiB | "
            f"{m['mem_per_user'] / a['mem_per_user']:.1f}x | {a['disk_per_user'] / mib:.2f} MiB | "
            f"{m['disk_per_user'] / mib:.1f} MiB | {a['tok_s']:.0f} | {m['tok_s']:.0f} | "
            f"{a['tok_s'] / m['tok_s']:.2f}x | {a['tok_cpu_s'] / m['tok_cpu_s']:.2f}x |"
        )
    (ROOT / ".bench").mkdir(exist_ok=True)
    (ROOT / ".bench" / "serve.json").write_text(json.dumps(rows, indent=1))
    print(f"\n(total bench time {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
