"""Generation speed: tokens/s of the engines and dtypes soups can generate with, on the embedded base, in one run.

Why: eval, sweep, build-pool and the demo spend most of their time generating; the default engine and dtype
should be the fastest one that is still correct, and that is a measurement, not a guess.

What: 64 held-out prompts, greedy, up to 256 new tokens each, through soups' own code paths: `ChatGenerator`
(transformers, batches of 8 as soups runs it) in float32, in float32 under bf16 autocast, and in bfloat16; and
`generate_vllm` (vLLM's CPU build, all prompts at once) in float32 and bfloat16. Each configuration runs in a fresh
process; load (model load, or vLLM engine start) and generation are timed separately inside it, and the process's
peak RssAnon is sampled from outside. tokens/s = generated tokens (the responses re-tokenized) / generation
seconds; "end to end" includes the load. Correctness: every configuration's responses against the float32
transformers reference (identical responses, and the mean share of the reference's tokens up to the first
difference). The default row says which configuration `soups` picks on this machine.

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
CONFIGS = {
    REFERENCE: dict(engine="transformers", dtype="float32"),
    "transformers bf16 autocast": dict(engine="transformers", dtype="float32", autocast=True),
    "transformers bfloat16": dict(engine="transformers", dtype="bfloat16"),
    "vLLM float32": dict(engine="vllm", dtype="float32"),
    "vLLM bfloat16": dict(engine="vllm", dtype="bfloat16"),
}
BATCH = 8  # soups' default batch size (transformers)


def worker(name: str, n_prompts: int, new_tokens: int, out: Path) -> None:
    """One configuration, in this process: time the load and the generation, write the responses."""
    import torch

    from soups.base import resolve_base
    from soups.prompts import load_prompts

    cfg = CONFIGS[name]
    base = resolve_base("default")
    prompts = (load_prompts("heldout") * 2)[:n_prompts]
    t0 = time.perf_counter()
    if cfg["engine"] == "transformers":
        from soups.eval.generate import ChatGenerator

        gen = ChatGenerator(base, dtype=cfg["dtype"])
        t1 = time.perf_counter()
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
        responses = generate_vllm(base, prompts, max_new_tokens=new_tokens, dtype=cfg["dtype"])
        t1 = started["s"]
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base)
    t2 = time.perf_counter()
    tokens = [tok(r, add_special_tokens=False)["input_ids"] for r in responses]
    result = dict(load_s=t1 - t0, gen_s=t2 - t1, tokens=tokens, threads=torch.get_num_threads())
    out.write_text(json.dumps(result))


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

    from soups.eval.generate import default_dtype

    names = [n for n in CONFIGS if not args.only or n in args.only or n == REFERENCE]
    WORK.mkdir(exist_ok=True)
    rows: dict[str, dict] = {}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        for name in names:
            out = Path(tmp) / "out.json"
            cmd = [
                PY,
                __file__,
                "--worker",
                name,
                "--prompts",
                str(args.prompts),
                "--new-tokens",
                str(args.new_tokens),
                "--out",
                str(out),
            ]
            wall, peak = timed(cmd)
            r = json.loads(out.read_text())
            r.update(wall_s=wall, peak=peak, n=sum(len(t) for t in r["tokens"]))
            rows[name] = r
            print(f"  {name}: {r['n']} tokens in {r['gen_s']:.1f} s (+ {r['load_s']:.1f} s load)", flush=True)
    ref = rows[REFERENCE]["tokens"]
    print(
        f"\n{args.prompts} held-out prompts x up to {args.new_tokens} new tokens, greedy, embedded base "
        f"(SmolLM2-135M-Instruct); machine: {os.cpu_count()} CPUs, load average {load0:.1f} -> "
        f"{os.getloadavg()[0]:.1f}"
    )
    head = (
        f"{'configuration':<28} {'tokens':>7} {'load s':>7} {'gen s':>7} {'tok/s':>7} {'e2e tok/s':>9} "
        f"{'vs fp32':>7} {'threads':>7} {'RssAnon MB':>10} {'same as fp32':>12} {'common prefix':>13}"
    )
    print(head)
    base_rate = rows[REFERENCE]["n"] / rows[REFERENCE]["gen_s"]
    summary = {}
    for name, r in rows.items():
        rate = r["n"] / r["gen_s"]
        same = sum(a == b for a, b in zip(ref, r["tokens"]))
        share = sum(common_share(a, b) for a, b in zip(ref, r["tokens"])) / len(ref)
        e2e = r["n"] / (r["gen_s"] + r["load_s"])
        print(
            f"{name:<28} {r['n']:>7} {r['load_s']:>7.1f} {r['gen_s']:>7.1f} {rate:>7.1f} {e2e:>9.1f} "
            f"{rate / base_rate:>6.2f}x {r['threads']:>7} {r['peak'] / 1e6:>10.0f} {same:>9}/{len(ref)} "
            f"{share:>12.0%}"
        )
        summary[name] = dict(
            tokens=r["n"],
            load_s=r["load_s"],
            gen_s=r["gen_s"],
            tok_s=rate,
            e2e_tok_s=e2e,
            threads=r["threads"],
            peak_rss_anon=r["peak"],
            same=same,
            common_prefix=share,
        )
    from soups.base import resolve_base

    default = default_dtype("cpu", resolve_base("default"))
    print(f"\nsoups' default transformers dtype for the embedded base on this machine: {default}")
    (WORK / "generate.json").write_text(json.dumps({"rows": summary, "load": [load0, os.getloadavg()[0]]}, indent=2))


if __name__ == "__main__":
    main()
