"""`soups sweep`: score every weight vector on a grid and show the trade-off between dimensions.

Two experts: weights (1 - t, t) for t = 0, 1/(N-1), ..., 1. Three: every point of the simplex
with coordinates in steps of 1/(N-1). At each point a soup is built with each of `methods` (any
registered merge method, soups/merge/methods.py; default: the `exact` weighted sum of deltas and the
paper's `linear` averaging). A method that gives the expert itself at a vertex (a single expert;
`Method.exact_at_vertex`) reuses the exact soup's answers there. Every response is scored on every
expert's dimension with the held-out scorers. Writes sweep.csv, sweep.json, responses.jsonl, sweep.png.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, SoupsError
from soups.eval.evaluate import System, generate_systems
from soups.eval.generate import GeneratorSession, resolve_engine
from soups.eval.scorers import scorer_for
from soups.io.jsonl import jsonl_text
from soups.stats import bootstrap_ci, pareto_front

log = logging.getLogger(__name__)

METHODS = ("exact", "linear")  # the default


@dataclass
class SweepConfig:
    experts: list[str]
    out: Path
    grid: int = 5
    base: str | Path = "default"
    prompts: str | Path = "heldout"
    limit: int | None = None
    methods: tuple[str, ...] = METHODS
    params: dict = field(default_factory=dict)  # method parameters, given to each method that declares them
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0
    engine: str = "auto"  # auto (vLLM when installed), vllm or transformers (soups.eval.generate.resolve_engine)
    dtype: str | None = None
    scorers: dict[str, str] = field(default_factory=dict)
    cache: Path | None | str = "default"
    force: bool = False
    progress: bool = True


def grid_points(k: int, n: int) -> list[tuple[float, ...]]:
    """Weight vectors on the simplex of `k` experts with step 1/(n-1) (n points per edge), vertices included."""
    if k not in (2, 3):
        raise ConfigError(f"--experts: a sweep takes 2 or 3 experts, got {k}")
    if n < 2:
        raise ConfigError(f"--grid {n}: need at least 2 points per edge")
    m = n - 1
    if k == 2:
        return [((m - i) / m, i / m) for i in range(n)]
    return [((m - i - j) / m, i / m, j / m) for i in range(n) for j in range(n - i)]


def sweep(cfg: SweepConfig, session: GeneratorSession | None = None) -> dict:
    """Run the sweep (module docstring); returns the result dict written to sweep.json.

    `session`: a generator on the same base shared with other evaluations (else one is opened for the sweep)."""
    from soups.base import resolve_base
    from soups.eval.plots import plot_sweep
    from soups.eval.systems import build_soup, expert_dimension, load_prompt_set
    from soups.io.atomic import atomic_dir, check_output
    from soups.merge.methods import METHODS as REGISTRY
    from soups.recipe import Soup

    check_output(Path(cfg.out), cfg.force)
    bad = [m for m in cfg.methods if m not in REGISTRY]
    if bad or not cfg.methods:
        raise ConfigError(f"--methods {','.join(cfg.methods)}: choose from {', '.join(REGISTRY)}")
    resolve_engine(cfg.engine)
    points = grid_points(len(cfg.experts), cfg.grid)
    names = [Path(e).name if Path(e).is_dir() else str(e) for e in cfg.experts]
    dims = [expert_dimension(e) for e in cfg.experts]
    if len(set(dims)) != len(dims):
        raise ConfigError(f"--experts {','.join(cfg.experts)}: two experts serve the same dimension ({dims})")
    scorers = {d: scorer_for(d, cfg.scorers.get(d)) for d in dims}
    prompts = load_prompt_set(cfg.prompts, cfg.limit)
    base_dir = resolve_base(cfg.base)
    skipped: dict[str, str] = {}
    with atomic_dir(Path(cfg.out), force=cfg.force) as tmp:
        systems, rows = [], []
        for method in cfg.methods:
            params = {k: v for k, v in cfg.params.items() if k in REGISTRY[method].params.model_fields}
            for i, w in enumerate(points):
                vertex = sum(1 for x in w if x > 0) == 1
                if method != "exact" and vertex and "exact" in cfg.methods and REGISTRY[method].exact_at_vertex:
                    rows.append({"method": method, "weights": list(w), "system": f"exact-{i}"})
                    continue
                if method in skipped:
                    continue
                try:
                    soup = Soup.build(cfg.experts, list(w), base=cfg.base, method=method, **params)
                    adapter = build_soup(soup, tmp / "soups" / f"{method}-{i}")
                except SoupsError as e:
                    skipped[method] = str(e)
                    log.warning("%s soups skipped: %s", method, e)
                    continue
                systems.append(System(f"{method}-{i}", f"{method} {w}", adapter))
                rows.append({"method": method, "weights": list(w), "system": f"{method}-{i}"})
        rows = [r for r in rows if r["method"] not in skipped]
        responses = generate_systems(cfg, systems, base_dir, prompts, session)
        scores = {s: {d: scorers[d](texts) for d in dims} for s, texts in responses.items()}
        for r in rows:
            r["scores"] = {d: bootstrap_ci(scores[r["system"]][d], seed=cfg.seed).to_dict() for d in dims}
        oriented = [tuple(scorers[d].direction * r["scores"][d]["mean"] for d in dims) for r in rows]
        for i in pareto_front(oriented):
            rows[i]["pareto"] = True
        result = {"experts": names, "dimensions": [{"name": d, "metric": scorers[d].metric.name,
                                                    "label": scorers[d].metric.label, "wants": scorers[d].wants}
                                                   for d in dims],
                  "grid": cfg.grid, "prompts": {"source": str(cfg.prompts), "n": len(prompts)},
                  "max_new_tokens": cfg.max_new_tokens, "rows": rows, "skipped": skipped}
        _write(tmp, result, prompts, responses)
        plot_sweep(result, tmp / "sweep.png")
        import shutil

        shutil.rmtree(tmp / "soups", ignore_errors=True)
    out = Path(cfg.out).absolute()
    result.update(out=str(out), png=str(out / "sweep.png"), csv=str(out / "sweep.csv"))
    return result


def _write(out: Path, result: dict, prompts: list[str], responses: dict[str, list[str]]) -> None:
    from soups.io.files import finite_json

    (out / "sweep.json").write_text(finite_json(result, "sweep.json", indent=2) + "\n")
    dims = [d["name"] for d in result["dimensions"]]
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *[f"w_{e}" for e in result["experts"]],
                    *[f"{d}_{k}" for d in dims for k in ("mean", "lo", "hi")], "pareto"])
        for r in result["rows"]:
            w.writerow([r["method"], *r["weights"], *[r["scores"][d][k] for d in dims for k in ("mean", "lo", "hi")],
                        int(bool(r.get("pareto")))])
    rows = [{"system": system, "prompt": p, "response": t} for system, texts in responses.items()
            for p, t in zip(prompts, texts)]
    (out / "responses.jsonl").write_text(jsonl_text(rows), encoding="utf-8")
