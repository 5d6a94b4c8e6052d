"""Serving soups on the embedded base: a user's soup against the base, in the same `soups serve` and run.

For each mode, merged (the CPU default: one vLLM engine per user's merged checkpoint) and lora (one engine,
one exact soup adapter per user), it starts `soups serve` (the real command, on 127.0.0.1) with the embedded
base (SmolLM2-135M-Instruct), the shipped experts concise, friendly, expert and one user, alice (1,0,1), and
measures through the same OpenAI-compatible endpoint, for model `base` and model `alice`:
- p50 latency of a 64-token answer (greedy, ignore_eos) at 1 and at 8 concurrent requests;
- throughput at 8 concurrent requests (generated tokens / wall time);
rounds alternate base and soup, so a change in the machine's load hits both; the ratios are soup / base;
- memory per extra user: merged, the proportional set size (PSS) of the processes of one more user's engine
  (and how long that user's first answer waits for it to start); lora, the engine's PSS growth after 4 more
  users each answered once, divided by 4.
Each mode starts from a clean state directory (.bench/serve/home; the prepared base is reused).

    .venv/bin/python bench/serve.py            # = make bench-serve; 10-15 minutes on 2 busy CPU cores
    .venv/bin/python bench/serve.py --modes merged --rounds 2
Results: printed as a table, and written to .bench/serve.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TOKENS = 64
TOPICS = ["soup", "rain", "trains", "tea", "cats", "maps", "bread", "snow"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pss(pgid: int) -> int:
    """Proportional set size (bytes) of every process in a process group (an engine: server, core, worker)."""
    total = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if os.getpgid(int(d.name)) != pgid:
                continue
            for line in (d / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ProcessLookupError):
            continue
    return total


class Serve:
    """`soups serve` in a subprocess, and the calls the benchmark makes to it."""

    def __init__(self, mode: str, work: Path, base: Path):
        self.mode, self.port, self.home = mode, _free_port(), work / "home"
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        users = work / "users.yaml"
        users.write_text("users:\n  alice: 1,0,1\n")
        self.env = dict(os.environ, SOUPS_HOME=str(self.home))
        self.env.pop("SOUPS_API_KEY", None)
        self.err = work / f"serve-{mode}.err"
        cmd = [sys.executable, "-m", "soups", "serve", "--mode", mode, "--base", str(base), "--users", str(users),
               "--port", str(self.port)]
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        t = time.perf_counter()
        while "serving" not in self.err.read_text():
            if self.proc.poll() is not None or time.perf_counter() - t > 1800:
                sys.exit(f"soups serve --mode {mode} did not start:\n{self.err.read_text()[-3000:]}")
            time.sleep(1)
        self.start_s = time.perf_counter() - t
        self.state_file = self.home / "serve" / f"127.0.0.1-{self.port}.json"
        self.key = Path(self.state()["key_file"]).read_text().strip()

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def chat(self, model: str, i: int, max_tokens: int = TOKENS) -> tuple[float, int]:
        """One greedy answer of `max_tokens` tokens: (seconds, tokens)."""
        body = {"model": model, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                "messages": [{"role": "user", "content": f"Tell me about {TOPICS[i % len(TOPICS)]}, please."}]}
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"}
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/chat/completions", json.dumps(body).encode(),
                                     headers=headers)
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=3600) as resp:
            data = json.loads(resp.read())
        return time.perf_counter() - t, int(data["usage"]["completion_tokens"])

    def add(self, name: str, weights: str) -> None:
        r = subprocess.run([sys.executable, "-m", "soups", "serve", "add", name, "--weights", weights, "--port",
                            str(self.port)], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"soups serve add {name} failed: {r.stderr}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)


def measure(s: Serve, rounds: int) -> dict:
    """Latency and throughput of `base` and `alice`, rounds alternating between them."""
    for model in ("base", "alice"):  # warm: alice's engine up (merged) or adapter loaded (lora)
        s.chat(model, 0, max_tokens=2)
    lat = {m: {1: [], 8: []} for m in ("base", "alice")}
    wall = {m: 0.0 for m in lat}
    toks = {m: 0 for m in lat}
    for r in range(rounds):
        for model in ("base", "alice") if r % 2 == 0 else ("alice", "base"):
            for i in range(2):  # 1 concurrent: 2 answers per round
                lat[model][1].append(s.chat(model, r * 2 + i)[0])
            t = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:  # 8 concurrent
                answers = list(pool.map(s.chat, [model] * 8, range(8)))
            wall[model] += time.perf_counter() - t
            lat[model][8] += [a[0] for a in answers]
            toks[model] += sum(a[1] for a in answers)
            print(f"    {s.mode} round {r + 1}/{rounds} {model}: {toks[model] / wall[model]:.1f} tok/s at 8",
                  file=sys.stderr, flush=True)
    return {m: {"p50_1": statistics.median(lat[m][1]), "p50_8": statistics.median(lat[m][8]),
                "tok_s_8": toks[m] / wall[m], "n_1": len(lat[m][1]), "n_8": len(lat[m][8])} for m in lat}


def extra_user_memory(s: Serve) -> dict:
    if s.mode == "merged":
        t = time.perf_counter()
        s.add("bob", "0,1,1")
        s.chat("bob", 0, max_tokens=2)  # waits for bob's engine to start
        first_s = time.perf_counter() - t
        state = s.state()
        return {"per_user": pss(state["engines"][state["users"]["bob"]["soup"]]), "first_answer_s": first_s,
                "base_engine": pss(state["engines"]["base"])}
    engine = s.state()["engines"]["base"]
    before = pss(engine)
    for i, w in enumerate(("0,1,1", "1,1,0", "1,1,1", "2,0,1")):
        s.add(f"user{i}", w)
        s.chat(f"user{i}", i, max_tokens=2)
    return {"per_user": (pss(engine) - before) / 4, "base_engine": before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="merged,lora", help="comma-separated: merged, lora")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per model (each: 2 single + 8 concurrent answers)")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "serve")
    args = ap.parse_args()
    from soups.base import resolve_base
    from soups.vllm_server import cpu_threads

    base = resolve_base("default")
    args.work.mkdir(parents=True, exist_ok=True)
    t0, rows = time.perf_counter(), []
    for mode in args.modes.split(","):
        print(f"  {mode}: starting soups serve", file=sys.stderr, flush=True)
        s = Serve(mode, args.work, base)
        try:
            res = measure(s, args.rounds)
            mem = extra_user_memory(s)
        finally:
            s.stop()
        rows.append({"mode": mode, "start_s": s.start_s, **res, "memory": mem})
    load = os.getloadavg()[0]
    mib = 1 << 20
    print(f"\n`make bench-serve`: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (load average "
          f"{load:.1f} at the end), {cpu_threads()} OpenMP thread(s) per engine; embedded base (SmolLM2-135M-Instruct,"
          f" bf16), user alice = 1,0,1 over concise, friendly, expert; {TOKENS}-token greedy answers; "
          f"{args.rounds} rounds per model (p50 over {rows[0]['alice']['n_1']} answers at 1, "
          f"{rows[0]['alice']['n_8']} at 8 concurrent); ratios soup / base in the same server and run.\n")
    print("| mode | p50 at 1: base / soup | ratio (<= 1.5) | p50 at 8: base / soup | ratio (<= 1.5) "
          "| tok/s at 8: base / soup | ratio (>= 0.6) | memory per extra user |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        b, a, m = r["base"], r["alice"], r["memory"]
        size = f"{m['per_user'] / mib:.0f} MiB" if m["per_user"] >= mib else f"{m['per_user'] / 1024:.0f} KiB"
        extra = size + (f" (its first answer after {m['first_answer_s']:.0f} s)" if "first_answer_s" in m else "")
        print(f"| {r['mode']} | {b['p50_1']:.2f} / {a['p50_1']:.2f} s | {a['p50_1'] / b['p50_1']:.2f}x "
              f"| {b['p50_8']:.2f} / {a['p50_8']:.2f} s | {a['p50_8'] / b['p50_8']:.2f}x "
              f"| {b['tok_s_8']:.1f} / {a['tok_s_8']:.1f} | {a['tok_s_8'] / b['tok_s_8']:.2f}x | {extra} |")
    for r in rows:
        print(f"\n{r['mode']}: `soups serve` ready after {r['start_s']:.0f} s; the base's engine: "
              f"{r['memory']['base_engine'] / mib:.0f} MiB (PSS, KV cache included)", end="")
    print()
    (ROOT / ".bench").mkdir(exist_ok=True)
    (ROOT / ".bench" / "serve.json").write_text(json.dumps({"rows": rows, "load": load}, indent=1))
    print(f"\n(total bench time {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
