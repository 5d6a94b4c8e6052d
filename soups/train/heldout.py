"""Held-out checks of an expert: reward before/after (soups.stats, bootstrap 95% CI) and a fluency check.

Fluency is perplexity-style: the *base* model's perplexity on the completions (given their
prompts). An expert that drifts into gibberish or repetition loops shows a ratio far above 1
against the base's perplexity on its own completions.
"""

from __future__ import annotations

import math
import random

import torch

from soups.chat import render
from soups.stats import summarize as bootstrap_ci  # noqa: F401  (expert.json's reward before/after)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], *, max_new_tokens: int, temperature: float, seed: int,
             batch_size: int = 16) -> list[str]:
    """Sample one completion per prompt (left padding, fixed seed: repeatable)."""
    tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    random.seed(seed)
    out: list[str] = []
    was_training = model.training
    model.eval()
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer([render(tokenizer, p) for p in prompts[i:i + batch_size]], return_tensors="pt", padding=True,
                        add_special_tokens=False).to(device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                             top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
        out += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train(was_training)
    return out


@torch.no_grad()
def perplexity(model, tokenizer, prompts: list[str], completions: list[str]) -> float:
    """exp(mean NLL per completion token) of `model` on `completions` given their prompts."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for prompt, comp in zip((render(tokenizer, p) for p in prompts), completions):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(comp, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([p_ids + c_ids], device=device)
        logits = model(input_ids=ids).logits[0, len(p_ids) - 1:-1].float()
        nll = torch.nn.functional.cross_entropy(logits, ids[0, len(p_ids):], reduction="sum")
        total, count = total + float(nll), count + len(c_ids)
    return math.exp(total / max(count, 1))


def fluency(base_ppl_base: float, base_ppl_expert: float) -> dict[str, float]:
    """Base perplexity on the base's and the expert's held-out completions, and their ratio (1 = as fluent)."""
    return {"base_ppl_on_base_outputs": round(base_ppl_base, 3),
            "base_ppl_on_expert_outputs": round(base_ppl_expert, 3),
            "ratio": round(base_ppl_expert / base_ppl_base, 3)}
