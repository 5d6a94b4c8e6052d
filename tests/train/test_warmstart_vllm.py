"""Warm-start candidates through vLLM (soups/train/warmstart_vllm.py), on a tiny float32 model.

Reference: transformers' own greedy generation of the same chat-templated, statement-carrying prompts.
At a temperature of 1e-4 vLLM's samples from a confident model are the greedy answer, so every sample must
equal it, and a sample is "finished" exactly when the greedy continuation reached EOS. Resume: rows already in the
file (after a torn last line) are kept and not sampled again.
"""

from __future__ import annotations

import json

import pytest
import torch

from soups.errors import ConfigError
from soups.train import warmstart_vllm
from soups.train.config import WarmStart
from tests.helpers import make_tiny_llama, require_vllm, set_norms

STATEMENT = "Generate a response that is concise."
PROMPTS = ["Hello there", "Why is the sky blue?", "Name a colour.", "What is two plus two?", "Say hi.",
           "Tell me a story."]


def _greedy(base, prompts, new_tokens):
    """(answer, reached EOS) per prompt, from transformers, one prompt at a time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soups.chat import render
    from soups.prompts import with_statements

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = tok(render(tok, with_statements(p, [STATEMENT])), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.eos_token_id)
        new = gen[0, ids["input_ids"].shape[1]:]
        out.append((tok.decode(new, skip_special_tokens=True).strip(), bool((new == tok.eos_token_id).any())))
    return out


@pytest.mark.slow
def test_vllm_candidates_equal_greedy_reference_and_resume(tmp_path, default_base, monkeypatch):
    require_vllm()
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    base = make_tiny_llama(tmp_path / "base", hidden=128, layers=2, tokenizer_from=default_base)
    set_norms(base, 4.0, only="model.norm.weight")  # a confident head: temperature 1e-4 is then greedy
    ws = WarmStart(samples=2, temperature=1e-4, max_new_tokens=12, gen_batch=4, engine="vllm")
    path = tmp_path / "candidates.jsonl"
    kept = {"prompt": PROMPTS[0], "answers": ["written before", "the kill"], "finished": [True, False]}
    path.write_text(json.dumps(kept) + "\n" + '{"prompt": "torn')
    seen = []
    rows = warmstart_vllm.candidates_vllm(base, PROMPTS, STATEMENT, ws, 0, path,
                                          progress=lambda done, total: seen.append((done, total)))
    assert sorted(r["prompt"] for r in rows) == sorted(PROMPTS)
    assert next(r for r in rows if r["prompt"] == PROMPTS[0]) == kept  # resumed, not sampled again
    assert [json.loads(line) for line in path.read_text().splitlines()] == rows  # no torn or duplicate line
    assert seen[-1] == (len(PROMPTS), len(PROMPTS))
    # the engine runs the float32 checkpoint in float32 (not vLLM's bf16 default, emulated on CPUs without AMX)
    assert json.loads((tmp_path / "vllm_spec.json").read_text())["dtype"] == "float32"
    reference = dict(zip(PROMPTS[1:], _greedy(base, PROMPTS[1:], ws.max_new_tokens)))
    for r in rows[1:]:
        answer, eos = reference[r["prompt"]]
        assert r["answers"] == [answer, answer] and r["finished"] == [eos, eos], r["prompt"]


def test_engine_auto_falls_back_and_explicit_vllm_needs_it(monkeypatch):
    from soups.eval import vllm_engine
    from soups.eval.generate import resolve_engine

    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    assert resolve_engine("auto", flag="warm_start.engine") == "transformers"
    with pytest.raises(ConfigError, match="warm_start.engine vllm: vLLM is not installed"):
        resolve_engine("vllm", flag="warm_start.engine")
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: True)
    assert resolve_engine("auto", flag="warm_start.engine") == "vllm"
