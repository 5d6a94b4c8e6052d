"""`soups merge` with the default expert set, `soups experts`, `soups inspect`, recipes and --weights-from."""

from __future__ import annotations

import json

import pytest

from soups.cli import main
from soups.config import recipes_dir
from soups.merge.recipe import load_recipe
from tests.tiny import make_lora_expert, make_tiny_llama


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


def run(args, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_default_set_positional_weights(expert_home, tmp_path, capsys, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    code, out, err = run(
        ["merge", "--base", base, "--weights", "1,0,1", "--format", "adapter", "--out", tmp_path / "model"], capsys
    )
    assert code == 0, err
    rec = json.loads((tmp_path / "model" / "soup.json").read_text())
    assert [(e["name"], e["weight"]) for e in rec["experts"]] == [("concise", 0.5), ("friendly", 0.0), ("expert", 0.5)]
    assert rec["rank"] == 2 + 8  # the zero-weight expert is dropped
    assert "--max-lora-rank 16" in out
    code, out, err = run(["merge", "--base", base, "--weights", "expert=1", "--out", tmp_path / "named"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "named" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == [0.0, 0.0, 1.0]


def test_experts_and_inspect(expert_home, tmp_path, capsys, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    code, out, _ = run(["experts"], capsys)
    assert code == 0
    for name in ("concise", "friendly", "expert"):
        assert name in out
    assert "default set (order of positional --weights): concise, friendly, expert" in out
    code, out, _ = run(["inspect", experts / "expert"], capsys)
    assert code == 0 and "rank 8" in out and "q_proj" in out
    run(["merge", "--base", base, "--weights", "1,1,0", "--out", tmp_path / "s"], capsys)
    code, out, _ = run(["inspect", tmp_path / "s"], capsys)
    assert code == 0 and "full (exact)" in out and "concise" in out
    code, _, err = run(["inspect", tmp_path], capsys)
    assert code == 2 and "not an expert" in err


def test_weights_from_user_json(expert_home, tmp_path, capsys, monkeypatch):
    base, experts = expert_home
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(experts))
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"merge_weights": {"concise": 0.7, "friendly": 0.0, "expert": 0.3}}))
    code, _, err = run(["merge", "--base", base, "--weights-from", user, "--out", tmp_path / "u"], capsys)
    assert code == 0, err
    rec = json.loads((tmp_path / "u" / "soup.json").read_text())
    assert [e["weight"] for e in rec["experts"]] == pytest.approx([0.7, 0.0, 0.3])
    user.write_text("{}")
    code, _, err = run(["merge", "--base", base, "--weights-from", user, "--out", tmp_path / "u2"], capsys)
    assert code == 2 and "merge_weights" in err


def test_missing_weights_and_out(capsys, tmp_path):
    code, _, err = run(["merge", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--weights" in err
    code, _, err = run(["merge", "--weights", "1"], capsys)
    assert code == 2 and "--out" in err


@pytest.mark.parametrize("path", sorted(recipes_dir().glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_load(path):
    recipe = load_recipe(path)
    assert recipe.experts and recipe.method in ("exact", "linear", "svd")


def test_shipped_default_set():
    from soups.merge.engine import default_expert_names

    assert default_expert_names() == ["concise", "friendly", "expert"]
