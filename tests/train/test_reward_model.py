"""`soups train-reward`: Bradley-Terry reward model on pairs (TRL RewardTrainer, LoRA), saved so that
`reward: {kind: model}` reads it back; held-out accuracy; bad pairs files."""

from __future__ import annotations

import json
import random

import pytest

from soups.errors import DataError

WORDS = "river stone cloud lamp table garden window music paper forest bridge candle".split()


def _pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Chosen answers end with dots, rejected ones with bangs: a feature the last-token score of a tiny
    random model picks up in a short run (with seed 0 its untrained head prefers the bangs)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(6))
        out.append({"prompt": f"Describe item {i}.", "chosen": body + " ........", "rejected": body + " !!!!!!!!"})
    return out


def test_load_pairs_names_file_and_line(tmp_path):
    from soups.train.reward_model import load_pairs

    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps(_pairs(1)[0]) + "\n" + '{"prompt": "x", "chosen": 3, "rejected": "y"}\n')
    with pytest.raises(DataError, match=r"pairs\.jsonl:2: need string fields"):
        load_pairs(f)
    f.write_text("not json\n")
    with pytest.raises(DataError, match=r"pairs\.jsonl:1: invalid JSON"):
        load_pairs(f)


@pytest.mark.parametrize("option", [{"epochs": -1}, {"epochs": float("nan")}, {"lr": 0}, {"lr": float("inf")},
                                    {"batch_size": 0}, {"eval_frac": 1.5}, {"eval_frac": float("nan")}])
def test_library_refuses_bad_settings_before_loading(tmp_path, option):
    """Issue 13: `--epochs -1` exited 0 with an untrained model; the library checks its numbers too."""
    from soups.errors import ConfigError
    from soups.train.reward_model import train_reward_model

    flag = "--" + next(iter(option)).replace("_", "-")
    with pytest.raises(ConfigError, match=f"{flag} .*out of range"):
        train_reward_model("concise", tmp_path / "absent.jsonl", base=tmp_path / "absent", out=tmp_path / "rm",
                           **option)
    assert not (tmp_path / "rm").exists()


def test_train_reward_learns_pairs_and_is_read_back(tiny_base, tmp_path):
    from transformers import AutoTokenizer

    from soups.base import fingerprint
    from soups.rewards.model import Config, ModelReward, tokenizer_sha256
    from soups.train.reward_model import train_reward_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in _pairs(60)))
    out = tmp_path / "rm"
    meta = train_reward_model("friendly", pairs, base=tiny_base, out=out, epochs=3, lr=5e-3, batch_size=8,
                              eval_frac=0.25, seed=0)
    saved = json.loads((out / "reward_model.json").read_text())
    assert saved == meta and saved["dimension"] == "friendly" and saved["heldout_pairs"] == 15
    assert saved["base_fingerprint"] == fingerprint(tiny_base)
    assert saved["tokenizer_sha256"] == tokenizer_sha256(AutoTokenizer.from_pretrained(tiny_base))
    assert saved["accuracy_before"] <= 0.5 and saved["accuracy"] >= 0.9, saved
    # read back through the reward registry's model kind: chosen scores above rejected on new pairs
    fn = ModelReward("friendly", Config(path=str(out)))
    fresh = _pairs(10, seed=1)
    chosen = fn([p["chosen"] for p in fresh], prompts=[p["prompt"] for p in fresh])
    rejected = fn([p["rejected"] for p in fresh], prompts=[p["prompt"] for p in fresh])
    assert sum(c > r for c, r in zip(chosen, rejected)) >= 9
    # score_mean / score_std: the logits' spread over the held-out pairs' answers (the first quarter of the
    # seeded shuffle), recomputed here one unpadded example at a time, in float64
    import torch
    from transformers import AutoModelForSequenceClassification

    held = _pairs(60)
    random.Random(0).shuffle(held)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    logits = []
    for p in held[:15]:
        for key in ("chosen", "rejected"):
            text = tok.apply_chat_template([{"role": "user", "content": p["prompt"]},
                                            {"role": "assistant", "content": p[key]}], tokenize=False)
            with torch.no_grad():
                logits.append(float(model(input_ids=torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
                                          ).logits[0, 0]))
    t = torch.tensor(logits, dtype=torch.float64)
    assert saved["score_mean"] == pytest.approx(t.mean().item(), abs=1e-4)
    assert saved["score_std"] == pytest.approx(t.std(unbiased=False).item(), abs=1e-4)
    normed = ModelReward("friendly", Config(path=str(out), normalize=True))
    assert normed([fresh[0]["chosen"]], prompts=[fresh[0]["prompt"]]) == pytest.approx(
        [(chosen[0] - saved["score_mean"]) / saved["score_std"]], abs=1e-4)


def test_probe_fits_only_the_score_head_by_bradley_terry(tiny_base, tmp_path):
    """`method="probe"`: the base stays bit-equal, and the head is the minimiser of the documented objective
    (its gradient, computed here in float64 from hidden states taken here, is ~0); logits are h . w."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from soups.train.reward_model import PROBE_L2, train_reward_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in _pairs(60)))
    out = tmp_path / "rm"
    meta = train_reward_model("friendly", pairs, base=tiny_base, out=out, eval_frac=0.25, seed=0, method="probe")
    assert meta["method"] == "probe" and meta["l2"] in PROBE_L2
    assert set(meta["cv_logloss"]) == {f"{v:g}" for v in PROBE_L2}
    assert meta["accuracy_before"] <= 0.5 and meta["accuracy"] >= 0.9, meta
    base = load_file(tiny_base / "model.safetensors")
    saved = load_file(out / "model.safetensors")
    for name, t in base.items():
        if name.startswith("model."):
            assert torch.equal(saved[name], t), name
    held = _pairs(60)
    random.Random(0).shuffle(held)
    train = held[15:]
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    w = model.score.weight[0].double()

    def hidden(prompt, answer):
        text = tok.apply_chat_template([{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
                                       tokenize=False)
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            h = model.model(input_ids=ids).last_hidden_state[0, -1].double()
            logit = model(input_ids=ids).logits[0, 0].item()
        assert logit == pytest.approx((h @ w).item(), abs=1e-4)
        return h

    d = torch.stack([hidden(p["prompt"], p["chosen"]) - hidden(p["prompt"], p["rejected"]) for p in train])
    grad = -(torch.sigmoid(-(d @ w))[:, None] * d).mean(0) + meta["l2"] * w
    assert grad.abs().max().item() < 1e-4 * max(1.0, w.abs().max().item())
