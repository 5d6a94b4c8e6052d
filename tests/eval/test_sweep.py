"""`soups sweep` on a tiny model: the weight grid, CSV rows against direct generations, the Pareto plot."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from soups.eval.generate import generate_chat
from tests.eval.conftest import N_TOKENS
from tests.helpers import assert_png, run_cli


def test_sweep_two_experts(eval_world, tmp_path, monkeypatch):
    base, experts, prompts = eval_world
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    out = tmp_path / "sweep"
    res = run_cli("sweep", "--experts", f"{experts['concise']},{experts['friendly']}", "--grid", "3",
                  "--base", base, "--prompts", prompts, "--max-new-tokens", N_TOKENS, "--engine", "transformers",
                  "--out", out)
    assert res.code == 0, res.err
    assert str(out / "sweep.png") in res.out
    assert_png(out / "sweep.png")
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], float(r["w_friendly"])) for r in rows] == [
        ("exact", 0.0), ("exact", 0.5), ("exact", 1.0), ("linear", 0.0), ("linear", 0.5), ("linear", 1.0)]
    assert any(r["pareto"] == "1" for r in rows)
    # the vertex w = (1, 0) is the concise expert alone: its mean word count matches a direct generation
    from soups.eval.scorers import word_count

    texts = prompts.read_text().splitlines()
    alone = generate_chat(experts["concise"], texts, max_new_tokens=N_TOKENS, progress=False)
    assert float(rows[0]["concise_mean"]) == pytest.approx(sum(map(word_count, alone)) / len(alone))
    assert rows[0]["concise_mean"] == rows[3]["concise_mean"]  # linear == exact at a vertex


def test_sweep_three_experts_skips_unequal_linear(eval_world, tmp_path, monkeypatch):
    base, experts, prompts = eval_world
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    from soups.eval.sweep import SweepConfig, grid_points, sweep

    assert len(grid_points(3, 3)) == 6 and all(abs(sum(p) - 1) < 1e-12 for p in grid_points(3, 4))
    res = sweep(SweepConfig(experts=[str(e) for e in experts.values()], out=tmp_path / "s3", grid=3, base=base,
                            prompts=prompts, limit=3, max_new_tokens=6, progress=False, engine="transformers"))
    assert "linear" in res["skipped"]  # ranks 4, 4, 8: the paper's averaging needs equal ranks
    assert {r["method"] for r in res["rows"]} == {"exact"} and len(res["rows"]) == 6
    assert_png(Path(res["png"]))
