"""Statistics (the ground floor): percentile-bootstrap intervals for a mean, pairwise win rates, Pareto fronts.

One interval shape everywhere (results.json, expert.json): `{"mean", "lo", "hi", "ci95": [lo, hi], "n"}`
(`Interval.to_dict`; `ci95` is the name expert.json has always used for [lo, hi]).

A win rate compares two systems prompt by prompt on one dimension: a win scores 1, a tie 1/2,
a loss 0 (ties split, as judges' A/B/TIE verdicts are usually reported), and the rate is the
mean of those outcomes. Its interval is the bootstrap over prompts, so both numbers come from
the same resampling machinery. Resampling is seeded: the same inputs give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a (1 - alpha) confidence interval [lo, hi] over `n` items."""

    mean: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 2) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"

    def to_dict(self) -> dict:
        return {**asdict(self), "ci95": [self.lo, self.hi]}


@dataclass(frozen=True)
class WinRate:
    """Pairwise outcome counts of A vs B and A's win rate (wins + ties/2) / n with its interval."""

    wins: int
    ties: int
    losses: int
    rate: Interval

    def to_dict(self) -> dict:
        return {"wins": self.wins, "ties": self.ties, "losses": self.losses, **self.rate.to_dict()}


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOT, alpha: float = 0.05, seed: int = 0) -> Interval:
    """Mean of `values` with the percentile-bootstrap (1 - alpha) interval (resample n of n, with replacement)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"bootstrap_ci wants a flat sequence, got shape {x.shape}")
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if not 0 < alpha < 1 or n_boot < 1:
        raise ValueError(f"alpha must be in (0, 1) and n_boot >= 1, got alpha={alpha}, n_boot={n_boot}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(lo), float(hi), n)


def summarize(values: Sequence[float], **boot) -> dict:
    """`bootstrap_ci(values).to_dict()`: the mean with its 95% interval, as it is written to JSON."""
    return bootstrap_ci(values, **boot).to_dict()


def outcomes(a: Sequence[float], b: Sequence[float], *, direction: int = 1, tol: float = 0.0) -> list[float]:
    """Per item: 1 if A beats B by more than `tol` in `direction` (+1 higher, -1 lower), 0.5 tie, 0 loss."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} vs {len(b)}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    out = []
    for x, y in zip(a, b):
        d = (float(x) - float(y)) * direction
        out.append(1.0 if d > tol else 0.0 if d < -tol else 0.5)
    return out


def win_rate_from_outcomes(results: Sequence[float], **boot) -> WinRate:
    """WinRate from per-item outcomes in {1, 0.5, 0} (e.g. a judge's verdicts)."""
    wins = sum(1 for r in results if r == 1.0)
    ties = sum(1 for r in results if r == 0.5)
    losses = sum(1 for r in results if r == 0.0)
    if wins + ties + losses != len(results):
        raise ValueError("outcomes must be 1 (win), 0.5 (tie) or 0 (loss)")
    return WinRate(wins, ties, losses, bootstrap_ci(results, **boot))


def win_rate(a: Sequence[float], b: Sequence[float], *, direction: int = 1, tol: float = 0.0, **boot) -> WinRate:
    """A's win rate against B over paired items, scored by a metric (see `outcomes`), with a bootstrap interval."""
    return win_rate_from_outcomes(outcomes(a, b, direction=direction, tol=tol), **boot)


def pareto_front(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the non-dominated points (every coordinate to be maximized)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(all(q[d] >= p[d] for d in range(len(p))) and any(q[d] > p[d] for d in range(len(p)))
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front
