"""The default generation dtype (soups.eval.generate.default_dtype) and that its answers are correct.

On a CPU with native bf16 a bf16 checkpoint is generated in bfloat16 (bench/generate.py: the fastest correct
choice); everything else stays float32. Correct means: each greedy answer equals the float32 reference's, or
first differs at a near-tie of the float32 logits (bf16 rounding may flip a tie, never a clear choice).
"""

from __future__ import annotations

import json

import pytest

from soups.eval.generate import ChatGenerator, default_dtype
from tests.helpers import make_tiny_llama, sharpen

PROMPTS = ["Hello", "What is rain? Explain it in detail, please.", "Tell me a joke", "Why?", "Name three colors.",
           "How do I boil an egg?", "Write a haiku about rain.", "What is DNA?"]


def _native_bf16() -> bool:
    import torch

    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


@pytest.fixture(scope="module")
def bf16_base(tiny_base, tmp_path_factory):
    """A prompt-sensitive tiny model stored in bfloat16 (as the embedded base is)."""
    import torch
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("bf16")
    sharp = sharpen(tiny_base, root / "sharp")
    model = AutoModelForCausalLM.from_pretrained(sharp, dtype=torch.float32).to(torch.bfloat16)
    model.save_pretrained(root / "base")
    model.generation_config.save_pretrained(root / "base")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (sharp / f).is_file():
            (root / "base" / f).write_bytes((sharp / f).read_bytes())
    return root / "base"


def test_default_dtype_follows_checkpoint_and_cpu(tmp_path, default_base):
    fp32 = make_tiny_llama(tmp_path / "fp32", dtype="float32")
    bf16 = make_tiny_llama(tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((bf16 / "config.json").read_text()).get("dtype", "bfloat16") == "bfloat16"
    assert default_dtype("cpu", fp32) == "float32"
    assert default_dtype("cpu", None) == "float32"
    assert default_dtype("cpu", bf16) == ("bfloat16" if _native_bf16() else "float32")
    assert default_dtype("cuda", fp32) == "auto"
    assert default_dtype("cpu", default_base) == ("bfloat16" if _native_bf16() else "float32")


def test_default_greedy_matches_float32_reference(bf16_base):
    import torch

    fast = ChatGenerator(bf16_base)
    assert fast.model.dtype == (torch.bfloat16 if _native_bf16() else torch.float32)
    ref = ChatGenerator(bf16_base, dtype="float32")
    got = fast.generate(PROMPTS, max_new_tokens=12, batch_size=4, progress=False)
    want = ref.generate(PROMPTS, max_new_tokens=12, batch_size=4, progress=False)
    tok = ref.tokenizer
    same = 0
    for prompt, g, w in zip(PROMPTS, got, want):
        if g == w:
            same += 1
            continue
        gi, wi = tok(g, add_special_tokens=False)["input_ids"], tok(w, add_special_tokens=False)["input_ids"]
        k = next(i for i, (a, b) in enumerate(zip(gi + [-1], wi + [-2])) if a != b)
        if k >= min(len(gi), len(wi)):
            continue  # one is a prefix of the other (an answer stopped early): no token chosen differently
        ids = tok(ref.chat_text(prompt), add_special_tokens=False)["input_ids"] + wi[:k]
        with torch.no_grad():
            logits = ref.model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        gap = float(logits[wi[k]] - logits[gi[k]])
        scale = float(logits.abs().max())
        assert gap <= 2 ** -6 * scale, f"{prompt!r}: bf16 chose a token {gap:.3g} below the float32 argmax"
    assert same >= len(PROMPTS) // 2, f"only {same}/{len(PROMPTS)} answers equal the float32 reference"
