"""greedy_share: the first rows of each PPO batch are decoded greedily, with log-probabilities that are the
policy's own at the rollout temperature, aligned with the sampled rows however long each group runs.

The reference is written here: greedy decoding as a loop of full forward passes taking the argmax, and each
response token's log-probability from one forward pass over the whole sequence, log_softmax(logits / T), in
float64."""

from __future__ import annotations

import json

import pytest
import torch


def _reference_greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1].double()
        ids.append(int(logits.argmax()))
    return ids[len(prompt):]


def _reference_logprobs(model, seq: list[int], ctx: int, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0].double()
    lp = torch.log_softmax(logits[ctx - 1:-1] / temperature, dim=-1)
    return lp.gather(1, torch.tensor(seq[ctx:]).unsqueeze(1)).squeeze(1)


@pytest.mark.parametrize("stop_early", [False, True])
def test_greedy_rows_are_argmax_decodes_with_the_policys_tempered_logprobs(confident_base, stop_early):
    from transformers import AutoModelForCausalLM, GenerationConfig
    from trl.experimental.ppo import ppo_trainer as mod

    from soups.train import trl_backend as backend

    model = AutoModelForCausalLM.from_pretrained(confident_base, dtype=torch.float32).eval()
    prompt, other, n_new, temp, pad = [5, 17, 42, 99, 7], [5, 17, 42, 99, 8], 6, 0.7, 0
    greedy = _reference_greedy(model, prompt, n_new)
    # stop_early: the greedy answer's first token is made the EOS, so the greedy rows end at once while the sampled
    # rows (another prompt) run on: the two groups are right-padded to one length before PPO sees them
    stop = greedy[0] if stop_early else 2
    model.generation_config.eos_token_id = stop
    model.generation_config.pad_token_id = pad
    queries = torch.tensor([prompt, prompt, other, other])
    sample = GenerationConfig(max_new_tokens=n_new, temperature=temp + 1e-7, top_k=0.0, top_p=1.0, do_sample=True)
    original = mod.batch_generation
    torch.manual_seed(0)
    with backend._greedy_share_hook(0.5, temp):
        assert mod.batch_generation is not original
        qr, logits = mod.batch_generation(model, queries, 4, pad, sample)
        assert backend._GREEDY["rows"] == 2
    assert mod.batch_generation is original and backend._GREEDY["rows"] == 0
    ctx = len(prompt)
    assert qr.shape[0] == 4 and logits.shape[:2] == (4, qr.shape[1] - ctx)
    want = greedy[:greedy.index(stop) + 1] if stop in greedy else greedy
    for row in range(4):
        resp = qr[row, ctx:].tolist()
        length = next((i + 1 for i, t in enumerate(resp) if t == stop), len(resp))
        if row < 2:
            assert resp[:length] == want and all(t == pad for t in resp[length:])
        ours = torch.log_softmax(logits[row, :length].double(), dim=-1).gather(
            1, qr[row, ctx:ctx + length].unsqueeze(1)).squeeze(1)
        ref = _reference_logprobs(model, queries[row].tolist() + resp[:length], ctx, temp)
        assert torch.allclose(ours, ref, atol=1e-4), (row, ours, ref)
    if stop_early:
        assert want == [stop] and logits.shape[1] > 1  # the sampled rows ran past the greedy ones' end
    assert backend.greedy_rows(8, 0.25) == 2 and backend.greedy_rows(8, 0.01) == 1 and backend.greedy_rows(8, 0) == 0


def test_ppo_with_greedy_share_logs_the_greedy_rollouts_reward(confident_base, tmp_path):
    from tests.train.test_expert import _train

    _train(confident_base, tmp_path, "greedy", overrides={"steps": 2, "greedy_share": 0.5})
    rows = [json.loads(ln) for ln in (tmp_path / "greedy-run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0.0 <= r["reward_greedy"] <= 1.0 for r in rows)  # the toy reward is a share of letters
    from soups.errors import ConfigError

    with pytest.raises(ConfigError, match="greedy_share is implemented for ppo only"):
        _train(confident_base, tmp_path, "greedy-grpo", overrides={"steps": 1, "greedy_share": 0.5, "algo": "grpo",
                                                                    "num_generations": 2})
