"""Population prior: where many users' weights lie, learned from their answers (empirical Bayes).

With users i = 1..N and answers (X_i, y_i), the hierarchical model is w_i ~ N(mu, Sigma),
y_ij ~ Bernoulli(sigmoid(w_i . x_ij)). EM with the Laplace posterior in the E-step:

    E: (m_i, S_i) = posterior mean and covariance of w_i under the prior N(mu, Sigma)
    M: mu = mean_i m_i,   Sigma = mean_i [S_i + (m_i - mu)(m_i - mu)^T]       (eigenvalues floored)

The E-step moments are importance-sampled from the exact posterior, with the (widened) Laplace
posterior of soups.prefs.fit.fit_bt as the proposal: plain Laplace moments underestimate Sigma
badly with binary answers and few answers per user (the known bias of PQL), e.g. by half at 20.

A new user is then fitted with L2 toward mu with precision Sigma^-1: directions in which the
population hardly varies are pinned near the mean, so a few answers go to the directions that
matter. The eigenvectors of Sigma play the role of the SVD basis PReF initializes from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from soups.errors import DataError
from soups.prefs.fit import fit_bt

log = logging.getLogger(__name__)


def posterior_moments(
    X: np.ndarray, y: np.ndarray, mu: np.ndarray, prec: np.ndarray, rng: np.random.Generator, n_samples: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and covariance of w by self-normalized importance sampling (Laplace proposal, widened 1.5x)."""
    post = fit_bt(X, y, prior_mean=mu, prior_prec=prec)
    L = np.linalg.cholesky(post.cov + 1e-12 * np.eye(len(mu))) * 1.5
    Z = rng.standard_normal((n_samples, len(mu)))
    W = post.mean + Z @ L.T
    z = W @ X.T
    log_lik = -(y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)).sum(axis=1)
    R = W - mu
    log_w = log_lik - 0.5 * np.einsum("ij,jk,ik->i", R, prec, R) + 0.5 * (Z * Z).sum(axis=1)
    p = np.exp(log_w - log_w.max())
    p /= p.sum()
    mean = p @ W
    C = W - mean
    return mean, (C * p[:, None]).T @ C


def fit_population(
    data: Sequence[tuple[np.ndarray, np.ndarray]],
    prior_prec: float = 1.0,
    n_iter: int = 50,
    min_var: float = 1e-2,
    tol: float = 1e-4,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """EM estimate of the population mean and covariance from users' (X_i, y_i) (module docstring)."""
    if not data:
        raise ValueError("fit_population needs at least one user's answers")
    d = data[0][0].shape[1]
    mu, cov = np.zeros(d), np.eye(d) / prior_prec
    for it in range(n_iter):
        prec = np.linalg.inv(cov)
        rng = np.random.default_rng(seed)  # common random numbers: a smooth, deterministic fixed-point map
        moments = [posterior_moments(X, y, mu, prec, rng) for X, y in data]
        M = np.array([m for m, _ in moments])
        new_mu = M.mean(axis=0)
        R = M - new_mu
        new_cov = np.mean([S for _, S in moments], axis=0) + R.T @ R / len(moments)
        vals, vecs = np.linalg.eigh(0.5 * (new_cov + new_cov.T))
        new_cov = (vecs * np.maximum(vals, min_var)) @ vecs.T
        delta = max(np.abs(new_mu - mu).max(), np.abs(new_cov - cov).max())
        mu, cov = new_mu, new_cov
        if delta < tol:
            log.debug("population EM converged after %d iterations", it + 1)
            break
    return mu, cov


def population_json(dims: Sequence[str], mu: np.ndarray, cov: np.ndarray, n_users: int) -> dict:
    """The population prior file content: {"dimensions", "mean", "cov", "n_users"}."""
    return {
        "dimensions": list(dims),
        "mean": [round(float(v), 6) for v in mu],
        "cov": [[round(float(v), 6) for v in row] for row in cov],
        "n_users": int(n_users),
    }


def load_prior(path: str | Path, dims: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a prior file: a population prior {"dimensions", "mean", "cov"} or a user.json (its w is the mean).

    Returns (mean, precision or None when the file has no covariance).
    """
    from soups.io.files import read_json

    path = Path(path)
    data = read_json(path, "--prior", hint="give a population prior (soups fit-population) or a user.json")
    names, mean = data.get("dimensions"), data.get("mean", data.get("w"))
    if not isinstance(names, list) or not isinstance(mean, list) or len(names) != len(mean):
        raise DataError(f"--prior {path}: needs `dimensions` and `mean` (or `w`) lists of equal length")
    missing = [d for d in dims if d not in names]
    if missing:
        raise DataError(f"--prior {path}: no prior for dimension(s) {', '.join(missing)}; refit the population prior")
    idx = [names.index(d) for d in dims]
    try:
        mu = np.asarray(mean, dtype=float)[idx]
        cov = None if data.get("cov") is None else np.asarray(data["cov"], dtype=float)[np.ix_(idx, idx)]
    except (ValueError, IndexError, TypeError):
        raise DataError(f"--prior {path}: `mean` must be numbers, `cov` a square matrix over `dimensions`") from None
    if not np.all(np.isfinite(mu)) or np.abs(mu).max(initial=0) > 1e4:
        raise DataError(f"--prior {path}: `mean` must be finite numbers within +-1e4; refit it")
    if cov is None:
        return mu, None
    vals = np.linalg.eigvalsh(0.5 * (cov + cov.T))
    if not np.all(np.isfinite(vals)) or vals.min() <= 0:
        raise DataError(f"--prior {path}: `cov` is not positive definite; refit it with `soups fit-population`")
    return mu, np.linalg.inv(cov)
