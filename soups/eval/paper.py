"""`make eval`: the Personalized Soups evaluation for the shipped experts on the embedded base.

Runs `soups eval` for the paper's 8 preference combinations ({elementary, expert} x {concise,
informative} x {friendly, unfriendly}: weight 1 on the three declared experts, 0 on the others)
and one `soups sweep`, then writes `results.md` (the README's results section: one table per
baseline, the verdicts, the sweep picture and the run time), `combos.csv` and `sweep.png`.
Responses are cached ($SOUPS_HOME/eval-cache): the base and each single expert are generated
once for all 8 combinations, and a re-run only re-scores.

    python -m soups.eval.paper --out docs/eval --limit 32 --max-new-tokens 96
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from soups.errors import SoupsError
from soups.eval.evaluate import EvalConfig, evaluate
from soups.eval.report import verdict
from soups.eval.sweep import SweepConfig, sweep

AXES = (("elementary", "expert"), ("concise", "informative"), ("friendly", "unfriendly"))
EXPERTS = [d for axis in AXES for d in axis]
COMBOS = list(itertools.product(*AXES))


def _cell(r: dict, pct: bool = False) -> str:
    k, d = (100, 0) if pct else (1, 2)
    return f"{r['mean'] * k:.{d}f} [{r['lo'] * k:.{d}f}, {r['hi'] * k:.{d}f}]"


def run(out: Path, *, limit: int | None = 32, max_new_tokens: int = 96, grid: int = 5,
        sweep_experts: tuple[str, ...] = ("concise", "friendly"), base: str = "default",
        judge_url: str | None = None, judge_model: str | None = None) -> Path:
    """Evaluate the 8 combinations and one sweep into `out`; returns the path of results.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    rows = []
    for combo in COMBOS:
        name = "-".join(combo)
        weights = [1.0 if e in combo else 0.0 for e in EXPERTS]
        rep = evaluate(EvalConfig(weights=weights, experts=EXPERTS, out=out / "runs" / name, base=base,
                                  limit=limit, max_new_tokens=max_new_tokens, judge_url=judge_url,
                                  judge_model=judge_model, force=True))
        info = {d["name"]: d for d in rep["dimensions"]}
        for dim in combo:
            row = {"combo": name, "dimension": dim, "metric": info[dim]["label"], "wants": info[dim]["wants"]}
            for system in ("soup", "linear", "base", "prompted", f"expert:{dim}"):
                if system in rep["scores"]:
                    row[system.split(":")[0]] = rep["scores"][system][dim]
            for b in ("base", "prompted", "linear", f"expert:{dim}"):
                if b in rep["win_rates"]:
                    row[f"win_{b.split(':')[0]}"] = rep["win_rates"][b][dim]
            if "judge" in rep:
                for b in ("base", "prompted"):
                    row[f"judge_{b}"] = rep["judge"]["win_rates"][b][dim]
            rows.append(row)
        n_prompts = rep["prompts"]["n"]
    sw = sweep(SweepConfig(experts=list(sweep_experts), out=out / "sweep", grid=grid, base=base, limit=limit,
                           max_new_tokens=max_new_tokens, force=True))
    shutil.copyfile(sw["png"], out / "sweep.png")
    minutes = (time.time() - t0) / 60
    _write_csv(out / "combos.csv", rows)
    path = out / "results.md"
    path.write_text(_markdown(rows, n_prompts, max_new_tokens, sweep_experts, grid, minutes, out))
    return path


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        stats = ("mean", "lo", "hi")
        w.writerow(["combo", "dimension", "metric", "wants"] + [f"{k}_{x}" for k in keys for x in stats])
        for r in rows:
            w.writerow([r["combo"], r["dimension"], r["metric"], r["wants"]]
                       + [r[k][x] if k in r else "" for k in keys for x in ("mean", "lo", "hi")])


def _markdown(rows, n_prompts, max_new_tokens, sweep_experts, grid, minutes, out: Path) -> str:
    lines = [
        f"Held-out prompts: {n_prompts}; greedy decoding, up to {max_new_tokens} new tokens; held-out scorers "
        "(reading grade = mean of Flesch-Kincaid, Coleman-Liau and ARI; words; distinct words; VADER sentiment). "
        "Scores: mean [95% bootstrap CI]. Win rate of the soup (exact) against a baseline: % of prompts "
        "where its response scores better on the dimension (ties count half) [95% CI].",
        "",
        "| combination | dimension (metric, better) | soup | paper avg (linear) | base | prompted | expert alone "
        "| win vs base | win vs prompted |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [_cell(r[k]) if k in r else "n/a" for k in ("soup", "linear", "base", "prompted", "expert")]
        wins = [f"{_cell(r[k], pct=True)} {verdict(r[k])}" if k in r else "n/a" for k in ("win_base", "win_prompted")]
        lines.append(f"| {r['combo']} | {r['dimension']} ({r['metric']}, {r['wants']}) | " + " | ".join(cells + wins)
                     + " |")
    lines += ["", "Verdicts (the soup *wins* when the whole interval of its win rate is above 50%, *loses* when it "
              "is below, else *unclear*):", ""]
    for combo in dict.fromkeys(r["combo"] for r in rows):
        per = [r for r in rows if r["combo"] == combo]
        for b in ("base", "prompted"):
            parts = [f"{r['dimension']} {verdict(r['win_' + b])} ({_cell(r['win_' + b], pct=True)}%)" for r in per
                     if "win_" + b in r]
            lines.append(f"- {combo} vs {b}: " + "; ".join(parts))
    lines += ["", f"![sweep]({os.path.relpath(out / 'sweep.png', Path.cwd())})", "",
              f"Sweep over {' / '.join(sweep_experts)} ({grid} points per edge; exact soup and the paper's linear "
              "averaging): per-dimension scores along the weight, and the Pareto front.", "",
              f"`make eval` ran in {minutes:.1f} min on {os.cpu_count()} CPU cores "
              "(responses cached: a re-run only re-scores).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/eval"))
    p.add_argument("--limit", type=int, default=32, help="held-out prompts per system")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--grid", type=int, default=5)
    p.add_argument("--sweep", default="concise,friendly", help="two or three experts for the sweep picture")
    p.add_argument("--base", default="default")
    p.add_argument("--judge-url")
    p.add_argument("--judge-model")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        path = run(a.out, limit=a.limit, max_new_tokens=a.max_new_tokens, grid=a.grid,
                   sweep_experts=tuple(a.sweep.split(",")), base=a.base, judge_url=a.judge_url,
                   judge_model=a.judge_model)
    except SoupsError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    print(path.read_text())
    print(path)


if __name__ == "__main__":
    main()
