"""Fit answers into a user profile (user.json) that `soups merge --weights-from user.json` consumes.

user.json: ``{"dimensions": [...], "w": [...], "w_ci95": [[lo, hi], ...], "merge_weights": {dim: weight},
"n_answers": N, "merge_command": "soups merge ...", "prior": {...}}``; merge weights follow
soups.prefs.fit.merge_weights (non-negative, per opposing pair, summing to 1).
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from soups.errors import DataError
from soups.prefs.fit import Posterior, fit_bt, merge_weights
from soups.prefs.population import load_prior

log = logging.getLogger(__name__)

DEFAULT_PRIOR_PREC = 1.0


def merge_command(weights: Mapping[str, float], out: str = "my_soup", experts_root: Path | None = None) -> str:
    """The `soups merge` command for the nonzero merge weights (experts at <experts folder>/<dimension>)."""
    from soups.config import experts_dir

    root = Path(experts_root) if experts_root is not None else experts_dir()
    try:
        rel = os.path.relpath(root, Path.cwd())
        root_s = rel if not rel.startswith("..") else str(root)
    except ValueError:
        root_s = str(root)
    used = [(k, v) for k, v in weights.items() if v > 5e-4]
    experts = ",".join(shlex.quote(str(Path(root_s) / k)) for k, _ in used)
    wts = ",".join(f"{v:.3f}" for _, v in used)
    return f"soups merge --experts {experts} --weights {wts} --out {shlex.quote(out)}"


def user_profile(
    post: Posterior,
    dims: Sequence[str],
    opposites: Mapping[str, str] | None,
    n_answers: int,
    prior: Mapping | None = None,
    soup_out: str = "my_soup",
) -> dict:
    """The user.json content for a fitted posterior."""
    mw = merge_weights(post.mean, dims, opposites)
    return {
        "dimensions": list(dims),
        "w": [round(float(v), 6) for v in post.mean],
        "w_ci95": [[round(float(lo), 6), round(float(hi), 6)] for lo, hi in post.ci95()],
        "merge_weights": {k: round(v, 6) for k, v in mw.items()},
        "n_answers": int(n_answers),
        "merge_command": merge_command(mw, soup_out),
        "prior": dict(prior or {}),
    }


def fit_profile(
    X: np.ndarray,
    y: np.ndarray,
    dims: Sequence[str],
    opposites: Mapping[str, str] | None = None,
    prior_mean: np.ndarray | None = None,
    prior_prec: float | np.ndarray = DEFAULT_PRIOR_PREC,
    soup_out: str = "my_soup",
) -> tuple[Posterior, dict]:
    """Fit (X, y) and build the user.json content."""
    try:
        post = fit_bt(X, y, prior_mean=prior_mean, prior_prec=prior_prec)
    except (ValueError, np.linalg.LinAlgError) as e:
        raise DataError(f"fitting the answers failed: {e}; check the answers file and --prior/--prior-strength") \
            from None
    prior = {
        "mean": "zero" if prior_mean is None else [round(float(v), 6) for v in prior_mean],
        "precision": float(prior_prec) if np.ndim(prior_prec) == 0 else "population",
    }
    return post, user_profile(post, dims, opposites, len(y), prior, soup_out)


def write_user_json(path: str | Path, profile: Mapping, force: bool = False, flag: str = "--out") -> Path:
    """Write user.json via temp file + rename; refuse to replace an existing file without force."""
    from soups.io.atomic import atomic_write_text
    from soups.io.files import finite_json

    return atomic_write_text(path, finite_json(profile, f"{flag} {path}", "check the answers and the prior", indent=2)
                             + "\n", force=force, flag=flag)


def format_profile(profile: Mapping) -> str:
    """Human-readable summary: weights with 95% intervals, merge weights, the merge command."""
    lines = [f"Inferred from {profile['n_answers']} answers (w: preference per std of each dimension):"]
    for name, w, (lo, hi) in zip(profile["dimensions"], profile["w"], profile["w_ci95"]):
        mw = profile["merge_weights"][name]
        lines.append(f"  {name:<14} w = {w:+.2f}   95% [{lo:+.2f}, {hi:+.2f}]   merge weight {mw:.2f}")
    lines.append("Build your soup:")
    lines.append(f"  {profile['merge_command']}")
    return "\n".join(lines)


def load_design(
    path: str | Path, dims: Sequence[str] | None = None, pool: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, dims) from an answer file; skips dropped.

    Features: the records' own phi_a/phi_b when every answer has them (files from `soups ask`),
    else the responses are scored with the dimensions' rewards and standardized on `pool`
    (default: the shipped pool, the reference `soups ask` uses).
    """
    from soups.prefs.answers import design, has_phi, read_answers
    from soups.prefs.features import Standardizer, default_dimensions, raw_rewards
    from soups.prefs.pool import load_pool

    records = read_answers(path)
    answered = [r for r in records if r["choice"] != "skip"]
    if not answered:
        raise DataError(f"answers file {path}: no answers (all skipped or empty); answer some questions first")
    if dims is None:
        first = answered[0].get("phi_a")
        dims = list(first) if isinstance(first, dict) and has_phi(records, list(first)) else default_dimensions()[0]
    dims = list(dims)
    if has_phi(records, dims):
        X, y = design(records, dims)
    else:
        ref = load_pool(pool)
        std = Standardizer.fit(dims, raw_rewards([r["response"] for r in ref], [r["prompt"] for r in ref], dims))
        prompts = [r["prompt"] for r in records]
        pa = std(raw_rewards([r["a"] for r in records], prompts, dims))
        pb = std(raw_rewards([r["b"] for r in records], prompts, dims))
        X, y = design(records, dims, pa, pb)
    return X, y, dims


def fit_answers_file(
    path: str | Path,
    dims: Sequence[str] | None = None,
    pool: str | Path | None = None,
    prior: str | Path | None = None,
    prior_prec: float = DEFAULT_PRIOR_PREC,
    soup_out: str = "my_soup",
) -> tuple[Posterior, dict]:
    """`soups fit-weights`: fit an answer file into a profile (features as in load_design)."""
    from soups.prefs.features import opposites_for

    X, y, dims = load_design(path, dims, pool)
    prior_mean, prec = None, prior_prec
    if prior is not None:
        prior_mean, pop_prec = load_prior(prior, dims)
        prec = pop_prec if pop_prec is not None else prior_prec
    return fit_profile(X, y, dims, opposites_for(dims), prior_mean, prec, soup_out)


def fit_population_files(
    paths: Sequence[str | Path], dims: Sequence[str] | None = None, pool: str | Path | None = None,
    prior_prec: float = DEFAULT_PRIOR_PREC,
) -> dict:
    """`soups fit-population`: the population prior (soups.prefs.population) from many users' answer files."""
    from soups.prefs.population import fit_population, population_json

    if not paths:
        raise DataError("fit-population: give at least one answers file")
    data = []
    for path in paths:
        X, y, used = load_design(path, dims, pool)
        if dims is None:
            dims = used
        data.append((X, y))
    mu, cov = fit_population(data, prior_prec=prior_prec)
    return population_json(dims, mu, cov, len(data))
