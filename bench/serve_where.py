"""Where the time goes in vLLM's CPU path for a soup: threads, LoRA rank padding, max_loras, merged weights.

One vLLM engine per configuration, each in a fresh process, in this process's engine mode (the model in the
engine process, as `soups serve` runs it on a CPU), on the embedded base (SmolLM2-135M-Instruct, bf16) with the
soup concise=1, expert=0.5 of the shipped experts (an exact adapter of rank 24, padded by vLLM to
--max-lora-rank, or merged into a full checkpoint).
Each answers 1 prompt, then 8 at once, with 64 greedy tokens; the figure is CPU seconds (steadier than wall time
on a shared machine), and the ratio is against the base on one unpinned thread, measured in the same run.

    .venv/bin/python bench/serve_where.py        # about 5 minutes on 2 busy CPU cores
Results: printed, and written to .bench/serve_where.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (model, threads, max_lora_rank or None, max_loras)
CONFIGS = {
    "base, 1 thread": ("base", 1, None, 1),
    "base, 2 threads": ("base", 2, None, 1),
    "soup merged, 1 thread": ("full", 1, None, 1),
    "soup adapter, max_lora_rank 32, max_loras 1": ("adapter", 1, 32, 1),
    "soup adapter, max_lora_rank 32, max_loras 4 (soups serve's default)": ("adapter", 1, 32, 4),
    "soup adapter, max_lora_rank 64, max_loras 4": ("adapter", 1, 64, 4),
}


def prepare(work: Path) -> dict:
    from soups.base import resolve_base
    from soups.merge.engine import merge

    paths = {"base": str(resolve_base("default"))}
    for fmt in ("adapter", "full"):
        out = work / f"soup-{fmt}"
        if not (out / "soup.json").is_file():
            merge(experts=["concise", "expert"], weights=[1, 0.5], format=fmt, out=out, force=True)
        paths[fmt] = str(out)
    return paths


def run_one(name: str, paths: dict) -> dict:
    """In a fresh process whose environment already carries the thread settings."""
    import vllm
    from vllm.lora.request import LoRARequest

    model, _, rank, max_loras = CONFIGS[name]
    kw = dict(max_model_len=1024, kv_cache_memory_bytes=1 << 28, enforce_eager=True, seed=0)
    if rank:
        llm = vllm.LLM(paths["base"], enable_lora=True, max_lora_rank=rank, max_loras=max_loras, **kw)
        lora = LoRARequest("soup", 1, paths["adapter"])
    else:
        llm, lora = vllm.LLM(paths[model], **kw), None
    tok = llm.get_tokenizer()
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Tell me about topic {i}: soup, rain, trains."}],
                                       tokenize=False, add_generation_prompt=True) for i in range(8)]
    params = vllm.SamplingParams(temperature=0, max_tokens=64, ignore_eos=True)
    llm.generate(prompts[:1], vllm.SamplingParams(max_tokens=2), lora_request=lora, use_tqdm=False)
    out = {}
    for n in (1, 8):
        t, c = time.perf_counter(), time.process_time()
        llm.generate(prompts[:n], params, lora_request=[lora] * n if lora else None, use_tqdm=False)
        out[f"wall_{n}"], out[f"cpu_{n}"] = time.perf_counter() - t, time.process_time() - c
    return out


def main() -> None:
    work = ROOT / ".bench" / "serve_where"
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print("RESULT " + json.dumps(run_one(sys.argv[2], json.loads((work / "paths.json").read_text()))), flush=True)
        return
    work.mkdir(parents=True, exist_ok=True)
    (work / "paths.json").write_text(json.dumps(prepare(work)))
    t0, rows = time.perf_counter(), {}
    for name, (_, threads, _, _) in CONFIGS.items():
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads), VLLM_CPU_OMP_THREADS_BIND="nobind",
                   VLLM_ENABLE_V1_MULTIPROCESSING="0")
        r = subprocess.run([sys.executable, __file__, "--one", name], env=env, capture_output=True, text=True)
        line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        if r.returncode != 0 or not line:
            sys.exit(f"{name} failed:\n{r.stderr[-3000:]}")
        rows[name] = json.loads(line[0][7:])
        print(f"  {name}: {rows[name]}", file=sys.stderr, flush=True)
    ref = rows["base, 1 thread"]
    print(f"\n64 greedy tokens, embedded base, soup concise=1,expert=0.5 (rank 24); {os.cpu_count()} cores, load "
          f"average {os.getloadavg()[0]:.1f}; CPU seconds, ratio to the base on 1 thread in this run.\n")
    print("| configuration | 1 prompt: CPU s | ratio | 8 prompts: CPU s | ratio | wall s (1 / 8) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['cpu_1']:.1f} | {r['cpu_1'] / ref['cpu_1']:.1f}x | {r['cpu_8']:.1f} | "
              f"{r['cpu_8'] / ref['cpu_8']:.1f}x | {r['wall_1']:.1f} / {r['wall_8']:.1f} |")
    (ROOT / ".bench" / "serve_where.json").write_text(json.dumps(rows, indent=1))
    print(f"\n(total bench time {time.perf_counter() - t0:.0f}s)")


if __name__ == "__main__":
    main()
