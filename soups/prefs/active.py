"""Active question selection: ask the pair whose answer is expected to tell us most about w.

For a candidate pair with difference x and the current Laplace posterior w ~ N(m, S), the score
``f = w . x`` is Gaussian, N(m.x, x^T S x). The expected information gain of the (binary) answer
about w is the mutual information (BALD):

    EIG(x) = H(E_f[s(f)]) - E_f[H(s(f))],   H = binary entropy (nats),

computed by quadrature over f on a dense standard-normal grid (Gauss-Hermite converges slowly
here: s(f) is nearly a step when the posterior is wide). Pure numpy, vectorized over candidates.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from soups.prefs.fit import Posterior, sigmoid

_NODES = np.linspace(-7.0, 7.0, 281)  # standard-normal grid; weights = normalized density
_WEIGHTS = np.exp(-0.5 * _NODES**2) / np.exp(-0.5 * _NODES**2).sum()


def binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def expected_info_gain(D: np.ndarray, post: Posterior) -> np.ndarray:
    """EIG (nats) of asking each candidate difference row of D (m, d) under `post` (module docstring)."""
    D = np.atleast_2d(np.asarray(D, dtype=float))
    mean = D @ post.mean
    var = np.einsum("ij,jk,ik->i", D, post.cov, D).clip(min=0.0)
    f = mean[:, None] + np.sqrt(var)[:, None] * _NODES[None, :]
    q = _WEIGHTS
    p = sigmoid(f)
    return binary_entropy(p @ q) - binary_entropy(p) @ q


def select_pair(
    pairs: np.ndarray,
    phi: np.ndarray,
    post: Posterior,
    asked: Collection[int] = (),
    strategy: str = "eig",
    rng: np.random.Generator | None = None,
    groups: np.ndarray | None = None,
    used_groups: Collection[int] = (),
) -> int | None:
    """Index into `pairs` (m, 2) of the next question, or None when every pair was asked.

    strategy "eig" takes the highest expected information gain, "random" a uniform pick. If
    `groups` (the prompt id of each pair) is given, pairs on prompts not yet used are preferred
    (a new prompt each round, as long as there are any left).
    """
    if strategy not in ("eig", "random"):
        raise ValueError(f"strategy must be 'eig' or 'random', got {strategy!r}")
    ok = np.ones(len(pairs), dtype=bool)
    ok[list(asked)] = False
    if groups is not None and used_groups:
        fresh = ok & ~np.isin(groups, list(used_groups))
        if fresh.any():
            ok = fresh
    cand = np.flatnonzero(ok)
    if cand.size == 0:
        return None
    if strategy == "random":
        rng = rng or np.random.default_rng()
        return int(rng.choice(cand))
    D = phi[pairs[cand, 0]] - phi[pairs[cand, 1]]
    return int(cand[int(np.argmax(expected_info_gain(D, post)))])
