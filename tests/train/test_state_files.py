"""Training state files survive SIGKILL: `soups train-expert` killed mid-run leaves valid run.json / before.json,
and a torn last line of metrics.jsonl (a kill during its append) is dropped with a warning on `--resume`."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from soups.train.progress import metric_lines, read_metrics

ROOT = Path(__file__).resolve().parents[2]
FAST = {"max_new_tokens": 8, "batch_size": 4, "eval_prompts": 8, "ppo_epochs": 1, "save_every": 2,
        "learning_rate": 1e-2, "kl_coef": 0.0, "warm_start": False, "autocast": "off"}


def test_torn_and_malformed_metric_lines_are_dropped(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "reward": 0.6}\n\n{"step": 3, "rew')
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert "metrics.jsonl:4: dropping a torn" in caplog.text
    path.write_text('{"step": 1}\n[1, 2]\n{"no step": 1}\n{"step": 2}\n')
    assert [line for line, _ in metric_lines(path)] == ['{"step": 1}', '{"step": 2}']
    assert read_metrics(tmp_path / "absent.jsonl") == []


def test_sigkill_mid_training_then_resume(confident_base, tmp_path, caplog):
    from soups.train.expert import train_expert

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Tell me something about topic number {i}.\n" for i in range(48)))
    out, run = tmp_path / "expert", tmp_path / "run"
    cmd = [sys.executable, "-m", "soups", "train-expert", "--dim", "concise", "--base", str(confident_base),
           "--prompts", str(prompts), "--out", str(out), "--run-dir", str(run), "--steps", "6", "--preset", "cpu",
           "--quiet", *[f"--set={k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in FAST.items()]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SOUPS_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:
        if list(run.glob("checkpoints/step-*/step.json")) and len(read_metrics(metrics)) >= 2:  # mid-run, resumable
            break
        time.sleep(0.1)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for state in ("run.json", "before.json"):  # written atomically: whole, whatever the moment of the kill
        json.loads((run / state).read_text())
    assert not out.exists()  # no partial expert
    with open(metrics, "a") as fh:  # what a kill during the append of a step's line leaves
        fh.write('{"step": 9, "reward": 0.')
    with caplog.at_level(logging.WARNING):
        info = train_expert("concise", base=confident_base, prompts=str(prompts), out=out, run_dir=run,
                            preset="cpu", overrides={**FAST, "steps": 6}, resume=True, progress=False)
    assert "dropping a torn or malformed line" in caplog.text
    assert [r["step"] for r in read_metrics(metrics)] == [1, 2, 3, 4, 5, 6] and info["steps_done"] == 6
    assert metrics.read_text().endswith("\n") and all(json.loads(ln) for ln in metrics.read_text().splitlines())
    assert (out / "adapter_model.safetensors").is_file()
