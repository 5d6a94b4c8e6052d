"""Training curves of experts: reward, KL, answer length and finished share per PPO step, as PNGs.

Reads an expert's `expert.json` (its `curve`, one row per step) or a run directory's
`metrics.jsonl`, and draws one picture per expert:

    python -m soups.train.curves experts/concise experts/friendly --out docs/experts
    python -m soups.train.curves runs/make-experts/concise --out /tmp/curves
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CURVE_KEYS = ("reward", "reward_raw", "reward_greedy", "kl", "response_tokens_mean", "eos_rate")


def curve_rows(metrics: list[dict]) -> list[dict]:
    """The plotted subset of metrics.jsonl rows: step + CURVE_KEYS, rounded (what expert.json stores)."""
    return [{"step": m["step"], **{k: round(float(m[k]), 4) for k in CURVE_KEYS if k in m}} for m in metrics]


def load_curve(path: Path) -> tuple[str, list[dict], dict]:
    """(name, curve rows, expert.json or {}) of an expert dir or a run dir."""
    from soups.train.progress import read_metrics

    path = Path(path)
    info = json.loads((path / "expert.json").read_text()) if (path / "expert.json").is_file() else {}
    if info.get("curve"):
        return info.get("dimension", path.name), info["curve"], info
    if (path / "metrics.jsonl").is_file():
        return path.name, curve_rows(read_metrics(path / "metrics.jsonl")), info
    raise FileNotFoundError(f"{path}: neither expert.json with a curve nor metrics.jsonl")


def plot_curve(name: str, rows: list[dict], out: Path, info: dict | None = None) -> Path:
    """Draw reward (raw, and as PPO optimises it: minus any per-prompt baseline and unfinished-answer
    penalty), KL, length and finished share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = (
        (axes[0], (("reward_raw", "reward"), ("reward", "as PPO optimises it (- baseline, - unfinished penalty)"),
                   ("reward_greedy", "greedy rollouts' reward (greedy_share)")), "reward"),
        (axes[1], (("kl", "KL to the reference"),), "KL (nats / answer)"),
        (axes[2], (("response_tokens_mean", "answer tokens"),), "tokens"),
    )
    for ax, series, ylabel in panels:
        for key, label in series:
            if any(key in r for r in rows):
                ax.plot(steps, [r.get(key, float("nan")) for r in rows], marker="o", ms=3, label=label)
        ax.set_xlabel("PPO step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if any("eos_rate" in r for r in rows):
        twin = axes[2].twinx()
        twin.plot(steps, [r.get("eos_rate", float("nan")) for r in rows], color="tab:green", ls="--",
                  label="finished share")
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("finished share")
        twin.legend(fontsize=8, loc="lower right")
    title = f"{name}: PPO training"
    for stage in (info or {}).get("stages", []):
        if stage.get("stage") == "warm_start":
            title += f" (after a warm start: held-out reward {stage['heldout_reward']['mean']:.3f})"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path, help="expert dirs (expert.json) or run dirs (metrics.jsonl)")
    ap.add_argument("--out", type=Path, required=True, help="folder for <name>-training.png")
    args = ap.parse_args(argv)
    for p in args.paths:
        try:
            name, rows, info = load_curve(p)
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(plot_curve(name, rows, args.out / f"{name}-training.png", info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
