"""`make demo` end to end: the default base, the shipped experts merged by 1,1,0, base vs soup answers (and,
with --statements, the soup answering with its dimensions' preference statements appended)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_runs_on_shipped_experts(tmp_path, default_base):
    proc = subprocess.run(
        [sys.executable, "-m", "soups.demo", "--out", str(tmp_path / "demo"), "--max-new-tokens", "24",
         "--statements"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**__import__("os").environ, "COLUMNS": "120"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Why is the sky blue?" in proc.stdout and "soup (concise=0.5, friendly=0.5, expert=0)" in proc.stdout
    assert "soup + statements" in proc.stdout
    # the statements of the two declared dimensions, in soup order, end each prompt
    said = ("Generate a response that is concise and to the point without being verbose. Generate a response that "
            "is friendly, witty, funny, and humorous, like a close friend.")
    assert f"soup + statements: each prompt ends with {said}" in " ".join(proc.stdout.split())
    rec = json.loads((tmp_path / "demo" / "soup" / "soup.json").read_text())
    assert [e["name"] for e in rec["experts"]] == ["concise", "friendly", "expert"]
    assert rec["base"]["name"] == "default"
