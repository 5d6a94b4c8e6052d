""""Find my weights": ten choices on the page's flow give the profile `soups fit-weights` fits from the same file."""

from __future__ import annotations

import pytest

from soups.errors import ConfigError
from soups.eval.scorers import word_count
from soups.playground.ask_flow import AskSession

DIMS = ["concise", "friendly", "expert"]


def _shorter(q) -> str:
    return "a" if word_count(q.a) <= word_count(q.b) else "b"


def test_ten_choices_fit_the_same_profile_as_fit_weights(tmp_path):
    from soups.playground.export import answers_jsonl
    from soups.prefs.answers import read_answers
    from soups.prefs.user import fit_answers_file

    s = AskSession(DIMS, rounds=10, seed=0)
    seen = []
    while (q := s.question()) is not None:
        assert q.number == s.answered + 1 and q.rounds == 10 and q.a != q.b
        assert s.question() == q  # the open question stays until it is answered
        seen.append(q.prompt)
        s.answer("skip" if len(seen) == 3 else _shorter(q))
    assert s.done and s.answered == 10 and len(s.records) == 11
    assert len(set(seen)) == len(seen)  # a new prompt each time
    profile = s.profile()
    assert profile["merge_weights"]["concise"] == max(profile["merge_weights"].values())  # prefers short answers
    assert all(lo <= w <= hi for w, (lo, hi) in zip(profile["w"], profile["w_ci95"]))

    path = tmp_path / "choices.jsonl"
    path.write_text(answers_jsonl(s.records))
    assert len(read_answers(path)) == 11  # the export is a valid `soups ask` answer file
    _, refit = fit_answers_file(path, DIMS)
    assert refit["w"] == pytest.approx(profile["w"]) and refit["merge_weights"] == profile["merge_weights"]


def test_ask_errors():
    s = AskSession(DIMS, rounds=1, seed=1)
    with pytest.raises(ConfigError, match="choose one of"):
        s.answer("maybe")
    with pytest.raises(ConfigError, match="no answers"):
        s.profile()
    s.answer("a")
    assert s.question() is None
    with pytest.raises(ConfigError, match="every question is answered"):
        s.answer("b")
    with pytest.raises(ConfigError, match="no expert"):
        AskSession([])
