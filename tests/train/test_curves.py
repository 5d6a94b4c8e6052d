"""Training curves (soups/train/curves.py): rows kept from metrics.jsonl, one PNG per expert, CLI errors."""

from __future__ import annotations

import json

from soups.train.curves import curve_rows, load_curve, main


def test_curve_from_run_dir_and_expert_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "reward": 0.1 * s, "reward_greedy": 0.05 * s, "kl": 0.01 * s, "eos_rate": 0.5, "lr": 1e-4,
             "step_time_s": 3.0}
            for s in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    name, got, _ = load_curve(run)
    assert name == "run" and [r["step"] for r in got] == [1, 2, 3]
    # only the plotted keys
    assert got[2] == {"step": 3, "reward": 0.3, "reward_greedy": 0.15, "kl": 0.03, "eos_rate": 0.5}
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "expert.json").write_text(json.dumps({"dimension": "toy", "curve": curve_rows(rows)}))
    assert main([str(run), str(exp), "--out", str(tmp_path / "png")]) == 0
    for n in ("run", "toy"):
        png = (tmp_path / "png" / f"{n}-training.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_missing_curve_is_an_error(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "neither expert.json with a curve nor metrics.jsonl" in capsys.readouterr().err
