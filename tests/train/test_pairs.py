"""`soups make-pairs` (soups/train/pairs.py): RLCD pairs from the base, on a tiny model.

Checked against what the base was asked: every `chosen` answer is one the base wrote to a prompt carrying
the dimension's statement, every `rejected` one to the opposite's statement (the rendered messages are
recorded), the pairs are keyed by the plain prompt, and a rerun reuses the cached answers.
"""

from __future__ import annotations

import json

import pytest

from soups.errors import ConfigError, OutputExistsError
from soups.train.pairs import contrast
from tests.helpers import assert_one_line_error, run_cli

UNFRIENDLY = "Generate a response in an unfriendly manner."
FRIENDLY = "Generate a response that is friendly, witty, funny, and humorous, like a close friend."


def test_contrast_pairs_answer_i_with_answer_i_and_drops_unusable_ones():
    chosen = [{"prompt": "p1", "answers": ["a", "b", ""], "finished": [True, False, True]},
              {"prompt": "p2", "answers": ["same"], "finished": [True]},
              {"prompt": "p3", "answers": ["x"], "finished": [True]}]
    rejected = [{"prompt": "p1", "answers": ["A", "B", "C"], "finished": [True, True, True]},
                {"prompt": "p2", "answers": ["same"], "finished": [True]}]  # p3 has no rejected row
    assert contrast(chosen, rejected) == [{"prompt": "p1", "chosen": "a", "rejected": "A"}]
    assert contrast(chosen, rejected, finished_only=False) == [
        {"prompt": "p1", "chosen": "a", "rejected": "A"}, {"prompt": "p1", "chosen": "b", "rejected": "B"}]


def test_contrast_match_length_cuts_both_answers_to_the_shorter_ones_words():
    chosen = [{"prompt": "p1", "answers": ["No.\nJust  look it up, fine?", "Too short", "a b c"],
               "finished": [True, False, False]}]
    rejected = [{"prompt": "p1", "answers": ["Oh wow, what a great question! Let", "Hi there friend! x", "a b c d"],
                 "finished": [False, False, False]}]
    got = contrast(chosen, rejected, match_length=2)
    assert got == [{"prompt": "p1", "chosen": "No.\nJust  look it up, fine?",
                    "rejected": "Oh wow, what a great question!"},  # 6 words each, the newline and spaces kept
                   {"prompt": "p1", "chosen": "Too short", "rejected": "Hi there"}]  # "a b c" vs "a b c d": equal
    assert contrast(chosen, rejected, match_length=3) == got[:1]  # "Too short" has 2 words


def test_make_pairs_contrasts_the_statements_and_resumes(confident_base, tmp_path, monkeypatch):
    from soups.prompts import load_prompts
    from soups.train import pairs as pairs_mod
    from soups.train import warmstart

    rendered: list[str] = []
    real = warmstart.render
    monkeypatch.setattr(warmstart, "render", lambda tok, msg, *a, **k: rendered.append(msg) or real(tok, msg, *a, **k))
    out = tmp_path / "pairs.jsonl"
    info = pairs_mod.make_pairs("unfriendly", out=out, base=confident_base, prompts=16, samples=2, max_new_tokens=10,
                                temperature=1.0, engine="transformers", finished_only=False, progress=False)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert info["pairs"] == len(rows) and info["opposite"] == "friendly" and info["engine"] == "transformers"
    train = set(load_prompts("train"))
    assert {r["prompt"] for r in rows} <= train and len({r["prompt"] for r in rows}) >= 4  # plain training prompts
    # one rendering per prompt and side, each carrying its side's statement
    assert sum(m.endswith(UNFRIENDLY) for m in rendered) == 16 and sum(m.endswith(FRIENDLY) for m in rendered) == 16
    work = tmp_path / ".pairs.jsonl.work"
    cached = {}
    for side in ("chosen", "rejected"):
        lines = (work / f"{side}.jsonl").read_text().splitlines()
        cached[side] = {r["prompt"]: r["answers"] for r in map(json.loads, lines)}
    for r in rows:
        assert r["chosen"] in cached["chosen"][r["prompt"]] and r["rejected"] in cached["rejected"][r["prompt"]]
    # an existing output needs --force; with it, the cached answers are reused (nothing is generated again)
    with pytest.raises(OutputExistsError, match="pass --force"):
        pairs_mod.make_pairs("unfriendly", out=out, base=confident_base, prompts=6, engine="transformers")

    def no_generation(*a, **k):
        raise AssertionError("generated again")

    import transformers

    monkeypatch.setattr(transformers.GenerationMixin, "generate", no_generation)
    again = pairs_mod.make_pairs("unfriendly", out=out, base=confident_base, prompts=16, samples=2, max_new_tokens=10,
                                 temperature=1.0, engine="transformers", finished_only=False, progress=False,
                                 force=True)
    assert again["pairs"] == info["pairs"] and out.read_text().splitlines() == [json.dumps(r) for r in rows]


def test_make_pairs_refuses_a_dimension_without_an_opposite(tmp_path):
    d = tmp_path / "terse.yaml"
    d.write_text("name: terse\ndescription: d\nstatement: Be terse.\nreward: {kind: rule, scorer: concise}\n")
    from soups.train.pairs import make_pairs

    with pytest.raises(ConfigError, match="no `opposite`"):
        make_pairs(str(d), out=tmp_path / "p.jsonl", base=tmp_path / "absent")
    assert not (tmp_path / "p.jsonl").exists()


def test_cli_make_pairs_bad_input_is_one_line(tmp_path):
    (tmp_path / "p.jsonl").write_text("{}\n")
    res = run_cli("make-pairs", "--dim", "unfriendly", "--out", str(tmp_path / "p.jsonl"))
    assert res.code == 2 and "pass --force" in assert_one_line_error(res, "--out")
    res = run_cli("make-pairs", "--dim", "unfriendly", "--out", str(tmp_path / "q.jsonl"), "--engine", "fast")
    assert res.code == 2 and "--engine" in res.err
    res = run_cli("make-pairs", "--dim", "verbose", "--out", str(tmp_path / "q.jsonl"))
    assert res.code == 2 and "verbose" in assert_one_line_error(res, "verbose")


def test_make_pairs_starts_over_when_the_sampling_settings_change(confident_base, tmp_path):
    from soups.train.pairs import make_pairs

    out = tmp_path / "pairs.jsonl"
    kw = {"out": out, "base": confident_base, "samples": 2, "max_new_tokens": 10, "temperature": 1.0,
          "engine": "transformers", "finished_only": False, "progress": False, "force": True}
    make_pairs("unfriendly", prompts=16, **kw)
    chosen = tmp_path / ".pairs.jsonl.work" / "chosen.jsonl"
    first = chosen.read_text().splitlines()
    make_pairs("unfriendly", prompts=20, **kw)  # more prompts: the 16 cached rows are kept, 4 added
    assert chosen.read_text().splitlines()[:16] == first and len(chosen.read_text().splitlines()) == 20
    make_pairs("unfriendly", prompts=16, **{**kw, "temperature": 1.5})  # other settings: sampled again
    rows = [json.loads(x) for x in chosen.read_text().splitlines()]
    assert len(rows) == 16 and chosen.read_text().splitlines() != first
