"""Held-out fluency measures (soups/eval/fluency.py) against counts worked out by hand."""

from __future__ import annotations

import pytest

from soups.eval.fluency import distinct3, fluency_report, unknown_share


def test_unknown_share_counts_invented_words():
    # 7 words of 2+ letters ("a" is skipped); "blorptastic" and "zxqvoon" are not English
    assert unknown_share("The blorptastic cat sat on zxqvoon a mat.") == pytest.approx(2 / 7)
    assert unknown_share("Photosynthesis turns light into chemical energy.") == 0.0
    assert unknown_share("") == 0.0 and unknown_share("1 2 3 !") == 0.0


def test_distinct3_sees_loops():
    assert distinct3("the sky is blue") == 1.0  # 2 trigrams, both new
    loop = "I like it . " * 5  # tokens: i like it . x5 = 20 tokens, 18 trigrams, 4 distinct
    assert distinct3(loop) == pytest.approx(4 / 18)
    assert distinct3("hi there") == 1.0


def test_report_means_and_truncated_share():
    texts = ["the sky is blue", "I like it . " * 5]
    rep = fluency_report(texts, truncated=[False, True])
    assert rep["distinct3"] == pytest.approx((1.0 + 4 / 18) / 2)
    assert rep["unknown"] == 0.0 and rep["truncated"] == 0.5
    assert "truncated" not in fluency_report(texts)
