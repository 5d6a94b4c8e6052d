"""Fit a user's weights from pairwise choices: regularized Bradley-Terry with a Laplace posterior.

Model: a user's utility for a response is ``u = w . phi(response)``, where ``phi`` holds the
per-dimension rewards standardized on a reference set. For an answer on the pair (A, B) with
``x = phi(A) - phi(B)``, ``P(user picks A) = sigmoid(w . x)`` (Bradley-Terry). A tie is the soft
label ``y = 0.5``. The MAP estimate maximizes

    sum_i [y_i log s(x_i.w) + (1 - y_i) log s(-x_i.w)] - 1/2 (w - mu)^T Lambda (w - mu)

(L2 toward a prior mean ``mu``: zero = no preference, or a population mean), found by Newton's
method; the Laplace approximation of the posterior is ``N(w_map, H^-1)`` with
``H = X^T diag(p (1 - p)) X + Lambda``. Pure numpy: everything here works on phi matrices.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CHOICES = {"a": 1.0, "b": 0.0, "tie": 0.5, "skip": None}
Z95 = 1.959963984540054


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=float)))


@dataclass
class Posterior:
    """Laplace posterior over w: mean (the MAP) and covariance (inverse Hessian)."""

    mean: np.ndarray
    cov: np.ndarray
    n: int = 0

    @property
    def sd(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))

    def ci95(self) -> np.ndarray:
        """(d, 2) array of 95% intervals, mean -/+ 1.96 sd."""
        return np.stack([self.mean - Z95 * self.sd, self.mean + Z95 * self.sd], axis=1)

    def prob_a(self, x: np.ndarray) -> np.ndarray:
        """Plug-in P(A preferred) for difference rows x (n, d)."""
        return sigmoid(np.atleast_2d(x) @ self.mean)


def prior_precision(d: int, prior_prec: float | np.ndarray) -> np.ndarray:
    """A (d, d) precision matrix from a scalar (isotropic) or a full matrix (population prior)."""
    lam = np.asarray(prior_prec, dtype=float)
    if lam.ndim == 0:
        if not (lam > 0 and np.isfinite(lam)):
            raise ValueError(f"prior precision must be a finite number > 0, got {float(lam)}")
        return float(lam) * np.eye(d)
    if lam.shape != (d, d):
        raise ValueError(f"prior precision must be scalar or ({d}, {d}), got shape {lam.shape}")
    if not np.all(np.isfinite(lam)):
        raise ValueError("prior precision must be finite")
    return lam


def log_posterior(w: np.ndarray, X: np.ndarray, y: np.ndarray, mu: np.ndarray, lam: np.ndarray) -> float:
    """Unnormalized log posterior (BT log likelihood + Gaussian log prior)."""
    z = X @ w
    ll = -(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)).sum()
    r = w - mu
    return float(ll - 0.5 * r @ lam @ r)


def fit_bt(
    X: np.ndarray,
    y: np.ndarray,
    prior_mean: np.ndarray | None = None,
    prior_prec: float | np.ndarray = 1.0,
    max_iter: int = 100,
    tol: float = 1e-10,
) -> Posterior:
    """MAP Bradley-Terry fit with L2 toward `prior_mean`, and its Laplace posterior (module docstring).

    X: (n, d) differences phi(A) - phi(B); y: (n,) labels in [0, 1] (1 = A chosen, 0.5 = tie).
    With no rows the posterior is the prior.
    """
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {X.shape}")
    n, d = X.shape
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},), got {y.shape}")
    if np.any((y < 0) | (y > 1)) or not np.all(np.isfinite(X)):
        raise ValueError("labels must lie in [0, 1] and features must be finite")
    mu = np.zeros(d) if prior_mean is None else np.asarray(prior_mean, dtype=float)
    lam = prior_precision(d, prior_prec)
    w = mu.copy()
    obj = log_posterior(w, X, y, mu, lam)
    for _ in range(max_iter):
        p = sigmoid(X @ w)
        grad = X.T @ (y - p) - lam @ (w - mu)
        hess = (X * (p * (1 - p))[:, None]).T @ X + lam
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:  # backtracking: the objective is strictly concave, so this ends
            w_new = w + t * step
            obj_new = log_posterior(w_new, X, y, mu, lam)
            if obj_new >= obj - 1e-12 or t < 1e-8:
                break
            t *= 0.5
        w, done = w_new, abs(obj_new - obj) < tol and float(np.abs(t * step).max(initial=0.0)) < 1e-8
        obj = obj_new
        if done:
            break
    p = sigmoid(X @ w)
    hess = (X * (p * (1 - p))[:, None]).T @ X + lam
    cov = np.linalg.inv(hess)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(cov))):
        raise ValueError(f"the fit did not reach finite weights (largest |feature| {np.abs(X).max(initial=0):.3g}); "
                         "features must be standardized rewards")
    return Posterior(mean=w, cov=0.5 * (cov + cov.T), n=n)


def opposing_pairs(dims: Sequence[str], opposites: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """Group dims into (a, b) opposing pairs in the order given; a dim whose opposite is not fitted gets (a, None).

    `opposites` maps a dimension to its opposite (the dimension files' `opposite` fields,
    soups.prefs.features.opposites_for); None: no dimension has one."""
    opp = dict(opposites or {})
    seen: set[str] = set()
    groups: list[tuple[str, str | None]] = []
    for a in dims:
        if a in seen:
            continue
        b = opp.get(a)
        if b in dims and b not in seen:
            groups.append((a, b))
            seen.update((a, b))
        else:
            groups.append((a, None))
            seen.add(a)
    return groups


def merge_weights(
    w: np.ndarray, dims: Sequence[str], opposites: Mapping[str, str] | None = None, eps: float = 1e-9
) -> dict[str, float]:
    """Map fitted w to non-negative merge weights, one per dimension's expert, summing to 1.

    Per opposing pair (a, b) only the net preference ``n = w_a - w_b`` is meaningful (the two
    rewards move in opposite directions), so the favored side gets ``|n|`` and the other 0; a
    dimension fitted without its opposite gets ``max(w, 0)``. The result is normalized to sum to 1
    (a soup average). A user with no net preference anywhere gets equal weights on every expert.
    """
    idx = {name: i for i, name in enumerate(dims)}
    raw: dict[str, float] = {}
    for a, b in opposing_pairs(dims, opposites):
        net = float(w[idx[a]] - (w[idx[b]] if b is not None else 0.0))
        raw[a] = max(net, 0.0)
        if b is not None:
            raw[b] = max(-net, 0.0)
    total = sum(raw.values())
    if total <= eps:
        log.warning("no net preference on any dimension: equal merge weights")
        return {name: 1.0 / len(dims) for name in dims}
    return {name: raw[name] / total for name in dims}


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    return float(u @ v / (nu * nv)) if nu > 0 and nv > 0 else 0.0
