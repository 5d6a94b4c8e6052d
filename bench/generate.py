"""Generation speed: tokens/s of the engines and dtypes soups can generate with, on the embedded base, in one run.

Why: eval, sweep, build-pool and the demo spend most of their time generating; the default engine and dtype
should be the fastest one that is still correct, and that is a measurement, not a guess.

What: 64 held-out prompts, greedy, up to 256 new tokens each, through soups' own code paths: `ChatGenerator`
(transformers, batches of 8 as soups runs it) in float32, in float32 under bf16 autocast, and in bfloat16;
`VllmGenerator` (one vLLM CPU engine, all prompts at once: what eval, sweep and make eval run) in float32 and
bfloat16; and with a shipped expert (experts/expert: r 8, all seven projections): transformers + PEFT in
float32 (the expert's reference), the expert swapped into VllmGenerator's weights (float32 and bfloat16), and the
expert served by vLLM's own LoRA kernels (`generate_vllm`, bfloat16). Each configuration runs in a fresh process;
load (model load or vLLM engine start, plus the swap) and generation are timed separately inside it, and the
process's peak RssAnon is sampled from outside. tokens/s = generated tokens (the responses re-tokenized) /
generation seconds; "end to end" includes the load. Correctness: every configuration's responses against its
float32 transformers reference (the base's, or the expert's through PEFT): identical responses, and the mean
share of the reference's tokens up to the first difference. The last lines say what `soups` picks here.

Launch: `make bench-generate`, or
    .venv/bin/python bench/generate.py [--prompts 64] [--new-tokens 256] [--only "vLLM bfloat16"]
Results: printed, and written to .bench/generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.merge import PY, WORK, timed  # noqa: E402

REFERENCE = "transformers float32"
EXPERT_REFERENCE = "transformers float32, expert (PEFT)"
EXPERT = "expert"  # a shipped expert (the expert-level dimension: long answers): r 8, all seven projections
CONFIGS = {
    REFERENCE: dict(engine="transformers", dtype="float32"),
    "transformers bf16 autocast": dict(engine="transformers", dtype="float32", autocast=True),
    "transformers bfloat16": dict(engine="transformers", dtype="bfloat16"),
    "vLLM float32": dict(engine="vllm", dtype="float32"),
    "vLLM bfloat16": dict(engine="vllm", dtype="bfloat16"),
    EXPERT_REFERENCE: dict(engine="transformers", dtype="float32", expert=True),
    "vLLM float32, expert swapped in": dict(engine="vllm", dtype="float32", expert=True),
    "vLLM bfloat16, expert swapped in": dict(engine="vllm", dtype="bfloat16", expert=True),
    "vLLM bfloat16, expert as vLLM LoRA": dict(engine="lora", dtype="bfloat16", expert=True),
}
BATCH = 8  # soups' default batch size (transformers)


def worker(name: str, n_prompts: int, new_tokens: int, out: Path) -> None:
    """One configuration, in this process: time the load (and swap) and the generation, write the responses."""
    import torch

    from soups.base import resolve_base
    from soups.config import experts_dir
    from soups.prompts import load_prompts

    cfg = CONFIGS[name]
    base = resolve_base("default")
    expert = experts_dir() / EXPERT if cfg.get("expert") else None
    prompts = (load_prompts("heldout") * 2)[:n_prompts]
    swap = None  # vLLM's LoRA path loads the adapter with the engine
    t0 = time.perf_counter()
    if cfg["engine"] in ("transformers", "vllm"):
        if cfg["engine"] == "transformers":
            from soups.eval.generate import ChatGenerator as Generator
        else:
            from soups.eval.vllm_engine import VllmGenerator as Generator
        gen = Generator(base, dtype=cfg["dtype"])
        ts = time.perf_counter()
        gen.set_adapter(expert)
        t1 = time.perf_counter()
        swap = t1 - ts
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.get("autocast", False)):
            responses = gen.generate(prompts, max_new_tokens=new_tokens, batch_size=BATCH, progress=False)
        tok = gen.tokenizer
    else:
        import vllm

        from soups.eval.generate import generate_vllm

        init, started = vllm.LLM.__init__, {}

        def timed_init(self, *a, **kw):  # the engine start, timed apart from the generation
            init(self, *a, **kw)
            started["s"] = time.perf_counter()

        vllm.LLM.__init__ = timed_init
        responses = generate_vllm(base, prompts, adapter=expert, max_new_tokens=new_tokens, dtype=cfg["dtype"])
        t1 = started["s"]
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base)
    t2 = time.perf_counter()
    tokens = [tok(r, add_special_tokens=False)["input_ids"] for r in responses]
    result = dict(load_s=t1 - t0, swap_s=swap, gen_s=t2 - t1, tokens=tokens, threads=torch.get_num_threads())
    out.write_text(json.dumps(result))


def _swap(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}"


def common_share(ref: list[int], got: list[int]) -> float:
    """The share of the reference's tokens before the first difference."""
    n = 0
    for a, b in zip(ref, got):
        if a != b:
            break
        n += 1
    return n / max(1, len(ref))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--only", action="append", help="run only these configurations (and the reference)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.prompts, args.new_tokens, args.out)

    from soups.eval.generate import default_dtype, resolve_engine

    picked = [n for n in CONFIGS if not args.only or n in args.only]
    refs = [REFERENCE] + ([EXPERT_REFERENCE] if any(CONFIGS[n].get("expert") for n in picked) else [])
    names = [n for n in CONFIGS if n in picked or n in refs]
    WORK.mkdir(exist_ok=True)
    rows: dict[str, dict] = {}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        for name in names:
            out = Path(tmp) / "out.json"
            cmd = [PY, __file__, "--worker", name, "--prompts", str(args.prompts), "--new-tokens",
                   str(args.new_tokens), "--out", str(out)]
            wall, peak = timed(cmd)
            r = json.loads(out.read_text())
            r.update(wall_s=wall, peak=peak, n=sum(len(t) for t in r["tokens"]))
            rows[name] = r
            print(f"  {name}: {r['n']} tokens in {r['gen_s']:.1f} s (+ {r['load_s']:.1f} s load)", flush=True)
    print(
        f"\n{args.prompts} held-out prompts x up to {args.new_tokens} new tokens, greedy, embedded base "
        f"(SmolLM2-135M-Instruct), expert {EXPERT}; machine: {os.cpu_count()} CPUs, load average {load0:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    head = (
        f"{'configuration':<36} {'tokens':>7} {'load s':>7} {'swap s':>6} {'gen s':>7} {'tok/s':>7} {'e2e tok/s':>9} "
        f"{'vs fp32':>7} {'threads':>7} {'RssAnon MB':>10} {'same as ref':>11} {'common prefix':>13}"
    )
    print(head)
    base_rate = rows[REFERENCE]["n"] / rows[REFERENCE]["gen_s"]
    summary = {}
    for name, r in rows.items():
        reference = EXPERT_REFERENCE if CONFIGS[name].get("expert") else REFERENCE
        ref = rows[reference]["tokens"]
        rate = r["n"] / r["gen_s"]
        same = sum(a == b for a, b in zip(ref, r["tokens"]))
        share = sum(common_share(a, b) for a, b in zip(ref, r["tokens"])) / len(ref)
        e2e = r["n"] / (r["gen_s"] + r["load_s"])
        print(
            f"{name:<36} {r['n']:>7} {r['load_s']:>7.1f} {_swap(r['swap_s']):>6} {r['gen_s']:>7.1f} {rate:>7.1f} "
            f"{e2e:>9.1f} {rate / base_rate:>6.2f}x {r['threads']:>7} {r['peak'] / 1e6:>10.0f} "
            f"{same:>8}/{len(ref)} {share:>12.0%}"
        )
        summary[name] = dict(tokens=r["n"], load_s=r["load_s"], swap_s=r["swap_s"], gen_s=r["gen_s"], tok_s=rate,
                             e2e_tok_s=e2e, threads=r["threads"], peak_rss_anon=r["peak"], reference=reference,
                             same=same, common_prefix=share)
    from soups.base import resolve_base

    default = default_dtype("cpu", resolve_base("default"))
    print(f"\nsoups' defaults for the embedded base on this machine: engine {resolve_engine('auto')} "
          f"(eval, sweep, make eval, build-pool), dtype {default}")
    (WORK / "generate.json").write_text(json.dumps({"rows": summary, "load": [load0, os.getloadavg()[0]]}, indent=2))


if __name__ == "__main__":
    main()
