"""`soups ask` / `soups fit-weights` end to end: scripted stdin, answer files, resume, errors with file:line.

Features are the real rule rewards on the shipped hand-written pool (offline, about a second).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from soups.errors import AdapterError, DataError, OutputExistsError
from soups.prefs.answers import read_answers
from soups.prefs.ask import AskConfig, run_ask
from soups.prefs.pool import DEFAULT_POOL, build_pool, candidate_pairs, load_pool
from tests.helpers import assert_one_line_error, make_lora_expert, run_cli

DIMS = ["elementary", "expert", "concise", "informative", "friendly", "unfriendly"]


@pytest.fixture(scope="module")
def pool_phi():
    from soups.prefs.features import pool_phi

    pool = load_pool()
    phi, _ = pool_phi(pool, DIMS)
    return pool, phi


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_shipped_pool_is_valid_and_varied():
    pool = load_pool()
    prompts = {r["prompt"] for r in pool}
    assert len(prompts) >= 30 and len(pool) >= 4 * 30
    assert all(r["source"].startswith("hand-written:") for r in pool)
    pairs, groups = candidate_pairs(pool)
    assert len(pairs) == 6 * len(prompts) and groups.max() + 1 == len(prompts)


def test_rule_rewards_separate_the_pool_styles(pool_phi):
    """The hand-written styles (in `source`) move the matching phi column the right way."""
    pool, phi = pool_phi
    for k, dim in enumerate(DIMS):
        has = np.array([dim in r["source"].split(":")[1].split(",") for r in pool])
        assert phi[has, k].mean() > phi[~has, k].mean() + 0.5, dim


def test_ask_scripted_stdin_writes_expected_answer_file(tmp_path, pool_phi):
    pool, phi = pool_phi
    answers, out = tmp_path / "answers.jsonl", tmp_path / "user.json"
    script = "a\nb\nnope\nt\ns\nb\n"  # 'nope' is re-asked; the skip does not count as a round
    res = run_cli("ask", "--rounds", "4", "--answers", answers, "--out", out, "--dims", ",".join(DIMS), input=script)
    assert res.code == 0, res.err
    recs = _lines(answers)
    assert [r["choice"] for r in recs] == ["a", "b", "tie", "skip", "b"]
    assert "'nope' is not an answer" in res.out
    # every question on a different prompt, texts and phi match the pool
    assert len({r["prompt"] for r in recs}) == 5
    index = {r["response"]: i for i, r in enumerate(pool)}
    for r in recs:
        i, j = r["pair"]
        assert pool[i]["response"] == r["a"] and pool[j]["response"] == r["b"] and index[r["a"]] == i
        np.testing.assert_allclose([r["phi_a"][d] for d in DIMS], phi[i], atol=1e-5)
    # first question: under the N(0, I) prior the EIG is largest for the largest ||phi_i - phi_j||
    pairs, _ = candidate_pairs(pool)
    dist = np.linalg.norm(phi[pairs[:, 0]] - phi[pairs[:, 1]], axis=1)
    assert sorted(recs[0]["pair"]) == list(pairs[int(np.argmax(dist))])
    profile = json.loads(out.read_text())
    assert profile["dimensions"] == DIMS and profile["n_answers"] == 4
    assert len(profile["w"]) == 6 and all(lo <= w <= hi for w, (lo, hi) in zip(profile["w"], profile["w_ci95"]))
    mw = profile["merge_weights"]
    assert set(mw) == set(DIMS) and min(mw.values()) >= 0 and sum(mw.values()) == pytest.approx(1, abs=1e-5)
    assert profile["merge_command"].startswith("soups merge --experts ")
    assert "soups merge" in res.out and "95%" in res.out
    # fit-weights on the same file reproduces the profile (features taken from the records)
    res2 = run_cli("fit-weights", str(answers), "--out", str(tmp_path / "again.json"))
    assert res2.code == 0, res2.err
    assert json.loads((tmp_path / "again.json").read_text())["w"] == profile["w"]


def test_a_user_who_likes_short_answers_gets_concise(tmp_path):
    """Library API with a scripted reader: always choose the shorter response."""
    shown: list[str] = []

    def read(_prompt: str) -> str:
        text = shown[-1]
        a = text.split("--- A ---\n", 1)[1].split("\n\n--- B ---\n")[0]
        b = text.split("--- B ---\n", 1)[1]
        return "a" if len(a) < len(b) else "b"

    cfg = AskConfig(rounds=10, answers=tmp_path / "a.jsonl", out=tmp_path / "u.json", dims=DIMS, width=10_000)
    profile = run_ask(cfg, read=read, echo=shown.append)
    mw = profile["merge_weights"]
    assert mw["concise"] > 0.3 and mw["informative"] == 0.0
    w = dict(zip(profile["dimensions"], profile["w"]))
    assert w["concise"] - w["informative"] > 0.5


def test_resume_continues_and_refuses_to_clobber(tmp_path):
    answers, out = tmp_path / "ans.jsonl", tmp_path / "user.json"
    base = ["ask", "--rounds", "3", "--answers", str(answers), "--out", str(out), "--dims", "concise,informative"]
    res = run_cli(*base, input="a\nq\n")
    assert res.code == 0 and len(_lines(answers)) == 1 and out.is_file()
    with pytest.raises(OutputExistsError, match="--answers .*--resume"):
        run_ask(AskConfig(rounds=3, answers=answers, out=out, dims=["concise", "informative"]), read=input)
    with open(answers, "a") as fh:  # a write cut short by a kill: no newline, not JSON
        fh.write('{"prompt": "Why is')
    res = run_cli(*base, "--resume", input="b\nb\n")
    assert res.code == 0, res.err
    recs = _lines(answers)
    assert [r["choice"] for r in recs] == ["a", "b", "b"]
    assert len({tuple(sorted(r["pair"])) for r in recs}) == 3  # no question asked twice
    assert json.loads(out.read_text())["n_answers"] == 3
    res = run_cli(*base, "--force", input="a\na\na\n")  # start over
    assert res.code == 0 and len(_lines(answers)) == 3


def test_ask_subprocess_piped_stdin_and_ctrl_d(tmp_path):
    """A real process reading a pipe: stdin ends after 2 answers, the fit uses those 2."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "soups", "ask", "--rounds", "10", "--answers", "a.jsonl", "--out", "u.json"]
    proc = subprocess.run(cmd, input="b\na\n", text=True, capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [r["choice"] for r in _lines(tmp_path / "a.jsonl")] == ["b", "a"]
    assert json.loads((tmp_path / "u.json").read_text())["n_answers"] == 2
    proc = subprocess.run(cmd, input="a\n", text=True, capture_output=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--resume" in proc.stderr


@pytest.mark.parametrize(
    ("content", "line", "match"),
    [
        ('{"prompt": "p", "a": "x", "b": "y", "choice": "a"}\n\n{"prompt": "p", "a": "x"', 3, "invalid JSON"),
        ('{"prompt": "p", "a": "x", "b": "y", "choice": "a"}\n{"prompt": "p", "a": "x", "b": "y", "choice": "A!"}',
         2, "field `choice`"),
        ('{"prompt": "p", "b": "y", "choice": "b"}', 1, "field `a`"),
        ('["p", "x", "y", "a"]', 1, "expected a JSON object"),
        ('{"prompt": "p", "a": "x", "b": "y", "choice": "a", "phi_a": {"concise": "high"}}', 1, "phi_a"),
        ('{"prompt": "p", "a": "x", "b": "y", "choice": "a", "pair": [1]}', 1, "field `pair`"),
    ],
)
def test_bad_answer_file_names_file_and_line(tmp_path, content, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        read_answers(path)
    assert f"{path}:{line}:" in str(err.value)


def test_fit_weights_cli_errors_and_scoring(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "a": "x", "b": "y", "choice": "maybe"}\n')
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "soups", "fit-weights", str(bad), "--out", str(tmp_path / "u.json")],
                          text=True, capture_output=True, env=env, timeout=120)
    assert proc.returncode == 2 and f"{bad}:1:" in proc.stderr and "choice" in proc.stderr
    # plain answers without phi: scored with the rule rewards; choosing the short one each time -> concise
    pool = load_pool()
    by_prompt: dict[str, list[str]] = {}
    for r in pool:
        by_prompt.setdefault(r["prompt"], []).append(r["response"])
    plain = tmp_path / "plain.jsonl"
    with open(plain, "w") as fh:
        for p, rs in list(by_prompt.items())[:12]:
            long, short = max(rs, key=len), min(rs, key=len)
            fh.write(json.dumps({"prompt": p, "a": long, "b": short, "choice": "b"}) + "\n")
    out = tmp_path / "u.json"
    res = run_cli("fit-weights", str(plain), "--out", str(out), "--dims", "concise,informative")
    assert res.code == 0, res.err
    prof = json.loads(out.read_text())
    assert prof["merge_weights"] == {"concise": 1.0, "informative": 0.0} and prof["n_answers"] == 12
    assert_one_line_error(run_cli("fit-weights", plain, "--out", out), "--force")


def test_fit_population_cli(tmp_path):
    files = []
    for u, choice in enumerate(["a", "b", "a"]):
        f = tmp_path / f"u{u}.jsonl"
        recs = [{"prompt": "p", "a": "x", "b": "y", "choice": choice,
                 "phi_a": {"concise": 1.0, "friendly": float(k % 2)}, "phi_b": {"concise": -1.0, "friendly": 0.0}}
                for k in range(6)]
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))
        files.append(str(f))
    res = run_cli("fit-population", *files, "--out", str(tmp_path / "pop.json"))
    assert res.code == 0, res.err
    pop = json.loads((tmp_path / "pop.json").read_text())
    assert pop["dimensions"] == ["concise", "friendly"] and pop["n_users"] == 3
    assert pop["mean"][0] > 0  # two of three users prefer the high-concise response


def test_build_pool_from_a_generate_callable(tmp_path):
    """build_pool plumbing: one response per prompt per soup, sources named, written as a loadable pool."""
    calls = []

    def generate(prompts, weights):  # deterministic stand-in for soups.eval.generate (needs a model)
        calls.append(weights)
        return [f"{p} -> {'short' if weights.get('concise') else 'a much longer answer ' * 3}" for p in prompts]

    out = tmp_path / "pool.jsonl"
    pool = build_pool(["q1", "q2"], generate, {"c": {"concise": 1.0}, "i": {"informative": 1.0}}, out=out)
    assert calls == [{"concise": 1.0}, {"informative": 1.0}]
    assert [r["prompt"] for r in pool] == ["q1", "q1", "q2", "q2"]
    assert pool[0]["source"] == "soup:c[concise=1]" and load_pool(out) == pool
    with pytest.raises(OutputExistsError):
        build_pool(["q1"], generate, {"c": {"concise": 1.0}, "i": {"informative": 1.0}}, out=out)
    with pytest.raises(DataError, match="two soups"):
        build_pool(["q1"], generate, {"c": {"concise": 1.0}})
    bad = tmp_path / "badpool.jsonl"
    bad.write_text('{"prompt": "q", "response": "", "source": "x"}\n')
    with pytest.raises(DataError, match=r"badpool\.jsonl:1: field `response`"):
        load_pool(bad)
    assert DEFAULT_POOL.is_file()


@pytest.mark.slow
def test_pool_from_real_soups_of_tiny_experts(tmp_path, tiny_base):
    """soup_generator: merge tiny LoRA experts into adapter soups, generate with transformers, build a pool."""
    from soups.prefs.poolgen import default_soups, find_experts, soup_generator

    for k, name in enumerate(["concise", "friendly"]):
        make_lora_expert(tiny_base, tmp_path / "experts" / name, seed=k + 1, alpha=4000,  # strong: outputs differ
                         targets=("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"))
    experts = find_experts(tmp_path / "experts")
    assert list(experts) == ["concise", "friendly"]
    with pytest.raises(AdapterError, match="no trained expert for expert"):
        find_experts(tmp_path / "experts", ["concise", "expert"])
    gen = soup_generator(experts, tmp_path / "work", base=tiny_base, max_new_tokens=6, progress=False,
                         engine="transformers")
    soups = default_soups(experts)
    assert soups == {"concise": {"concise": 1.0}, "friendly": {"friendly": 1.0}, "base": {}}
    pool = build_pool(["Why is the sky blue?", "What is DNA?"], gen, soups, out=tmp_path / "pool.jsonl")
    assert {r["source"].split("[")[0] for r in pool} <= {"soup:concise", "soup:friendly", "soup:base"}
    assert all(r["response"].strip() for r in pool) and len(pool) >= 4
    assert (tmp_path / "work" / "soup-concise1" / "adapter_config.json").is_file()
    assert load_pool(tmp_path / "pool.jsonl") == pool
