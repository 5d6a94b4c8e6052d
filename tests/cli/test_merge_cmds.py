"""`soups merge` with the default expert set, `soups experts`, `soups inspect`, recipes and --weights-from."""

from __future__ import annotations

import json

import pytest

from soups.config import recipes_dir
from soups.recipe import load_soup
from tests.helpers import assert_one_line_error, make_lora_expert, make_tiny_llama, run_cli


@pytest.fixture(scope="module")
def expert_home(tmp_path_factory, default_base):
    """An experts/ folder with concise, friendly, expert (different ranks) and the default set file."""
    root = tmp_path_factory.mktemp("home")
    base = make_tiny_llama(root / "base", tokenizer_from=default_base)
    experts = root / "experts"
    for i, (name, r) in enumerate([("concise", 2), ("friendly", 4), ("expert", 8)]):
        make_lora_expert(base, experts / name, r=r, seed=i)
        (experts / name / "expert.json").write_text(json.dumps({"dimension": name, "algorithm": "ppo"}))
    (experts / "default.yaml").write_text("experts: [concise, friendly, expert]\n")
    return base, experts


def test_default_set_positional_weights(expert_home, tmp_path, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    res = run_cli("merge", "--base", base, "--weights", "1,0,1", "--format", "adapter", "--out", tmp_path / "model")
    assert res.code == 0, res.err
    rec = json.loads((tmp_path / "model" / "soup.json").read_text())
    assert [(e["name"], e["weight"]) for e in rec["experts"]] == [("concise", 0.5), ("friendly", 0.0), ("expert", 0.5)]
    assert rec["rank"] == 2 + 8  # the zero-weight expert is dropped
    assert "--max-lora-rank 16" in res.out
    res = run_cli("merge", "--base", base, "--weights", "expert=1", "--out", tmp_path / "named")
    assert res.code == 0, res.err
    rec = json.loads((tmp_path / "named" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == [0.0, 0.0, 1.0]


def test_experts_and_inspect(expert_home, tmp_path, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    res = run_cli("experts")
    assert res.code == 0
    for name in ("concise", "friendly", "expert"):
        assert name in res.out
    assert "default set (order of positional --weights): concise, friendly, expert" in res.out
    res = run_cli("inspect", experts / "expert")
    assert res.code == 0 and "rank 8" in res.out and "q_proj" in res.out
    assert run_cli("merge", "--base", base, "--weights", "1,1,0", "--out", tmp_path / "s").code == 0
    res = run_cli("inspect", tmp_path / "s")
    assert res.code == 0 and "full (exact)" in res.out and "concise" in res.out
    assert_one_line_error(run_cli("inspect", tmp_path), "not an expert")


def test_weights_from_user_json(expert_home, tmp_path, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"merge_weights": {"concise": 0.7, "friendly": 0.0, "expert": 0.3}}))
    res = run_cli("merge", "--base", base, "--weights-from", user, "--out", tmp_path / "u")
    assert res.code == 0, res.err
    rec = json.loads((tmp_path / "u" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == pytest.approx([0.7, 0.0, 0.3])
    user.write_text("{}")
    assert_one_line_error(run_cli("merge", "--base", base, "--weights-from", user, "--out", tmp_path / "u2"),
                          "merge_weights")


def test_missing_weights_and_out(tmp_path):
    assert_one_line_error(run_cli("merge", "--out", tmp_path / "x"), "--weights")
    assert_one_line_error(run_cli("merge", "--weights", "1"), "--out")


@pytest.mark.parametrize("path", sorted(recipes_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(path):
    from soups.merge.methods import METHODS

    soup = load_soup(path)
    assert soup.experts and soup.method in METHODS and load_soup(path) == soup


def test_shipped_default_set():
    from soups.recipe import default_expert_names

    assert default_expert_names() == ["concise", "friendly", "expert"]
