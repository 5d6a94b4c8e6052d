"""`soups generate --engine vllm` gives the same greedy answers as the transformers engine (float32)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import make_lora_expert, make_tiny_llama, require_vllm


@pytest.mark.slow
def test_generate_vllm_engine_matches_transformers(tmp_path, default_base):
    require_vllm()
    base = make_tiny_llama(tmp_path / "base", hidden=128, layers=2, tokenizer_from=default_base)
    expert = make_lora_expert(base, tmp_path / "e", r=4, seed=3)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Hello there", "Why is the sky blue?"]))
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    rows = {}
    for engine in ("transformers", "vllm"):
        out = tmp_path / f"{engine}.jsonl"
        cmd = [sys.executable, "-m", "soups", "generate", "--soup", str(expert), "--prompts", str(prompts),
               "--engine", engine, "--max-new-tokens", "8", "--out", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[engine] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["response"] for r in rows["vllm"]] == [r["response"] for r in rows["transformers"]]
    assert all(r["engine"] == "vllm" for r in rows["vllm"])
