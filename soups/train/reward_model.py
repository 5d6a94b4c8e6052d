"""`soups train-reward`: a Bradley-Terry reward model from preference pairs, with TRL's RewardTrainer.

LoRA on the base plus a fresh scalar score head; loss -log sigmoid(r(chosen) - r(rejected)).
A share of the pairs is held out and the pair accuracy on them (r(chosen) > r(rejected)) is
reported before and after training. Examples are the exact text `soups.rewards.model` scores
(`soups.chat.render_exchange`: prompt and answer through the chat template), tokenized the same way, so the
trained model is read back by `reward: {kind: model, path: DIR}` with no train/score skew.
Output (atomic): a merged HF sequence-classification model dir + tokenizer + reward_model.json.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from soups.errors import ConfigError, DataError
from soups.io.atomic import atomic_dir, check_output
from soups.io.files import finite_json

log = logging.getLogger(__name__)


def load_pairs(path: Path) -> list[dict[str, str]]:
    """Read `{"prompt", "chosen", "rejected"}` JSONL; a bad line raises DataError naming file and line."""
    from soups.io.jsonl import read_jsonl

    path = Path(path)
    pairs = []
    for n, obj in read_jsonl(path, "--pairs", objects=False):
        bad = [k for k in ("chosen", "rejected") if not isinstance(obj, dict) or not isinstance(obj.get(k), str)]
        if bad or not isinstance(obj.get("prompt", ""), str):
            raise DataError(f"{path}:{n}: need string fields prompt, chosen, rejected (bad: {bad or ['prompt']})")
        pairs.append({"prompt": obj.get("prompt", ""), "chosen": obj["chosen"], "rejected": obj["rejected"]})
    if len(pairs) < 4:
        raise DataError(f"--pairs {path}: {len(pairs)} pairs; need at least 4 (some are held out)")
    return pairs


def pair_scores(model, tokenizer, pairs: list[dict[str, str]],
                batch_size: int = 16) -> tuple[list[float], list[float]]:
    """(r(chosen), r(rejected)) for each pair, scored exactly as soups.rewards.model does."""
    import torch

    from soups.chat import render_exchange

    def scores(texts: list[str]) -> list[float]:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out += model(**enc.to(model.device)).logits[:, 0].float().tolist()
        return out

    c = scores([render_exchange(tokenizer, p["prompt"], p["chosen"]) for p in pairs])
    r = scores([render_exchange(tokenizer, p["prompt"], p["rejected"]) for p in pairs])
    return c, r


def pair_accuracy(model, tokenizer, pairs: list[dict[str, str]], batch_size: int = 16) -> float:
    """Share of pairs with r(chosen) > r(rejected), scored exactly as soups.rewards.model does."""
    c, r = pair_scores(model, tokenizer, pairs, batch_size)
    return sum(a > b for a, b in zip(c, r)) / len(pairs)


def probe_features(model, pad_id: int | None, chosen: list[list[int]], rejected: list[list[int]],
                   progress: Any = None) -> tuple[Any, Any]:
    """Hidden states (float64, n x hidden) the score head of `model` reads for each pair's chosen and rejected
    token ids: the backbone's output at the last non-pad token, one unpadded text at a time, as
    soups.rewards.model scores."""
    import torch

    body = getattr(model, model.base_model_prefix)
    out: dict[str, list] = {"chosen": [], "rejected": []}
    with torch.no_grad():
        for n, pair in enumerate(zip(chosen, rejected)):
            for ids, rows in zip(pair, out.values()):
                h = body(input_ids=torch.tensor([ids], device=model.device)).last_hidden_state[0]
                last = max((j for j, t in enumerate(ids) if t != pad_id), default=len(ids) - 1)
                rows.append(h[last].double().cpu())
            if progress:
                progress(n + 1, len(chosen))
    return torch.stack(out["chosen"]), torch.stack(out["rejected"])


def fit_probe(diff: Any, l2: float) -> Any:
    """Bradley-Terry logistic regression with no bias: w minimising mean(softplus(-diff @ w)) + l2/2 |w|^2 (LBFGS)."""
    import torch

    w = torch.zeros(diff.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        val = torch.nn.functional.softplus(-diff @ w).mean() + 0.5 * l2 * (w @ w)
        val.backward()
        return val

    opt.step(loss)
    return w.detach()


PROBE_L2 = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def choose_l2(diff: Any, folds: int = 5, seed: int = 0) -> tuple[float, dict[str, float]]:
    """The L2 strength (of PROBE_L2) with the lowest cross-validated Bradley-Terry log-loss on `diff`'s rows."""
    import torch

    idx = list(range(diff.shape[0]))
    random.Random(seed).shuffle(idx)
    parts = [idx[k::folds] for k in range(folds)]
    losses = {}
    for l2 in PROBE_L2:
        total = 0.0
        for k in range(folds):
            held = set(parts[k])
            train = torch.tensor([i for i in idx if i not in held])
            w = fit_probe(diff[train], l2)
            total += torch.nn.functional.softplus(-diff[torch.tensor(parts[k])] @ w).sum().item()
        losses[f"{l2:g}"] = round(total / len(idx), 5)
    return min(PROBE_L2, key=lambda v: losses[f"{v:g}"]), losses


def train_reward_model(dim: str, pairs_path: Path, *, base: str | Path = "default", out: Path, epochs: float = 1.0,
                       lr: float = 2e-4, batch_size: int = 8, eval_frac: float = 0.2, seed: int = 0,
                       lora_r: int = 16, max_length: int = 512, method: str = "lora", force: bool = False,
                       progress: bool = False) -> dict[str, Any]:
    """Train, evaluate and save a reward model; returns reward_model.json's content.

    `method`: `lora` trains LoRA on q/v plus the score head with TRL's RewardTrainer; `probe` keeps the base frozen
    and fits only the score head, by Bradley-Terry logistic regression on the hidden state it reads (L2 strength
    chosen by 5-fold cross-validation on the training pairs): one forward pass per text and no backward, so it
    is many times cheaper on a CPU, and with a few hundred pairs it overfits less."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, set_seed

    from soups.base import fingerprint, resolve_base
    from soups.chat import render_exchange
    from soups.rewards.model import tokenizer_sha256
    from soups.train import trl_backend as backend
    from soups.train.config import LoraSettings, TrainConfig

    check_output(out, force)
    if method not in ("lora", "probe"):
        raise ConfigError(f"--method {method!r}: use lora or probe")
    for flag, value, ok in (("--epochs", epochs, 0 < epochs <= 1000), ("--lr", lr, 0 < lr <= 1),
                            ("--batch-size", batch_size, 1 <= batch_size <= 4096),
                            ("--eval-frac", eval_frac, 0 < eval_frac < 1)):
        if not ok:  # NaN fails every comparison
            raise ConfigError(f"{flag} {value}: out of range; see `soups train-reward --help`")
    pairs = load_pairs(pairs_path)
    rng = random.Random(seed)
    rng.shuffle(pairs)
    n_eval = max(2, int(round(len(pairs) * eval_frac)))
    train_pairs, eval_pairs = pairs[n_eval:], pairs[:n_eval]
    base_dir = resolve_base(base)
    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(base_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tok.pad_token_id

    def ids(p: dict, key: str) -> list[int]:
        return tok(render_exchange(tok, p["prompt"], p[key]), add_special_tokens=False)["input_ids"][-max_length:]

    chosen_ids, rejected_ids = [ids(p, "chosen") for p in train_pairs], [ids(p, "rejected") for p in train_pairs]
    acc_before = pair_accuracy(model, tok, eval_pairs)
    extra: dict[str, Any] = {"method": method}
    if method == "probe":
        from soups.train.progress import StageBar

        if not isinstance(getattr(model, "score", None), torch.nn.Linear) or model.score.bias is not None:
            raise ConfigError(f"--method probe: {type(model).__name__} has no bias-free `score` head; "
                              "use --method lora")
        model.eval()
        with StageBar(f"{dim} reward probe: hidden states", total=len(train_pairs), show=progress) as bar:
            hc, hr = probe_features(model, tok.pad_token_id, chosen_ids, rejected_ids, progress=bar.update)
        l2, cv = choose_l2(hc - hr, seed=seed)
        w = fit_probe(hc - hr, l2)
        with torch.no_grad():
            model.score.weight.copy_(w.to(model.score.weight.dtype)[None])
        extra |= {"l2": l2, "cv_logloss": cv, "train_accuracy": round(float(((hc - hr) @ w > 0).double().mean()), 4)}
        trained = model
    else:
        ds = Dataset.from_dict({"chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
        cfg = TrainConfig(lora=LoraSettings(r=lora_r, alpha=2 * lora_r, dropout=0.0, targets=["q_proj", "v_proj"]))
        work = Path(out).parent / f".{Path(out).name}.run"
        trained = backend.train_reward(model, tok, ds, backend.lora_config(cfg, "SEQ_CLS"), work, lr=lr,
                                       epochs=epochs, batch_size=batch_size, seed=seed, max_length=max_length)
        trained = trained.merge_and_unload() if hasattr(trained, "merge_and_unload") else trained
    trained.eval()
    chosen, rejected = pair_scores(trained, tok, eval_pairs)
    acc = sum(a > b for a, b in zip(chosen, rejected)) / len(eval_pairs)
    every = chosen + rejected
    mean = sum(every) / len(every)
    std = (sum((x - mean) ** 2 for x in every) / len(every)) ** 0.5
    meta = {"dimension": dim, "base_fingerprint": fingerprint(base_dir), "tokenizer_sha256": tokenizer_sha256(tok),
            "accuracy": round(acc, 4), "accuracy_before": round(acc_before, 4),
            "score_mean": round(mean, 6), "score_std": round(std, 6), "train_pairs": len(train_pairs),
            "heldout_pairs": len(eval_pairs), "pairs_file": str(pairs_path), **extra}
    with atomic_dir(out, force=force) as tmp:
        trained.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / "reward_model.json").write_text(finite_json(meta, "reward_model.json", indent=2) + "\n")
    return meta
