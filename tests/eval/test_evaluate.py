"""`soups eval` end to end on a tiny model: systems, scores and win rates against hand counts, CSV, cache, judge."""

from __future__ import annotations

import csv
import json

import pytest

from soups.eval.generate import generate_chat
from tests.eval.conftest import N_PROMPTS, N_TOKENS
from tests.helpers import FakeOpenAI, assert_one_line_error, brevity_judge, read_jsonl, run_cli


def test_eval_end_to_end(eval_world, tmp_path, monkeypatch):
    from soups.dimensions import load_dimension

    base, experts, prompts = eval_world
    out = tmp_path / "eval"
    args = ["eval", "--experts", f"{experts['concise']},{experts['friendly']}", "--weights", "1,1",
            "--base", str(base), "--prompts", str(prompts), "--max-new-tokens", str(N_TOKENS),
            "--engine", "transformers", "--out", str(out)]
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))  # fresh response cache
    done = run_cli(*args)
    assert done.code == 0, done.err
    screen = done.out
    assert "Held-out scores" in screen and "win rate" in screen.lower() and "soup vs prompted" in screen
    assert "soup+statements vs prompted" in screen
    res = json.loads((out / "results.json").read_text())
    systems = ["soup", "soup+statements", "linear", "base", "prompted", "expert:concise", "expert:friendly"]
    assert list(res["scores"]) == systems and list(res["win_rates"]) == systems[2:]
    assert list(res["win_rates_with_statements"]) == ["soup", *systems[2:]]
    assert [d["name"] for d in res["dimensions"]] == ["concise", "friendly"]

    rows = read_jsonl(out / "responses.jsonl")
    by = {s: [r for r in rows if r["system"] == s] for s in systems}
    assert all(len(v) == N_PROMPTS for v in by.values())
    texts = [p for p in prompts.read_text().splitlines()]
    # the systems are what they claim: reference generations through the plain API
    def ref(model, prompts=texts, **kw):
        return generate_chat(model, prompts, max_new_tokens=N_TOKENS, progress=False, **kw)
    assert [r["response"] for r in by["expert:concise"]] == ref(experts["concise"])
    assert [r["response"] for r in by["base"]] == ref(base)
    # with statements: the paper's eval.py appends them to the user message, "{instruction} {s1} {s2}"
    said = [load_dimension(d).statement for d in ("concise", "friendly")]
    with_said = [f"{t} {said[0]} {said[1]}" for t in texts]
    assert [r["response"] for r in by["prompted"]] == ref(base, prompts=with_said)
    soup_dir = out / "soups" / "soup"
    assert [r["response"] for r in by["soup+statements"]] == ref(soup_dir, prompts=with_said)
    assert [r["response"] for r in by["soup"]] == ref(soup_dir)
    assert by["soup+statements"] != by["soup"]  # the statements change what the soup answers
    info = {s["name"]: s for s in res["systems"]}
    assert info["prompted"]["statements"] == info["soup+statements"]["statements"] == said
    assert info["soup"]["statements"] == [] and info["prompted"]["system_prompt"] is None

    # scores and win rates agree with a hand count over the per-prompt scores
    for b in systems[2:]:
        soup_w, base_w = [r["scores"]["concise"] for r in by["soup"]], [r["scores"]["concise"] for r in by[b]]
        wins = sum(s < o for s, o in zip(soup_w, base_w))  # concise wants fewer words
        ties = sum(s == o for s, o in zip(soup_w, base_w))
        wr = res["win_rates"][b]["concise"]
        assert (wr["wins"], wr["ties"]) == (wins, ties) and wr["mean"] == pytest.approx((wins + ties / 2) / N_PROMPTS)
        assert wr["lo"] <= wr["mean"] <= wr["hi"]
        with_s = [r["scores"]["concise"] for r in by["soup+statements"]]
        wr = res["win_rates_with_statements"][b]["concise"]
        assert wr["wins"] == sum(s < o for s, o in zip(with_s, base_w))
    with open(out / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(systems) * 2 and {r["system"] for r in table} == set(systems)
    soup_mean = sum(r["scores"]["friendly"] for r in by["soup"]) / N_PROMPTS
    assert float(next(r for r in table if r["system"] == "soup" and r["dimension"] == "friendly")["mean"]) == \
        pytest.approx(soup_mean)
    assert (out / "soups" / "soup" / "adapter_config.json").is_file()

    # a second run reuses the cached responses: generation must not be called
    from soups.eval import generate

    def boom(*a, **k):
        raise AssertionError("generated despite the cache")

    monkeypatch.setattr(generate.ChatGenerator, "generate", boom)
    assert run_cli(*args, "--force").code == 0
    assert json.loads((out / "results.json").read_text())["scores"] == res["scores"]


def test_eval_bad_input(eval_world, tmp_path):
    base, experts, prompts = eval_world
    common = ["--base", base, "--prompts", prompts, "--out", tmp_path / "x"]
    for args, needle in [
        (["--experts", experts["concise"], "--weights", "1,1"], "--weights"),
        (["--experts", experts["concise"], "--weights", "1", "--baselines", "nope"], "--baselines"),
        (["--experts", experts["concise"], "--weights", "0"], "zero"),
    ]:
        assert_one_line_error(run_cli("eval", *args, *common), needle)
    assert not (tmp_path / "x").exists()


def test_eval_with_judge(eval_world, tmp_path, monkeypatch):
    """`soups eval --judge-url`: pairwise verdicts per dimension in both orders, in results.json and win_rates.csv."""
    from soups.eval.evaluate import EvalConfig, evaluate

    base, experts, prompts = eval_world
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    with FakeOpenAI(brevity_judge) as judge:
        rep = evaluate(EvalConfig(weights=[1.0, 1.0], experts=[str(experts["concise"]), str(experts["friendly"])],
                                  out=tmp_path / "ev", base=base, prompts=prompts, baselines=("base",),
                                  max_new_tokens=N_TOKENS, judge_url=judge.url, judge_model="fake", progress=False,
                                  engine="transformers"))
    rows = read_jsonl(tmp_path / "ev" / "responses.jsonl")
    soup = [r["response"] for r in rows if r["system"] == "soup"]
    other = [r["response"] for r in rows if r["system"] == "base"]
    words = [(len(s.split()), len(o.split())) for s, o in zip(soup, other)]  # the judge prefers fewer words
    wins, losses = sum(s < o for s, o in words), sum(s > o for s, o in words)
    for dim in ("concise", "friendly"):
        j = rep["judge"]["win_rates"]["base"][dim]
        assert (j["wins"], j["losses"], j["ties"]) == (wins, losses, N_PROMPTS - wins - losses)
    with open(tmp_path / "ev" / "win_rates.csv") as f:
        assert sum(r["judge"] == "judge" for r in csv.DictReader(f)) == 2
