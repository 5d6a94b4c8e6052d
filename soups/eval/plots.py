"""Figures (matplotlib, Agg backend: no display needed, nothing opens).

`plot_sweep`: for two experts, one panel per dimension (mean score with its 95% band along the
weight of the second expert, exact soup solid, paper averaging dashed) and a Pareto panel (the
two dimensions' scores, oriented so that up and right are better); for three experts, one Pareto
panel per pair of dimensions, points coloured by the third dimension's score. Each merge method gets
a marker and line style by its place in the registry and its `label` (soups/merge/methods.py).
"""

from __future__ import annotations

import itertools
from pathlib import Path

from soups.stats import pareto_front

MARKERS, LINES = ("o", "^", "s", "D", "v", "P"), ("-", "--", ":", "-.")


def _methods(rows: list[dict]) -> dict[str, dict]:
    """Each method in the rows (registry order) -> its plot style and label (Method.label)."""
    from soups.merge.methods import METHODS

    names = [m for m in METHODS if any(r["method"] == m for r in rows)]
    names += [m for m in dict.fromkeys(r["method"] for r in rows) if m not in names]
    return {m: {"marker": MARKERS[i % len(MARKERS)], "linestyle": LINES[i % len(LINES)],
                "label": (METHODS[m].label if m in METHODS else "") or m} for i, m in enumerate(names)}


def _figure(n_panels: int, width: float = 4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, 3.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _oriented(row: dict, dim: dict) -> float:
    m = row["scores"][dim["name"]]["mean"]
    return m if dim["wants"] == "higher" else -m


def _axis_label(dim: dict, oriented: bool = False) -> str:
    sign = "-" if oriented and dim["wants"] == "lower" else ""
    return f"{dim['name']}: {sign}{dim['label']}" + (" (better ->)" if oriented else f" ({dim['wants']} is better)")


def _pareto_panel(ax, rows: list[dict], dx: dict, dy: dict, color_dim: dict | None = None) -> None:
    pts = [(_oriented(r, dx), _oriented(r, dy)) for r in rows]
    front = sorted((pts[i] for i in pareto_front(pts)), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], color="0.6", lw=1.5, zorder=1, label="Pareto front")
    for n, (method, style) in enumerate(_methods(rows).items()):
        idx = [i for i, r in enumerate(rows) if r["method"] == method]
        kw = dict(marker=style["marker"], s=40, zorder=3, label=style["label"], edgecolors="k", linewidths=0.5)
        if color_dim is not None:
            sc = ax.scatter([pts[i][0] for i in idx], [pts[i][1] for i in idx], cmap="viridis",
                            c=[rows[i]["scores"][color_dim["name"]]["mean"] for i in idx], **kw)
            if n == 0:
                ax.figure.colorbar(sc, ax=ax, pad=0.02, shrink=0.9,
                                   label=f"colour: {color_dim['name']} ({color_dim['label']})")
        else:
            ax.scatter([pts[i][0] for i in idx], [pts[i][1] for i in idx], **kw)
        for i in idx:
            if n == 0:
                ax.annotate("/".join(f"{w:.2g}" for w in rows[i]["weights"]), pts[i], fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(_axis_label(dx, True))
    ax.set_ylabel(_axis_label(dy, True))
    ax.legend(fontsize=7)


def plot_sweep(result: dict, path: Path) -> Path:
    """Draw a sweep result (soups.eval.sweep) to a PNG at `path`."""
    dims, rows, experts = result["dimensions"], result["rows"], result["experts"]
    if len(experts) == 2:
        fig, axes = _figure(len(dims) + 1)
        for ax, dim in zip(axes, dims):
            for method, style in _methods(rows).items():
                pts = sorted((r["weights"][1], r["scores"][dim["name"]]) for r in rows if r["method"] == method)
                x = [p[0] for p in pts]
                (line,) = ax.plot(x, [p[1]["mean"] for p in pts], **style)
                ax.fill_between(x, [p[1]["lo"] for p in pts], [p[1]["hi"] for p in pts], alpha=0.15,
                                color=line.get_color())
            ax.set_xlabel(f"weight on {experts[1]} (1 - weight on {experts[0]})")
            ax.set_ylabel(_axis_label(dim))
            ax.set_title(dim["name"])
            ax.legend(fontsize=7)
        _pareto_panel(axes[-1], rows, dims[0], dims[1])
        axes[-1].set_title("trade-off")
    else:
        pairs = list(itertools.combinations(range(len(dims)), 2))
        fig, axes = _figure(len(pairs), width=5.4)
        for ax, (i, j) in zip(axes, pairs):
            other = next(k for k in range(len(dims)) if k not in (i, j))
            _pareto_panel(ax, rows, dims[i], dims[j], dims[other])
            ax.set_title(f"{dims[i]['name']} vs {dims[j]['name']}")
    fig.suptitle(f"Sweep over {' / '.join(experts)} ({result['prompts']['n']} prompts, mean and 95% CI; "
                 f"point labels: weights {'/'.join(experts)})")
    path = Path(path)
    fig.savefig(path, format="png")
    return path
