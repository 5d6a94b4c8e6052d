"""VllmGenerator (one vLLM engine, adapters swapped into its weights) answers as transformers + PEFT do, and
`soups eval --engine vllm` gives transformers' responses, cached apart from them.

Reference: PeftModel.from_pretrained on the same float32 base, greedy, one prompt at a time. The tiny Llama has
its own (untied) head and a confident final norm, so its greedy choices are clear (no near-ties for float
rounding to flip) and differ between the base and each adapter. One prompt is longer than a KV block, so an
uncleared prefix cache after a swap would answer it from the previous weights' KV.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import make_lora_expert, make_tiny_llama, read_jsonl, require_vllm, run_cli, set_norms

LONG = "Why is the sky blue? " + "Tell me about the physics, the history and the colours of the sky. " * 20
PROMPTS = ["Hello there", LONG]
TOKENS = 8
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _confident_base(path, default_base):
    base = make_tiny_llama(path, hidden=128, layers=2, tie=False, tokenizer_from=default_base)
    return set_norms(base, 8.0, only="model.norm.weight")  # a confident head: greedy margins far above rounding


def _peft_greedy(base, adapter, prompts):
    """Independent reference: transformers + PEFT, greedy, one unpadded prompt at a time."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soups.chat import render

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        model = PeftModel.from_pretrained(model, adapter)
    out = []
    for p in prompts:
        ids = tok(render(tok, p, None), add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            new = model.eval().generate(ids, max_new_tokens=TOKENS, do_sample=False)[0, ids.shape[1]:]
        out.append(tok.decode(new, skip_special_tokens=True).strip())
    return out


@pytest.mark.slow
def test_swaps_match_peft(tmp_path, default_base, monkeypatch):
    require_vllm()
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # restored after the test
    from soups.errors import ConfigError
    from soups.eval.vllm_engine import VllmGenerator

    base = _confident_base(tmp_path / "base", default_base)
    # small scales, so the answers depend on them (rsLoRA's alpha / sqrt(r) vs alpha / r changes B's answers)
    a = make_lora_expert(base, tmp_path / "a", r=4, alpha=2, seed=3)  # q, v: vLLM's qkv is reloaded with k
    b = make_lora_expert(base, tmp_path / "b", r=8, alpha=2, seed=5, targets=ALL, rslora=True,
                         rank_pattern={"o_proj": 4}, alpha_pattern={"down_proj": 0.5})
    ref = {None: _peft_greedy(base, None, PROMPTS), a: _peft_greedy(base, a, PROMPTS),
           b: _peft_greedy(base, b, PROMPTS)}
    assert len({tuple(v) for v in ref.values()}) == 3, ref  # the systems answer differently: the test can tell

    import torch

    keep = torch.set_num_threads
    gen = VllmGenerator(base, dtype="float32")
    try:
        assert torch.set_num_threads is keep  # vLLM's CPU worker replaces it process-wide; the generator restores it
        block = gen.llm.llm_engine.vllm_config.cache_config.block_size
        assert len(gen.tokenizer(gen.chat_text(LONG))["input_ids"]) > block  # a KV block the prefix cache keeps
        for adapter in (None, a, b, None, a):
            gen.set_adapter(adapter)
            got = gen.generate(PROMPTS, max_new_tokens=TOKENS, progress=adapter is a)
            assert got == ref[adapter], (adapter, got, ref[adapter])
        with pytest.raises(ConfigError, match="not a LoRA adapter on base"):
            gen.set_adapter(base)
    finally:
        gen.close()


@pytest.mark.slow
def test_eval_cli_vllm_matches_transformers_and_caches_apart(tmp_path, default_base, monkeypatch):
    require_vllm()
    base = _confident_base(tmp_path / "base", default_base)
    e1 = make_lora_expert(base, tmp_path / "concise", r=4, alpha=2, seed=1, targets=ALL, dimension="concise")
    e2 = make_lora_expert(base, tmp_path / "friendly", r=4, alpha=2, seed=2, targets=ALL, dimension="friendly")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    home = tmp_path / "home"
    args = ["eval", "--experts", f"{e1},{e2}", "--weights", "1,1", "--base", str(base), "--prompts", str(prompts),
            "--max-new-tokens", str(TOKENS), "--dtype", "float32"]
    env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind", "SOUPS_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-m", "soups", *args, "--engine", "vllm", "--out", str(tmp_path / "v")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cached = len(list((home / "eval-cache").glob("*.json")))
    monkeypatch.setenv("SOUPS_HOME", str(home))
    done = run_cli(*args, "--engine", "transformers", "--out", tmp_path / "t")
    assert done.code == 0, done.err
    res = {e: json.loads((tmp_path / e / "results.json").read_text()) for e in "vt"}
    assert res["v"]["generation"]["engine"] == "vllm" and res["t"]["generation"]["engine"] == "transformers"
    assert res["v"]["generation"]["dtype"] == "float32"
    rows = {e: [(r["system"], r["prompt"], r["response"]) for r in read_jsonl(tmp_path / e / "responses.jsonl")]
            for e in "vt"}
    systems = {s for s, _, _ in rows["v"]}
    assert len(systems) == 7 and len(rows["v"]) == 7 * len(PROMPTS)
    assert rows["v"] == rows["t"]  # every system: the soup, with statements, linear, base, prompted, each expert
    assert len({r for _, _, r in rows["v"]}) > len(PROMPTS)  # and they are not all the same answers
    # the transformers run generated its own responses: the cache keys on the engine
    assert cached == len(systems) and len(list((home / "eval-cache").glob("*.json"))) == 2 * len(systems)


def test_engine_resolution_and_missing_vllm(tmp_path, monkeypatch):
    from soups.errors import ConfigError
    from soups.eval import generate, vllm_engine

    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    assert generate.resolve_engine("auto") == "transformers"
    with pytest.raises(ConfigError, match="--engine vllm: vLLM is not installed"):
        generate.resolve_engine("vllm")
    with pytest.raises(ConfigError, match="--engine llama.cpp: unknown engine; choose auto, vllm, transformers"):
        generate.resolve_engine("llama.cpp")
    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: True)
    assert generate.resolve_engine("auto") == "vllm" and generate.resolve_engine("transformers") == "transformers"


def test_eval_and_sweep_cli_say_vllm_is_missing(tmp_path, monkeypatch):
    from soups.eval import vllm_engine
    from tests.helpers import assert_one_line_error

    monkeypatch.setattr(vllm_engine, "vllm_available", lambda: False)
    for argv in (["eval", "--weights", "1,0,1"], ["sweep", "--experts", "concise,friendly"]):
        res = run_cli(*argv, "--engine", "vllm", "--out", tmp_path / argv[0])
        assert_one_line_error(res, "--engine vllm", "not installed", "make install-vllm")
        assert not (tmp_path / argv[0]).exists()
