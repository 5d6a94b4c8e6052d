"""`make eval`'s runner (soups.eval.paper) on the tiny model."""

from __future__ import annotations

import csv

import pytest

from tests.helpers import assert_png, make_lora_expert


@pytest.mark.slow
def test_paper_runner(eval_world, tmp_path, monkeypatch):
    """`make eval`'s runner on the tiny model: 8 combinations x 3 dimensions, verdicts, sweep picture."""
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
    md = paper.run(tmp_path / "out", limit=2, max_new_tokens=4, grid=2, base=str(base)).read_text()
    table = [line for line in md.splitlines() if line.startswith("| elementary") or line.startswith("| expert")]
    assert len(table) == 24 and sum(line.startswith("- ") for line in md.splitlines()) == 16
    assert_png(tmp_path / "out" / "sweep.png")
    with open(tmp_path / "out" / "combos.csv") as f:
        assert len(list(csv.DictReader(f))) == 24
