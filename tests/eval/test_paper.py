"""`make eval`'s runner (soups.eval.paper) on the tiny model, and its sweep verdicts by hand."""

from __future__ import annotations

import csv
import json

import pytest

from tests.helpers import assert_png, make_lora_expert


def _sweep(means, first_weights=(1.0, 0.75, 0.5, 0.25, 0.0)):
    rows = [{"weights": [w, 1 - w], "scores": {"concise": {"mean": m}}} for w, m in zip(first_weights, means)]
    return {"dimensions": [{"name": "concise", "label": "words"}], "rows": rows[::-1]}  # any row order


def test_sweep_check_monotone_and_spread_by_hand():
    from soups.eval.paper import _sweep_check

    pair = ("concise", "informative")
    ok = _sweep_check(_sweep([40, 60, 90, 120, 160]), pair, "ratio", 2.0)
    assert ok["means"] == [40, 60, 90, 120, 160] and ok["monotone"] and ok["spread"] == pytest.approx(4.0)
    assert ok["met"]
    bumpy = _sweep_check(_sweep([40, 90, 60, 120, 160]), pair, "ratio", 2.0)
    assert not bumpy["monotone"] and not bumpy["met"]
    close = _sweep_check(_sweep([0.9, 0.7, 0.5, 0.4, 0.3]), pair, "diff", 0.8)
    assert close["monotone"] and close["spread"] == pytest.approx(0.6) and not close["met"]


def test_a_spread_just_short_of_its_target_does_not_read_as_met():
    from soups.eval.paper import _spread_cell, _sweep_check

    short = _sweep_check(_sweep([0.65, 0.38, 0.22, 0.08, -0.147]), ("friendly", "unfriendly"), "diff", 0.8)
    assert not short["met"] and _spread_cell(short) == "0.797"  # at 2 decimals this printed "0.80 ... missed"
    ratio = _sweep_check(_sweep([19.52, 41.0, 109.23, 162.21, 182.46]), ("concise", "informative"), "ratio", 2.0)
    assert _spread_cell(ratio) == f"{182.46 / 19.52:.3f}x"


@pytest.mark.slow
def test_paper_runner(eval_world, tmp_path, monkeypatch):
    """The whole runner on the tiny model: experts alone, 8 combinations x 3 dimensions, 3 sweeps, fluency."""
    import shutil

    from soups.config import PROJECT_ROOT
    from soups.eval import paper

    base = eval_world[0]
    root = tmp_path / "experts"
    root.mkdir()
    for y in (PROJECT_ROOT / "experts").glob("*.yaml"):
        shutil.copy(y, root / y.name)
    for i, dim in enumerate(paper.EXPERTS):
        make_lora_expert(base, root / dim, alpha=64, seed=10 + i, dimension=dim)
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(root))
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    md = paper.run(out, limit=2, max_new_tokens=4, grid=3, base=str(base), progress=False,
                   engine="transformers").read_text()
    lines = md.splitlines()
    combos = [ln for ln in lines if ln.startswith(("| elementary-", "| expert-"))]
    alone = [ln for ln in lines
             if any(ln.startswith(f"| {d} | ") for d in paper.EXPERTS) and "metric (better)" not in ln]
    assert len(combos) == 24 and len(alone) == 6
    for pair in paper.SWEEPS:
        assert_png(out / f"sweep-{'-'.join(pair)}.png")
    targets = json.loads((out / "targets.json").read_text())
    assert [t["dimension"] for t in targets["experts"]] == paper.EXPERTS
    assert len(targets["sweeps"]) == 3 and targets["combinations"]["cells"] == 24
    assert "| base | " in md and md.count("| system | answer |") == 2  # 2 prompts side by side
    with open(out / "combos.csv") as f:
        assert len(list(csv.DictReader(f))) == 24
