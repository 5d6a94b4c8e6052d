"""One ask session, without any UI: the next pair to show, the answers so far, the fitted profile.

`soups ask` (soups/prefs/ask.py: a terminal loop) and the playground's "Find my weights" (button
clicks, soups/playground/ask_flow.py) both drive this object. Each question: fit the Laplace
posterior on the answers so far (soups.prefs.fit), pick the unasked pool pair with the highest
expected information gain (soups.prefs.active; a new prompt while any are left), randomize its
A/B order; `answer(choice)` returns the record as `soups ask` writes it to the answer file, so the
file refits with `soups fit-weights`. The random draws depend only on the seed and the number of
records, so a resumed session asks what an uninterrupted one would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from soups.errors import ConfigError
from soups.prefs.user import DEFAULT_PRIOR_PREC

CHOICES = ("a", "b", "tie", "skip")


@dataclass(frozen=True)
class Question:
    number: int  # 1-based, counting answered (non-skipped) questions
    rounds: int
    prompt: str
    a: str
    b: str


@dataclass(frozen=True)
class PoolFeatures:
    """A candidate pool scored on some dimensions: phi (standardized on the pool), its pairs and their prompts."""

    records: list[dict]
    dims: tuple[str, ...]
    phi: np.ndarray  # (n, d)
    std: object  # soups.prefs.features.Standardizer: raw rewards -> phi
    pairs: np.ndarray  # (m, 2) indices into records, one pair per two responses to a prompt
    groups: np.ndarray  # (m,) the prompt of each pair


def pool_features(records: list[dict], dims: Sequence[str]) -> PoolFeatures:
    """Score a loaded pool (soups.prefs.pool.load_pool) on `dims` and list its candidate pairs."""
    from soups.prefs.features import pool_phi
    from soups.prefs.pool import candidate_pairs

    phi, std = pool_phi(records, list(dims))
    pairs, groups = candidate_pairs(records)
    return PoolFeatures(records, tuple(dims), phi, std, pairs, groups)


def _resumed_phi(records: list[dict], features: PoolFeatures, index: Mapping[str, int]):
    """phi_a/phi_b arrays for resumed records without phi: pool rows when the text is in the pool, else scored now;
    (None, None) when every record carries its own phi."""
    from soups.prefs.answers import has_phi
    from soups.prefs.features import raw_rewards

    dims = list(features.dims)
    if has_phi(records, dims):
        return None, None
    rows = {}
    for side in ("a", "b"):
        out = np.zeros((len(records), len(dims)))
        missing = [i for i, r in enumerate(records) if r[side] not in index]
        for i, r in enumerate(records):
            if r[side] in index:
                out[i] = features.phi[index[r[side]]]
        if missing:
            raw = raw_rewards([records[i][side] for i in missing], [records[i]["prompt"] for i in missing], dims)
            out[missing] = features.std(raw)
        rows[side] = out
    return rows["a"], rows["b"]


class AskSession:
    """One person's questions and answers; `question()` is the next pair, `answer(choice)` records it."""

    def __init__(self, features: PoolFeatures, opposites: Mapping[str, str] | None = None, *, rounds: int = 10,
                 seed: int | None = None, strategy: str = "eig", prior_mean: np.ndarray | None = None,
                 prior_prec: float = DEFAULT_PRIOR_PREC, records: Sequence[dict] = ()) -> None:
        if not features.dims:
            raise ConfigError("no dimensions: there are no weights to find")
        if rounds < 1:
            raise ConfigError(f"--rounds {rounds}: must be >= 1")
        self.features, self.dims = features, list(features.dims)
        self.opposites = dict(opposites or {})
        self.rounds, self.strategy = rounds, strategy
        self.prior_mean, self.prior_prec = prior_mean, prior_prec
        self.seed = int(seed) if seed is not None else int(time.time_ns() % 2**31)
        self.records: list[dict] = list(records)
        self.exhausted = False
        self._pending: tuple[int, int, int] | None = None  # (pair index, shown as A, shown as B)
        # resumed answers: the pairs (and prompts) they used are not asked again
        index = {r["response"]: i for i, r in enumerate(features.records)}
        pair_index = {(int(i), int(j)): k for k, (i, j) in enumerate(features.pairs)}
        self._asked: set[int] = set()
        self._used: set[int] = set()
        for r in self.records:
            i, j = index.get(r["a"]), index.get(r["b"])
            k = pair_index.get((min(i, j), max(i, j))) if i is not None and j is not None else None
            if k is not None:
                self._asked.add(k)
                self._used.add(int(features.groups[k]))
        self._phi_a, self._phi_b = _resumed_phi(self.records, features, index) if self.records else (None, None)

    @property
    def answered(self) -> int:
        return sum(r["choice"] != "skip" for r in self.records)

    @property
    def done(self) -> bool:
        return self.answered >= self.rounds or self.exhausted

    def design(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of the answers so far (soups.prefs.answers.design)."""
        from soups.prefs.answers import design

        return design(self.records, self.dims, self._phi_a, self._phi_b)

    def question(self) -> Question | None:
        """The next question (the same one until it is answered), or None when done or the pool ran out."""
        from soups.prefs.active import select_pair
        from soups.prefs.fit import fit_bt

        if self.done:
            return None
        f = self.features
        if self._pending is None:
            X, y = self.design()
            post = fit_bt(X, y, prior_mean=self.prior_mean, prior_prec=self.prior_prec)
            rng = np.random.default_rng([self.seed, len(self.records)])
            k = select_pair(f.pairs, f.phi, post, self._asked, self.strategy, rng, f.groups, self._used)
            if k is None:
                self.exhausted = True
                return None
            i, j = (int(v) for v in f.pairs[k])
            if np.random.default_rng([self.seed, len(self.records), 1]).random() < 0.5:
                i, j = j, i
            self._pending = (k, i, j)
        _, i, j = self._pending
        return Question(self.answered + 1, self.rounds, f.records[i]["prompt"], f.records[i]["response"],
                        f.records[j]["response"])

    def answer(self, choice: str) -> dict:
        """Record 'a', 'b', 'tie' or 'skip' for the current question; returns the answer-file record."""
        if choice not in CHOICES:
            raise ConfigError(f"answer {choice!r}: choose one of {', '.join(CHOICES)}")
        if self._pending is None and self.question() is None:
            raise ConfigError("no question is open: every question is answered")
        k, i, j = self._pending
        pool, phi = self.features.records, self.features.phi
        rec = {
            "prompt": pool[i]["prompt"], "a": pool[i]["response"], "b": pool[j]["response"], "choice": choice,
            "a_source": pool[i]["source"], "b_source": pool[j]["source"], "pair": [i, j],
            "phi_a": {d: round(float(v), 6) for d, v in zip(self.dims, phi[i])},
            "phi_b": {d: round(float(v), 6) for d, v in zip(self.dims, phi[j])},
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.records.append(rec)
        if self._phi_a is not None:
            self._phi_a, self._phi_b = np.vstack([self._phi_a, phi[i]]), np.vstack([self._phi_b, phi[j]])
        self._asked.add(k)
        self._used.add(int(self.features.groups[k]))
        self._pending = None
        return rec

    def profile(self, soup_out: str = "my_soup") -> dict:
        """The fitted user.json content: w with 95% intervals, merge weights (soups.prefs.user)."""
        from soups.prefs.user import fit_profile

        if self.answered == 0:
            raise ConfigError("no answers yet (all skipped): answer at least one question")
        X, y = self.design()
        _, profile = fit_profile(X, y, self.dims, self.opposites, self.prior_mean, self.prior_prec, soup_out)
        return profile
