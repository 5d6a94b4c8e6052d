""""Find my weights" on the page: the `soups ask` session, one question per button click.

The session is soups.prefs.session.AskSession, the one `soups ask` runs in a terminal: phi from the
dimensions' rewards standardized on the candidate pool, a Bradley-Terry + Laplace fit after each
answer, the next pair by expected information gain on a new prompt, A/B order randomized, and at
the end the user profile (weights with 95% intervals and merge weights, soups.prefs.user) that
moves the sliders. Records match `soups ask`'s answer file, so an exported file refits with
`soups fit-weights`. The page adds a per-process cache of the scored pool (every click on "Find my
weights" starts a session) and a fresh seed per session unless `soups playground --seed` fixes it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from soups.errors import ConfigError
from soups.prefs.session import CHOICES, PoolFeatures, Question
from soups.prefs.session import AskSession as _Session

__all__ = ["CHOICES", "AskSession", "Question"]


@functools.lru_cache(maxsize=4)
def _pool_features(pool: str | None, dims: tuple[str, ...]) -> PoolFeatures:
    """The pool file scored on `dims`, once per process."""
    from soups.prefs.pool import load_pool
    from soups.prefs.session import pool_features

    return pool_features(load_pool(pool), dims)


class AskSession(_Session):
    """The page's session over the loaded experts' dimensions (`pool`: a pool file, default the shipped one)."""

    def __init__(self, dims: Sequence[str], *, rounds: int = 10, pool: str | Path | None = None,
                 seed: int | None = None, prior_prec: float = 1.0) -> None:
        from soups.prefs.features import opposites_for

        dims = list(dict.fromkeys(dims))
        if not dims:
            raise ConfigError("no expert loaded, so there are no weights to find")
        if rounds < 1:
            raise ConfigError(f"--rounds {rounds}: must be >= 1")
        super().__init__(_pool_features(str(pool) if pool else None, tuple(dims)), opposites_for(dims),
                         rounds=rounds, seed=seed, prior_prec=prior_prec)
