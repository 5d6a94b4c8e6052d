"""soups.stats against cases computed by hand (and by exact enumeration of the bootstrap)."""

import itertools
import math

import numpy as np
import pytest

from soups.stats import bootstrap_ci, outcomes, win_rate, win_rate_from_outcomes


def test_bootstrap_two_points():
    # resample means of [0, 1]: 0 (p=1/4), 0.5 (1/2), 1 (1/4) -> 2.5% quantile 0, 97.5% quantile 1
    ci = bootstrap_ci([0.0, 1.0], n_boot=5000)
    assert (ci.mean, ci.lo, ci.hi, ci.n) == (0.5, 0.0, 1.0, 2)


def test_bootstrap_constant_and_empty():
    ci = bootstrap_ci([2.5] * 7)
    assert (ci.mean, ci.lo, ci.hi) == (2.5, 2.5, 2.5)
    assert math.isnan(bootstrap_ci([]).mean) and bootstrap_ci([]).n == 0


def test_bootstrap_three_points_by_hand():
    # [1, 2, 6]: all-1 and all-6 resamples each have p = 1/27 > 2.5%, so the interval is [1, 6]; mean 3
    ci = bootstrap_ci([1, 2, 6], n_boot=20000)
    assert ci.mean == 3 and ci.lo == 1 and ci.hi == 6


def test_bootstrap_matches_exact_enumeration():
    x = [0.0, 1.0, 3.0, 10.0]
    means = sorted(np.mean(s) for s in itertools.product(x, repeat=len(x)))  # all 256 equally likely resamples
    exact_lo, exact_hi = means[int(0.025 * len(means))], means[int(0.975 * len(means))]
    ci = bootstrap_ci(x, n_boot=40000, seed=3)
    assert abs(ci.lo - exact_lo) <= 0.25 and abs(ci.hi - exact_hi) <= 0.25  # atoms are 0.25 apart
    assert ci.lo < ci.mean < ci.hi


def test_bootstrap_deterministic_and_narrows():
    rng = np.random.default_rng(0)
    small, big = rng.normal(size=20), rng.normal(size=2000)
    assert bootstrap_ci(small, seed=1) == bootstrap_ci(small, seed=1)
    w_small = bootstrap_ci(small).hi - bootstrap_ci(small).lo
    w_big = bootstrap_ci(big).hi - bootstrap_ci(big).lo
    # interval width ~ 2 * 1.96 * sd / sqrt(n): about 0.088 for n=2000
    assert w_big < w_small and abs(w_big - 2 * 1.96 * big.std() / math.sqrt(2000)) < 0.01


def test_win_rate_by_hand():
    a, b = [3, 2, 1, 5], [1, 2, 3, 4]
    assert outcomes(a, b) == [1.0, 0.5, 0.0, 1.0]
    wr = win_rate(a, b)
    assert (wr.wins, wr.ties, wr.losses) == (2, 1, 1) and wr.rate.mean == 0.625
    lower = win_rate(a, b, direction=-1)  # a dimension that wants lower scores
    assert (lower.wins, lower.ties, lower.losses) == (1, 1, 2) and lower.rate.mean == 0.375
    assert outcomes([1.05, 2.0], [1.0, 1.5], tol=0.1) == [0.5, 1.0]


def test_win_rate_all_wins_and_interval():
    wr = win_rate([2, 3, 4], [1, 1, 1])
    assert wr.rate.mean == wr.rate.lo == wr.rate.hi == 1.0
    # outcomes [1, 0]: resampled rates 0, 0.5, 1 -> interval [0, 1]
    wr = win_rate_from_outcomes([1.0, 0.0], n_boot=5000)
    assert (wr.rate.mean, wr.rate.lo, wr.rate.hi) == (0.5, 0.0, 1.0)
    assert wr.to_dict()["wins"] == 1


def test_bad_inputs():
    with pytest.raises(ValueError):
        outcomes([1, 2], [1])
    with pytest.raises(ValueError):
        win_rate_from_outcomes([0.3])
    with pytest.raises(ValueError):
        outcomes([1], [2], direction=0)


def test_verdict_and_pareto():
    from soups.eval.report import verdict
    from soups.stats import pareto_front

    assert verdict({"lo": 0.51, "hi": 0.9}) == "wins" and verdict({"lo": 0.1, "hi": 0.49}) == "loses"
    assert verdict({"lo": 0.5, "hi": 0.8}) == "unclear"  # an interval touching 1/2 is not a win
    # (1,1) dominates (0,0) and (1,0); (0,2) and (2,-1) trade off; a duplicate of a front point stays
    pts = [(1, 1), (0, 0), (1, 0), (0, 2), (2, -1), (1, 1)]
    assert pareto_front(pts) == [0, 3, 4, 5]


def test_one_interval_shape_for_results_and_expert_json():
    from soups.stats import summarize
    from soups.train.heldout import bootstrap_ci as expert_json_summary

    d = summarize([2.5] * 4)
    assert d == {"mean": 2.5, "lo": 2.5, "hi": 2.5, "n": 4, "ci95": [2.5, 2.5]}
    assert expert_json_summary is summarize  # expert.json's reward before/after is the same helper
    wr = win_rate([1, 2], [0, 3]).to_dict()
    assert (wr["wins"], wr["losses"], wr["ci95"]) == (1, 1, [wr["lo"], wr["hi"]])
