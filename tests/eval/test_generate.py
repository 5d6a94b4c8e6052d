"""Batched chat generation (soups.eval.generate) against a hand-written greedy decoding loop."""

from __future__ import annotations

import json

import pytest

from soups.errors import CheckpointError, ConfigError
from soups.eval.generate import ChatGenerator, generate_chat, resolve_model, vllm_lora_rank
from tests.helpers import assert_one_line_error, make_lora_expert, run_cli, sharpen

PROMPTS = ["Hello", "What is rain? Explain it in detail, please.", "Tell me a joke", "Why?", "Name three colors."]


@pytest.fixture(scope="module")
def sharp_base(tiny_base, tmp_path_factory):
    return sharpen(tiny_base, tmp_path_factory.mktemp("sharp") / "base")


def reference_greedy(gen: ChatGenerator, prompt: str, system: str | None, n: int) -> str:
    """One prompt, no padding, argmax of the last position's logits, stop at EOS."""
    import torch

    tok = gen.tokenizer
    ids = tok(gen.chat_text(prompt, system), return_tensors="pt", add_special_tokens=False)["input_ids"]
    new = []
    with torch.no_grad():
        for _ in range(n):
            nxt = int(gen.model(input_ids=ids).logits[0, -1].argmax())
            if nxt in {tok.eos_token_id, gen.model.generation_config.eos_token_id}:
                break
            new.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return tok.decode(new, skip_special_tokens=True).strip()


def test_batched_left_padding_matches_reference(sharp_base):
    gen = ChatGenerator(sharp_base)
    got = gen.generate(PROMPTS, max_new_tokens=8, batch_size=3, progress=False)
    want = [reference_greedy(gen, p, None, 8) for p in PROMPTS]
    assert got == want
    assert len(set(got)) > 1, "test model should answer different prompts differently"
    sys_got = gen.generate(PROMPTS[:2], system="Answer like a pirate.", max_new_tokens=8, progress=False)
    assert sys_got == [reference_greedy(gen, p, "Answer like a pirate.", 8) for p in PROMPTS[:2]]
    assert "Answer like a pirate." in gen.chat_text("Hi", "Answer like a pirate.")


def test_adapter_directories(sharp_base, tmp_path):
    expert = make_lora_expert(sharp_base, tmp_path / "expert", alpha=64)
    assert resolve_model(expert) == (sharp_base, expert)  # base from adapter_config's base_model_name_or_path
    assert resolve_model(sharp_base) == (sharp_base, None)
    via_dir = generate_chat(expert, PROMPTS, max_new_tokens=6, progress=False)
    via_flag = generate_chat(sharp_base, PROMPTS, adapter=expert, max_new_tokens=6, progress=False)
    plain = generate_chat(sharp_base, PROMPTS, max_new_tokens=6, progress=False)
    assert via_dir == via_flag and via_dir != plain
    with pytest.raises(ConfigError):
        ChatGenerator(expert, adapter=expert)
    with pytest.raises(CheckpointError):
        resolve_model(tmp_path)


def test_soup_directory_resolves_base_from_soup_json(sharp_base, tmp_path):
    from soups.merge.engine import merge
    expert = make_lora_expert(sharp_base, tmp_path / "e", alpha=64)
    cfg = json.loads((expert / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "some/hub-name"  # only soup.json can find the base now
    (expert / "adapter_config.json").write_text(json.dumps(cfg))
    soup = tmp_path / "soup"
    merge(experts=[str(expert)], weights=[1.0], out=soup, base=sharp_base, format="adapter")
    assert resolve_model(soup)[0].resolve() == sharp_base.resolve()
    # an exact single-expert soup is the expert itself
    assert generate_chat(soup, PROMPTS[:3], max_new_tokens=5, progress=False) == generate_chat(
        sharp_base, PROMPTS[:3], adapter=expert, max_new_tokens=5, progress=False)


def test_vllm_lora_ranks():
    assert (vllm_lora_rank(4), vllm_lora_rank(8), vllm_lora_rank(300)) == (8, 8, 320)
    with pytest.raises(ConfigError, match="exceeds vLLM's largest --max-lora-rank 512"):
        vllm_lora_rank(513)


def test_cli_generate(sharp_base, tmp_path):
    e1 = make_lora_expert(sharp_base, tmp_path / "e1", alpha=64, seed=1)
    e2 = make_lora_expert(sharp_base, tmp_path / "e2", alpha=64, seed=2)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps({"prompt": p}) for p in PROMPTS[:3]) + "\n")
    out = tmp_path / "r.jsonl"
    args = ["generate", "--experts", f"{e1},{e2}", "--weights", "1,0", "--base", str(sharp_base),
            "--prompts", str(prompts), "--out", str(out), "--max-new-tokens", "5"]
    res = run_cli(*args)
    assert res.code == 0, res.err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS[:3] and rows[0]["weights"] == "1,0"
    assert [r["response"] for r in rows] == generate_chat(sharp_base, PROMPTS[:3], adapter=e1, max_new_tokens=5,
                                                          progress=False)
    assert_one_line_error(run_cli(*args), "--out", "--force")


def test_set_adapter_swaps_without_reload(sharp_base, tmp_path):
    e1 = make_lora_expert(sharp_base, tmp_path / "e1", alpha=64, seed=1)
    e2 = make_lora_expert(sharp_base, tmp_path / "e2", r=8, alpha=64, seed=2)
    gen = ChatGenerator(sharp_base)
    outs = {}
    for name, adapter in [("e1", e1), ("e2", e2), ("base", None), ("e1again", e1)]:
        gen.set_adapter(adapter)
        outs[name] = gen.generate(PROMPTS, max_new_tokens=6, progress=False)
    assert outs["e1"] == outs["e1again"] == generate_chat(e1, PROMPTS, max_new_tokens=6, progress=False)
    assert outs["e2"] == generate_chat(e2, PROMPTS, max_new_tokens=6, progress=False)
    assert outs["base"] == generate_chat(sharp_base, PROMPTS, max_new_tokens=6, progress=False)
    assert len({tuple(v) for v in outs.values()}) == 3


def test_cli_generate_with_statements(sharp_base, tmp_path):
    """`--statements`: the declared dimensions' statements appended to each user message, as the paper's eval.py."""
    from soups.dimensions import load_dimension

    e1 = make_lora_expert(sharp_base, tmp_path / "e1", alpha=64, seed=1, dimension="concise")
    e2 = make_lora_expert(sharp_base, tmp_path / "e2", alpha=64, seed=2, dimension="friendly")
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS[:3]) + "\n")
    out = tmp_path / "r.jsonl"
    res = run_cli("generate", "--experts", f"{e1},{e2}", "--weights", "1,0", "--base", sharp_base, "--prompts",
                  prompts, "--statements", "--out", out, "--max-new-tokens", "5")
    assert res.code == 0, res.err
    said = load_dimension("concise").statement  # friendly has weight 0: not declared
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == PROMPTS[:3] and all(r["statements"] == [said] for r in rows)
    asked = [f"{p} {said}" for p in PROMPTS[:3]]
    assert [r["response"] for r in rows] == generate_chat(sharp_base, asked, adapter=e1, max_new_tokens=5,
                                                          progress=False)
    plain = generate_chat(sharp_base, PROMPTS[:3], adapter=e1, max_new_tokens=5, progress=False)
    assert [r["response"] for r in rows] != plain
    assert_one_line_error(run_cli("generate", "--soup", sharp_base, "--prompts", prompts, "--statements",
                                  "--out", tmp_path / "b.jsonl"), "--statements", "declares no dimensions")
