""""Find my weights" on the page: the `soups ask` flow one question at a time.

The same pieces as `soups ask` (soups/prefs/ask.py), driven by button clicks instead of a
terminal loop: phi from the dimensions' rewards standardized on the candidate pool, a
Bradley-Terry + Laplace fit after each answer, the next pair by expected information gain on a
new prompt, A/B order randomized, and at the end the user profile (weights with 95% intervals
and merge weights, soups.prefs.user) that moves the sliders. Records match `soups ask`'s answer
file, so an exported file refits with `soups fit-weights`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soups.errors import ConfigError

CHOICES = ("a", "b", "tie", "skip")


@dataclass(frozen=True)
class Question:
    number: int  # 1-based, counting answered (non-skipped) questions
    rounds: int
    prompt: str
    a: str
    b: str


@functools.lru_cache(maxsize=4)
def _pool_features(pool: str | None, dims: tuple[str, ...]):
    """(pool, phi, pairs, groups) for a pool file and dimensions; scored once per process."""
    from soups.prefs.features import pool_phi
    from soups.prefs.pool import candidate_pairs, load_pool

    records = load_pool(pool)
    phi, _ = pool_phi(records, list(dims))
    pairs, groups = candidate_pairs(records)
    return records, phi, pairs, groups


class AskSession:
    """One person's questions and answers; `question()` is the next pair, `answer(choice)` records it."""

    def __init__(self, dims: Sequence[str], *, rounds: int = 10, pool: str | Path | None = None,
                 seed: int | None = None, prior_prec: float = 1.0) -> None:
        from soups.prefs.features import opposites_for

        dims = list(dict.fromkeys(dims))
        if not dims:
            raise ConfigError("no expert loaded, so there are no weights to find")
        if rounds < 1:
            raise ConfigError(f"--rounds {rounds}: must be >= 1")
        self.dims, self.rounds, self.prior_prec = dims, rounds, prior_prec
        self.opposites = opposites_for(dims)
        self.seed = int(seed) if seed is not None else int(time.time_ns() % 2**31)
        self.pool, self.phi, self.pairs, self.groups = _pool_features(str(pool) if pool else None, tuple(dims))
        self.records: list[dict] = []
        self._asked: set[int] = set()
        self._used: set[int] = set()
        self._pending: tuple[int, int, int] | None = None  # (pair index, shown as A, shown as B)
        self.exhausted = False

    @property
    def answered(self) -> int:
        return sum(r["choice"] != "skip" for r in self.records)

    @property
    def done(self) -> bool:
        return self.answered >= self.rounds or self.exhausted

    def _design(self):
        from soups.prefs.answers import design

        return design(self.records, self.dims)

    def question(self) -> Question | None:
        """The next question (the same one until it is answered), or None when done."""
        from soups.prefs.active import select_pair
        from soups.prefs.fit import fit_bt

        if self.done:
            return None
        if self._pending is None:
            X, y = self._design()
            post = fit_bt(X, y, prior_prec=self.prior_prec)
            rng = np.random.default_rng([self.seed, len(self.records)])
            k = select_pair(self.pairs, self.phi, post, self._asked, "eig", rng, self.groups, self._used)
            if k is None:
                self.exhausted = True
                return None
            i, j = (int(v) for v in self.pairs[k])
            if np.random.default_rng([self.seed, len(self.records), 1]).random() < 0.5:
                i, j = j, i
            self._pending = (k, i, j)
        _, i, j = self._pending
        return Question(self.answered + 1, self.rounds, self.pool[i]["prompt"], self.pool[i]["response"],
                        self.pool[j]["response"])

    def answer(self, choice: str) -> None:
        """Record 'a', 'b', 'tie' or 'skip' for the current question."""
        if choice not in CHOICES:
            raise ConfigError(f"answer {choice!r}: choose one of {', '.join(CHOICES)}")
        if self._pending is None and self.question() is None:
            raise ConfigError("no question is open: every question is answered")
        k, i, j = self._pending
        self.records.append({
            "prompt": self.pool[i]["prompt"], "a": self.pool[i]["response"], "b": self.pool[j]["response"],
            "choice": choice, "a_source": self.pool[i]["source"], "b_source": self.pool[j]["source"], "pair": [i, j],
            "phi_a": {d: round(float(v), 6) for d, v in zip(self.dims, self.phi[i])},
            "phi_b": {d: round(float(v), 6) for d, v in zip(self.dims, self.phi[j])},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        self._asked.add(k)
        self._used.add(int(self.groups[k]))
        self._pending = None

    def profile(self, soup_out: str = "my_soup") -> dict:
        """The fitted user.json content: w with 95% intervals, merge weights (soups.prefs.user)."""
        from soups.prefs.user import fit_profile

        if self.answered == 0:
            raise ConfigError("no answers yet (all skipped): answer at least one question")
        X, y = self._design()
        _, profile = fit_profile(X, y, self.dims, self.opposites, None, self.prior_prec, soup_out)
        return profile
