"""The paper's pairwise protocol (soups.eval.judge): one criterion, A / B / TIE, asked in both orders."""

from __future__ import annotations

import pytest

from tests.helpers import FakeOpenAI, brevity_judge


@pytest.mark.parametrize("biased", [False, True])
def test_judge_protocol(tmp_path, monkeypatch, biased):
    from soups.eval.judge import judge_win_rate, make_client

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path))
    with FakeOpenAI((lambda body: "A") if biased else brevity_judge) as judge:
        client = make_client(judge.url, "fake-judge")
        soup = ["short", "a much longer answer", "same", "tiny"]
        other = ["a longer answer here", "short", "same", "also rather long"]
        wr = judge_win_rate(client, "Be concise.", ["p1", "p2", "p3", "p4"], soup, other)
    assert len(judge.requests) == 7  # four prompts, both orders; "same" vs "same" is one question, then cached
    if biased:  # always "A": the two orders disagree on every prompt, so every verdict is a tie
        assert (wr.wins, wr.ties, wr.losses) == (0, 4, 0) and wr.rate.mean == 0.5
    else:  # fewer words wins: soup wins prompts 1 and 4, loses 2, ties 3
        assert (wr.wins, wr.ties, wr.losses) == (2, 1, 1) and wr.rate.mean == pytest.approx(0.625)
