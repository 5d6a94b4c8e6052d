"""soups.prefs math: Bradley-Terry fit, Laplace posterior, merge-weight mapping, EIG, population prior.

References are written here independently: float64 log posterior with finite differences,
Monte Carlo mutual information, hand-computed merge weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from soups.errors import DataError
from soups.prefs.active import expected_info_gain, select_pair
from soups.prefs.fit import Posterior, cosine, fit_bt, merge_weights, opposing_pairs
from soups.prefs.population import fit_population, load_prior, population_json


def _sig(z):
    return 1.0 / (1.0 + np.exp(-z))


def _simulate(rng, w, n):
    X = rng.normal(size=(n, len(w)))
    y = (rng.random(n) < _sig(X @ w)).astype(float)
    return X, y


def _ref_log_post(w, X, y, mu, lam):
    """Independent reference: log of prod_i p_i^y_i (1-p_i)^(1-y_i) * N(w; mu, I/lam), unnormalized."""
    p = _sig(X @ w)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p)) - 0.5 * lam * np.sum((w - mu) ** 2))


def test_fit_recovers_known_weights():
    rng = np.random.default_rng(0)
    w_true = np.array([1.5, -1.0, 0.5, 0.0, 2.0])
    X, y = _simulate(rng, w_true, 4000)
    post = fit_bt(X, y, prior_prec=1e-3)
    assert cosine(w_true, post.mean) > 0.995
    assert np.all(np.abs(post.mean - w_true) < 4 * post.sd)  # within 4 posterior sd


def test_laplace_95_percent_intervals_cover_95_percent():
    """Over 300 simulated users (5 weights each, 300 answers, flat prior) the intervals hold the true weight
    about 95% of the time: 1500 intervals, binomial sd 0.56 points, so [93%, 97%] is a 3.5-sd band."""
    rng = np.random.default_rng(3)
    w_true = np.array([1.5, -1.0, 0.5, 0.0, 2.0]) / 2
    hits = []
    for _ in range(300):
        X, y = _simulate(rng, w_true, 300)
        lo, hi = fit_bt(X, y, prior_prec=1e-6).ci95().T
        hits += list((lo <= w_true) & (w_true <= hi))
    assert 0.93 <= np.mean(hits) <= 0.97, np.mean(hits)


def test_map_and_laplace_match_finite_differences():
    rng = np.random.default_rng(1)
    X, y = _simulate(rng, np.array([0.8, -0.3, 1.2]), 40)
    y[:5] = 0.5  # ties are soft labels
    mu, lam = np.array([0.1, 0.0, -0.2]), 2.0
    post = fit_bt(X, y, prior_mean=mu, prior_prec=lam)
    def f(v):
        return _ref_log_post(post.mean + v, X, y, mu, lam)

    h, e = 1e-5, np.eye(3)
    grad = np.array([(f(h * e[i]) - f(-h * e[i])) / (2 * h) for i in range(3)])
    assert np.abs(grad).max() < 1e-5  # the MAP is a stationary point of the reference objective
    h = 1e-4
    hess = np.array([[(f(h * (e[i] + e[j])) - f(h * (e[i] - e[j])) - f(h * (e[j] - e[i])) + f(-h * (e[i] + e[j])))
                      / (4 * h * h) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(post.cov, np.linalg.inv(-hess), rtol=1e-3, atol=1e-6)


def test_no_answers_is_the_prior_and_all_ties_stay_neutral():
    post = fit_bt(np.zeros((0, 3)), np.zeros(0), prior_mean=np.array([1.0, 0, -1]), prior_prec=4.0)
    np.testing.assert_allclose(post.mean, [1.0, 0, -1])
    np.testing.assert_allclose(post.cov, np.eye(3) / 4)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    tied = fit_bt(np.vstack([X, -X]), np.full(60, 0.5))
    np.testing.assert_allclose(tied.mean, 0, atol=1e-9)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="labels"):
        fit_bt(np.ones((2, 2)), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="precision"):
        fit_bt(np.ones((2, 2)), np.array([1.0, 0.0]), prior_prec=0.0)


def test_merge_weights_per_opposing_pair():
    dims = ["concise", "informative", "friendly", "unfriendly", "expert"]
    w = np.array([1.0, 0.2, -0.5, 0.1, 0.4])
    opp = {"concise": "informative", "informative": "concise", "friendly": "unfriendly", "unfriendly": "friendly",
           "expert": "elementary", "elementary": "expert"}  # the paper's axes, written here
    # nets: concise - informative = 0.8, friendly - unfriendly = -0.6, expert alone (elementary not fitted) = 0.4
    got = merge_weights(w, dims, opp)
    want = {"concise": 0.8 / 1.8, "informative": 0.0, "friendly": 0.0, "unfriendly": 0.6 / 1.8, "expert": 0.4 / 1.8}
    assert got == pytest.approx(want)
    assert opposing_pairs(dims, opp) == [("concise", "informative"), ("friendly", "unfriendly"), ("expert", None)]
    assert opposing_pairs(dims) == [(d, None) for d in dims]  # no opposites given: every dimension alone
    assert merge_weights(np.zeros(5), dims, opp) == pytest.approx({d: 0.2 for d in dims})  # no preference: equal
    assert merge_weights(np.array([-1.0]), ["expert"]) == pytest.approx({"expert": 1.0})  # nothing positive: equal


def test_opposites_come_from_the_dimension_files():
    from soups.prefs.features import opposites_for

    assert opposites_for(["concise", "friendly", "expert"]) == {
        "concise": "informative", "friendly": "unfriendly", "expert": "elementary"}


def test_eig_matches_monte_carlo_mutual_information():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3))
    post = Posterior(mean=np.array([0.5, -1.0, 0.3]), cov=A @ A.T / 2 + 0.1 * np.eye(3))
    D = rng.normal(size=(6, 3)) * 1.5
    W = rng.multivariate_normal(post.mean, post.cov, size=400_000)

    def H(p):
        return -(p * np.log(p) + (1 - p) * np.log(1 - p))

    ref = []
    for x in D:
        p = np.clip(_sig(W @ x), 1e-15, 1 - 1e-15)
        ref.append(H(p.mean()) - H(p).mean())
    np.testing.assert_allclose(expected_info_gain(D, post), ref, atol=3e-3)
    # a direction the posterior is sure about carries less information than an uncertain one
    sure = Posterior(mean=np.zeros(2), cov=np.diag([0.01, 4.0]))
    gain = expected_info_gain(np.array([[1.0, 0], [0, 1.0]]), sure)
    assert gain[1] > gain[0]


def _simulate_selection(strategy, seed, phi, pairs, n_answers=10):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=phi.shape[1])
    w *= 3.0 / np.linalg.norm(w)
    X, y, asked = [], [], set()
    post = fit_bt(np.zeros((0, phi.shape[1])), np.zeros(0))
    for _ in range(n_answers):
        k = select_pair(pairs, phi, post, asked, strategy, rng)
        x = phi[pairs[k, 0]] - phi[pairs[k, 1]]
        X.append(x)
        y.append(float(rng.random() < _sig(x @ w)))
        asked.add(k)
        post = fit_bt(np.array(X), np.array(y))
    return cosine(w, post.mean)


def test_active_selection_beats_random_over_seeds():
    """Paired over 100 simulated users (same user, same noise seed): EIG selection recovers w better at 10 answers."""
    rng = np.random.default_rng(123)
    latent = rng.normal(size=(60, 2))  # a pool whose responses vary mostly along 2 of 5 directions
    phi = latent @ rng.normal(size=(2, 5)) + 0.4 * rng.normal(size=(60, 5))
    phi = (phi - phi.mean(0)) / phi.std(0)
    pairs = np.array([(i, j) for i in range(60) for j in range(i + 1, 60) if i // 4 == j // 4])  # 15 prompts x 6
    diffs = np.array([_simulate_selection("eig", s, phi, pairs) - _simulate_selection("random", s, phi, pairs)
                      for s in range(100)])
    t = diffs.mean() / (diffs.std(ddof=1) / np.sqrt(len(diffs)))
    assert diffs.mean() > 0.02 and t > 2.0, (diffs.mean(), t)


def test_select_pair_prefers_new_prompts_and_stops_when_exhausted():
    phi = np.array([[0.0], [1.0], [0.0], [5.0]])
    pairs, groups = np.array([[0, 1], [2, 3]]), np.array([0, 1])
    post = fit_bt(np.zeros((0, 1)), np.zeros(0))
    assert select_pair(pairs, phi, post) == 1  # larger difference: more information
    assert select_pair(pairs, phi, post, groups=groups, used_groups={1}) == 0  # a new prompt first
    assert select_pair(pairs, phi, post, asked={0, 1}) is None
    with pytest.raises(ValueError, match="strategy"):
        select_pair(pairs, phi, post, strategy="greedy")


def test_population_em_recovers_covariance_and_roundtrips(tmp_path):
    rng = np.random.default_rng(4)
    mu_true, cov_true = np.array([1.0, -0.5]), np.array([[2.0, 1.2], [1.2, 1.0]])
    data = []
    for _ in range(120):
        w = rng.multivariate_normal(mu_true, cov_true)
        data.append(_simulate(rng, w, 30))
    mu, cov = fit_population(data, n_iter=20)
    np.testing.assert_allclose(mu, mu_true, atol=0.3)
    np.testing.assert_allclose(cov, cov_true, atol=0.6)
    path = tmp_path / "population.json"
    path.write_text(json.dumps(population_json(["a", "b"], mu, cov, 120)))
    m2, prec = load_prior(path, ["b", "a"])  # reordered dims
    np.testing.assert_allclose(m2, mu[::-1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.inv(prec), cov[::-1, ::-1], atol=1e-5)


def test_load_prior_errors_name_the_file(tmp_path):
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"--prior .*p\.json: not valid JSON"):
        load_prior(bad, ["a"])
    bad.write_text(json.dumps({"dimensions": ["a"], "mean": [0.0]}))
    with pytest.raises(DataError, match="no prior for dimension"):
        load_prior(bad, ["a", "b"])
    bad.write_text(json.dumps({"dimensions": ["a", "b"], "mean": [0.0, 0.0], "cov": [[1, 2], [2, 1]]}))
    with pytest.raises(DataError, match="positive definite"):
        load_prior(bad, ["a", "b"])
