"""phi(response): the dimensions' rewards, standardized on a reference set (the thin layer over soups.rewards).

``phi_k(r) = (reward_k(r) - mean_k) / std_k`` with mean and std taken over a reference set of
responses (by default the candidate pool itself), so every dimension has the same scale and a
fitted weight means "preference per standard deviation of that dimension".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from soups.errors import ConfigError

log = logging.getLogger(__name__)


def default_dimensions() -> tuple[list[str], dict[str, str]]:
    """The dimension names (registry order) and their opposites, from experts/*.yaml."""
    from soups.dimensions import list_dimensions

    dims = list_dimensions()
    if not dims:
        raise ConfigError("no dimensions found in the experts folder; set SOUPS_EXPERTS_DIR or pass --dims")
    return [d.name for d in dims], {d.name: d.opposite for d in dims if d.opposite}


def opposites_for(dims: Sequence[str]) -> dict[str, str]:
    """Opposite of each dimension, from its file's `opposite` field (dimensions without one are left out)."""
    from soups.dimensions import load_dimension

    return {name: opp for name in dims if (opp := load_dimension(name).opposite)}


def raw_rewards(responses: Sequence[str], prompts: Sequence[str] | None, dims: Sequence[str]) -> np.ndarray:
    """(n, d) matrix of each dimension's reward on each response (its file's `reward`, soups.rewards)."""
    from soups.dimensions import load_dimension
    from soups.rewards import get_reward

    cols = []
    for name in dims:
        fn = get_reward(load_dimension(name))
        vals = np.asarray(fn(list(responses), prompts=list(prompts) if prompts is not None else None), dtype=float)
        if vals.shape != (len(responses),) or not np.all(np.isfinite(vals)):
            raise ConfigError(f"reward of dimension {name!r} returned {vals.shape} values or non-finite ones")
        cols.append(vals)
    return np.stack(cols, axis=1) if cols else np.zeros((len(responses), 0))


@dataclass
class Standardizer:
    """Per-dimension mean and std of the rewards on the reference set."""

    dims: list[str]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, dims: Sequence[str], raw: np.ndarray) -> Standardizer:
        std = raw.std(axis=0)
        flat = [d for d, s in zip(dims, std) if s <= 1e-12]
        if flat:
            log.warning("dimension(s) %s are constant on the reference set; their phi is 0", ", ".join(flat))
        return cls(list(dims), raw.mean(axis=0), np.where(std > 1e-12, std, 1.0))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.std


def pool_phi(pool: Sequence[dict], dims: Sequence[str]) -> tuple[np.ndarray, Standardizer]:
    """phi for every pool response, standardized on the pool itself."""
    raw = raw_rewards([r["response"] for r in pool], [r["prompt"] for r in pool], dims)
    std = Standardizer.fit(dims, raw)
    return std(raw), std
