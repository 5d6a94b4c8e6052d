"""Evaluation output: results.json, scores.csv, win_rates.csv, responses.jsonl, and the on-screen tables.

A verdict reads a win-rate interval: the soup `wins` a dimension against a baseline when the whole
95% interval is above 1/2, `loses` when it is below, and the difference is `unclear` otherwise.
"""

from __future__ import annotations

import csv
from pathlib import Path

from soups.io.jsonl import jsonl_text


def verdict(wr: dict) -> str:
    """`wins` / `loses` / `unclear` from a win-rate dict (interval against 1/2)."""
    if wr["lo"] > 0.5:
        return "wins"
    if wr["hi"] < 0.5:
        return "loses"
    return "unclear"


def write_report(out: Path, report: dict, prompts: list[str], responses: dict[str, list[str]],
                 scores: dict[str, dict[str, list[float]]]) -> None:
    out = Path(out)
    from soups.io.files import finite_json

    (out / "results.json").write_text(finite_json(report, "results.json", indent=2, ensure_ascii=False) + "\n")
    with open(out / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "dimension", "metric", "wants", "mean", "lo", "hi", "n"])
        for dim in report["dimensions"]:
            for system, per in report["scores"].items():
                s = per[dim["name"]]
                w.writerow([system, dim["name"], dim["metric"], dim["wants"], s["mean"], s["lo"], s["hi"], s["n"]])
    with open(out / "win_rates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["system", "judge", "baseline", "dimension", "wins", "ties", "losses", "rate", "lo", "hi", "n",
                    "verdict"])
        for system, kind, table in _win_tables(report):
            for baseline, per in table.items():
                for dim, r in per.items():
                    w.writerow([system, kind, baseline, dim, r["wins"], r["ties"], r["losses"], r["mean"], r["lo"],
                                r["hi"], r["n"], verdict(r)])
    rows = [{"system": system, "prompt": p, "response": r, "scores": {d: per[i] for d, per in scores[system].items()}}
            for system, texts in responses.items() for i, (p, r) in enumerate(zip(prompts, texts))]
    (out / "responses.jsonl").write_text(jsonl_text(rows), encoding="utf-8")


WIN_TABLES = {"win_rates": "soup", "win_rates_with_statements": "soup+statements"}


def _win_tables(report: dict) -> list[tuple[str, str, dict]]:
    """(whose win rates, metric | judge, table) for every win-rate table the report has."""
    out = []
    for kind, where in (("metric", report), ("judge", report.get("judge", {}))):
        out += [(system, kind, where[key]) for key, system in WIN_TABLES.items() if key in where]
    return out


def _fmt(x: dict, pct: bool = False) -> str:
    k = 100 if pct else 1
    d = 0 if pct else 2
    return f"{x['mean'] * k:.{d}f} [{x['lo'] * k:.{d}f}, {x['hi'] * k:.{d}f}]"


def summary(report: dict, baselines: tuple[str, ...] = ("base", "prompted"), judge: bool = False,
            key: str = "win_rates") -> list[str]:
    """One line per baseline: the soup's (`key`: or the soup with statements') verdict on each declared
    dimension, with win rates and intervals."""
    table = (report["judge"] if judge else report).get(key, {})
    lines = []
    for b in baselines:
        if b in table:
            parts = [f"{d} {verdict(r)} ({_fmt(r, pct=True)}%)" for d, r in table[b].items()]
            lines.append(f"vs {b}: " + "; ".join(parts))
    return lines


def print_report(report: dict, console=None) -> None:
    """Scores and win rates as rich tables, then the verdict lines and the output folder."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    dims = report["dimensions"]
    weights = ",".join(f"{w:g}" for w in report["weights"])
    experts = ",".join(Path(e).name for e in report["experts"])
    t = Table(title=f"Held-out scores: {experts} = {weights} ({report['prompts']['n']} prompts, "
                    "mean [95% CI])")
    t.add_column("system")
    for d in dims:
        t.add_column(f"{d['name']}\n{d['label']} ({d['wants']})", justify="right")
    for system, per in report["scores"].items():
        t.add_row(system, *[_fmt(per[d["name"]]) for d in dims])
    console.print(t)
    for system, kind, table in _win_tables(report):
        w = Table(title=f"Win rate of {system} vs baseline ({kind}; % with 95% CI, W/T/L)")
        w.add_column("baseline")
        for d in dims:
            w.add_column(d["name"], justify="right")
        for baseline, per in table.items():
            w.add_row(baseline, *[f"{_fmt(per[d['name']], pct=True)} {per[d['name']]['wins']}/"
                                  f"{per[d['name']]['ties']}/{per[d['name']]['losses']}" for d in dims])
        console.print(w)
    for key, system in WIN_TABLES.items():
        for line in summary(report, key=key):
            console.print(f"{system} {line}")
    for name, why in report.get("skipped", {}).items():
        console.print(f"[yellow]skipped {name}[/]: {why}")
    if "out" in report:
        console.print(f"results: {report['out']}")
