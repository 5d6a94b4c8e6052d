"""Extending soups from outside the package, each extension one registration or one file (issue 12):

- a merge method (`register(Method(...))`): `soups merge` / recipes / `soups methods` use it, with its parameter;
- a reward kind with its own config (`register_kind(Config, build)`): a dimension file uses it at once;
- a dimension (`rhyme.yaml`, a judge reward, a held-out metric by dotted path to this module): it trains,
  `soups eval` measures it, `soups ask` asks about it;
- scorers: a rule scorer by dotted path, a held-out metric by `register_metric`.

References are computed here: the scaled merge against the float64 merge reference, rewards and
metrics by hand.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file

from soups.merge.methods import METHODS, Factors, Method, get_method, register
from soups.rewards import _KINDS, RewardConfig, RewardFn, get_reward, register_kind
from tests.helpers import (
    FakeOpenAI,
    assert_one_line_error,
    brevity_judge,
    brevity_score,
    make_lora_expert,
    make_tiny_llama,
    read_jsonl,
    run_cli,
)
from tests.merge.reference import exact_reference, expert_deltas


# ----------------------------------------------------------------------------- a merge method
class ScaledParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factor: float = Field(..., gt=0, description="multiplies the exact soup's delta")


def _scaled(parts, params: ScaledParams) -> Factors:
    """dW = factor * sum_i w_i s_i B_i A_i: the exact soup's factors with A scaled (the adapter keeps scale 1)."""
    f = get_method("exact").factors(parts, None)
    return Factors(f.A * params.factor, f.B, f.scale)


SCALED = Method("scaled", "the exact soup's delta times --param factor", _scaled, label="scaled exact soup",
                params=ScaledParams, rank=lambda adapters, params, module=None: sum(a.max_rank for a in adapters))


# ----------------------------------------------------------------------------- a reward kind
class KeywordConfig(RewardConfig):
    kind: Literal["keyword"] = "keyword"
    words: list[str] = Field(..., min_length=1, description="the words the reward looks for")


class KeywordReward(RewardFn):
    kind = "keyword"

    def score(self, completions, prompts):
        return [sum(w.strip(".,!?").lower() in self.config.words for w in c.split()) / max(1, len(c.split()))
                for c in completions]


def build_keyword(config: KeywordConfig, dim) -> KeywordReward:
    return KeywordReward(dim.name, config)


# ----------------------------------------------------------------------------- scorers, by dotted path
def rhyme_rate(text: str) -> float:
    """Share of consecutive sentences whose last words end in the same two letters."""
    sentences = [s.lower() for s in re.split(r"[.!?\n]+", text) if re.search(r"[a-z]", s.lower())]
    ends = [re.findall(r"[a-z]+", s)[-1] for s in sentences]
    return sum(a[-2:] == b[-2:] for a, b in zip(ends, ends[1:])) / max(1, len(ends) - 1)


def shout_score(text: str, prompt: str | None = None, weight: float = 1.0) -> float:
    """A rule scorer: the share of upper-case letters, times `weight` (a param)."""
    letters = [c for c in text if c.isalpha()]
    return weight * sum(c.isupper() for c in letters) / max(1, len(letters))


@pytest.fixture
def registered():
    """The new method, reward kind and metric, registered for one test and removed after it."""
    from soups.eval.scorers import METRICS, Metric, register_metric

    register(SCALED)
    register_kind(KeywordConfig, build_keyword)
    register_metric(Metric("exclamations", "exclamation marks", lambda t: float(t.count("!"))))
    yield
    METHODS.pop("scaled")
    _KINDS.pop("keyword")
    METRICS.pop("exclamations")


@pytest.fixture(scope="module")
def world(tmp_path_factory, default_base):
    root = tmp_path_factory.mktemp("ext")
    base = make_tiny_llama(root / "base", tokenizer_from=default_base, seed=3)
    return base, [make_lora_expert(base, root / f"e{i}", r=4, seed=i) for i in (1, 2)]


def test_a_new_merge_method(registered, world, tmp_path):
    base, (e1, e2) = world
    listed = run_cli("methods").out
    assert "scaled" in listed and "factor: multiplies the exact soup's delta" in listed
    res = run_cli("merge", "--base", base, "--experts", f"{e1},{e2}", "--weights", "1,3", "--method", "scaled",
                  "--param", "factor=0.5", "--out", tmp_path / "full")
    assert res.code == 0, res.err
    out = load_file(str(tmp_path / "full" / "model.safetensors"))
    ref = exact_reference(load_file(str(base / "model.safetensors")), [expert_deltas(e1), expert_deltas(e2)],
                          [0.5 * 0.25, 0.5 * 0.75])
    for name, want in ref.items():
        assert float((out[name].double() - want).abs().max()) < 1e-5, name
    assert "factor: 0.5" in (tmp_path / "full" / "README.md").read_text()  # the card's recipe carries the parameter
    assert_one_line_error(run_cli("merge", "--base", base, "--experts", f"{e1},{e2}", "--weights", "1,3",
                                  "--method", "scaled", "--param", "factor=0", "--out", tmp_path / "x"),
                          "--param factor: Input should be greater than 0")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {base}\nmethod: scaled\nfactor: 0.5\nformat: adapter\nexperts:\n  {e1}: 1\n  {e2}: 3\n")
    res = run_cli("merge", "--recipe", recipe, "--out", tmp_path / "adapter")
    assert res.code == 0 and "--max-lora-rank 8" in res.out, res.err
    peft_delta = _peft_delta(base, tmp_path / "adapter", "model.layers.0.self_attn.q_proj")
    ref_delta = ref["model.layers.0.self_attn.q_proj.weight"] - load_file(str(base / "model.safetensors"))[
        "model.layers.0.self_attn.q_proj.weight"].double()
    assert float((peft_delta - ref_delta).abs().max()) < 1e-5


def _peft_delta(base, adapter, module: str) -> torch.Tensor:
    """The delta PEFT itself applies for `module` (merged weight minus base weight), in float64."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    before = model.get_submodule(module).weight.detach().double().clone()
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    return merged.get_submodule(module).weight.detach().double() - before


def test_a_new_reward_kind_with_its_own_fields(registered, tmp_path, monkeypatch):
    from soups.dimensions import load_dimension

    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "sunny.yaml").write_text("name: sunny\ndescription: d\nstatement: Talk about the sun.\n"
                                         "reward: {kind: keyword, words: [sun, sunny]}\n")
    fn = get_reward(load_dimension("sunny"))
    assert fn(["The sun is out, sunny day!", "Rain."]) == [2 / 6, 0.0]
    res = run_cli("dims", "--json", "--score", "Sun sun rain")
    assert res.code == 0 and json.loads(res.out) == {"sunny": pytest.approx(2 / 3)}
    (tmp_path / "sunny.yaml").write_text("name: sunny\ndescription: d\nstatement: s\n"
                                         "reward: {kind: keyword, wordz: [a]}\n")
    assert_one_line_error(run_cli("dims"), "sunny.yaml:4: field `reward.words`: Field required",
                          "field `reward.wordz`: Extra inputs are not permitted")


def test_scorers_by_dotted_path_and_by_registration(registered, tmp_path, monkeypatch):
    from soups.dimensions import load_dimension
    from soups.eval.scorers import scorer_for

    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "shout.yaml").write_text(
        "name: shout\ndescription: d\nstatement: Shout.\n"
        "reward: {kind: rule, scorer: 'tests.test_extensions:shout_score', params: {weight: 0.5}}\n"
        "heldout: {metric: exclamations, better: higher}\n")
    assert get_reward(load_dimension("shout"))(["HELLO there", ""]) == [0.5 * 5 / 10, 0.0]
    assert scorer_for("shout")(["Hey!!", "no"]) == [2.0, 0.0] and scorer_for("shout").wants == "higher"


RHYME = """\
name: rhyme
description: Answers that rhyme.
statement: Generate a response that rhymes.
reward: {{kind: judge, url: '{url}', model: fake-judge, backoff: 0.01}}
heldout: {{metric: 'tests.test_extensions:rhyme_rate', better: higher}}
"""


@pytest.fixture
def rhyme(tmp_path, monkeypatch):
    """experts/rhyme.yaml (a judge reward: a fake OpenAI-compatible judge) beside the shipped concise and
    informative (its opposite)."""
    from soups.config import PROJECT_ROOT

    experts = tmp_path / "experts"
    experts.mkdir()
    for name in ("concise", "informative"):
        (experts / f"{name}.yaml").write_text((PROJECT_ROOT / "experts" / f"{name}.yaml").read_text())
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    with FakeOpenAI(brevity_judge) as judge:
        (experts / "rhyme.yaml").write_text(RHYME.format(url=judge.url))
        yield experts, judge


def _asked_rhyme(judge) -> int:
    return sum("Generate a response that rhymes." in b["messages"][-1]["content"] for b in judge.bodies)


def test_a_new_dimension_is_listed_scored_and_asked_about(rhyme, tmp_path):
    experts, judge = rhyme
    res = run_cli("dims", "--json", "--score", "Short answer.")
    assert res.code == 0
    scores = json.loads(res.out)
    assert scores["rhyme"] == pytest.approx((brevity_score("Short answer.") - 1) / 9)
    answers, out = tmp_path / "a.jsonl", tmp_path / "user.json"
    res = run_cli("ask", "--dims", "rhyme,concise", "--rounds", "2", "--answers", answers, "--out", out,
                  input="a\nb\n")
    assert res.code == 0, res.err
    profile = json.loads(out.read_text())
    assert profile["dimensions"] == ["rhyme", "concise"] and profile["n_answers"] == 2
    assert all(set(r["phi_a"]) == {"rhyme", "concise"} for r in read_jsonl(answers))
    assert _asked_rhyme(judge) >= 100  # every pool response was scored by the judge with rhyme's statement


def test_a_new_dimension_is_evaluated(rhyme, tiny_base, tmp_path):
    experts, judge = rhyme
    e_rhyme = make_lora_expert(tiny_base, tmp_path / "rhyme-e", seed=5, alpha=64, dimension="rhyme")
    e_concise = make_lora_expert(tiny_base, tmp_path / "concise-e", seed=6, alpha=64, dimension="concise")
    prompts = tmp_path / "p.txt"
    prompts.write_text("Why is the sky blue?\nWrite a poem about rain.\n")
    res = run_cli("eval", "--experts", f"{e_rhyme},{e_concise}", "--weights", "1,1", "--base", tiny_base,
                  "--prompts", prompts, "--max-new-tokens", 6, "--baselines", "base,prompted",
                  "--engine", "transformers", "--out", tmp_path / "ev")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "ev" / "results.json").read_text())
    dims = {d["name"]: d for d in report["dimensions"]}
    assert dims["rhyme"]["metric"] == "tests.test_extensions:rhyme_rate" and dims["rhyme"]["wants"] == "higher"
    assert "Generate a response that rhymes." in report["systems"][2]["statements"]  # the prompted base's
    for row in read_jsonl(tmp_path / "ev" / "responses.jsonl"):
        assert row["scores"]["rhyme"] == rhyme_rate(row["response"])


@pytest.mark.slow
def test_a_new_dimension_trains(rhyme, tiny_base, tmp_path):
    from soups.config import PROJECT_ROOT
    from soups.train.expert import train_expert

    experts, judge = rhyme
    fast = {"steps": 1, "max_new_tokens": 6, "batch_size": 4, "eval_prompts": 4, "ppo_epochs": 1, "save_every": 1,
            "warm_start": False, "autocast": "off"}
    info = train_expert("rhyme", base=tiny_base, prompts=[f"Say something about {w}." for w in "abcdefgh"],
                        heldout=["Why?", "How?", "What?", "Who?"], out=tmp_path / "expert", run_dir=tmp_path / "run",
                        config=PROJECT_ROOT / "experts" / "configs" / "ppo.yaml", preset="cpu", overrides=fast,
                        progress=False)
    meta = json.loads((tmp_path / "expert" / "expert.json").read_text())
    assert meta["dimension"] == info["dimension"] == "rhyme"
    assert meta["statement"] == "Generate a response that rhymes."
    for when in ("before", "after"):
        assert meta["reward"][when]["n"] == 4 and 0.0 <= meta["reward"][when]["mean"] <= 1.0
    assert _asked_rhyme(judge) == len(judge.requests) >= 4  # the rewards came from the judge, asked rhyme's statement
