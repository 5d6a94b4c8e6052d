"""Model rewards: a sequence-classification reward model trained on preference pairs.

A reward-model directory (written by `soups train-reward`) is a Hugging Face model directory
(`AutoModelForSequenceClassification`, one label) with its tokenizer, plus `reward_model.json`:
`{"dimension": ..., "base_fingerprint": ..., "tokenizer_sha256": ...}`. A completion is scored
as the model's logit (unbounded; higher = more preferred) on `format_example(tokenizer, prompt,
completion)`: the user prompt and the assistant answer through the tokenizer's chat template,
the same text TRL's reward trainer sees for conversational pairs. The reward model reads text
with its own tokenizer, so it need not share the policy's (`tokenizer_sha256` records which one
it was trained with).

Config (`reward: {kind: model, path: DIR}`): `path` (relative paths are relative to the
dimension file), `max_length`, `batch_size`, `normalize` (centre and scale the logit by
`score_mean` / `score_std` in reward_model.json: the logits' spread over the held-out pairs' answers,
which `soups train-reward` records; a logit's level is arbitrary, only differences are trained).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from soups.chat import render_exchange
from soups.errors import RewardError
from soups.rewards import RewardConfig, RewardFn

log = logging.getLogger(__name__)

META = "reward_model.json"
META_FIELDS = ("dimension", "base_fingerprint", "tokenizer_sha256")


class Config(RewardConfig):
    """`reward: {kind: model, path: DIR}`."""

    kind: Literal["model"] = "model"
    path: str = Field(description="reward-model directory from `soups train-reward` (relative: to the YAML file)")
    max_length: int = Field(1024, gt=0, description="truncate prompt + completion to this many tokens")
    batch_size: int = Field(8, gt=0, description="scoring batch size")
    normalize: bool = Field(False, description="score (logit - score_mean) / score_std, the logit's spread on the "
                            "held-out pairs (recorded in reward_model.json), so 0 is a typical answer and 1 a "
                            "standard deviation better")

    @field_validator("path")
    @classmethod
    def _relative_to_the_file(cls, v: str, info: ValidationInfo) -> str:
        folder = (info.context or {}).get("folder")
        if folder is not None and not Path(v).expanduser().is_absolute():
            return str((Path(folder) / v).resolve())
        return v


def tokenizer_sha256(tokenizer: Any) -> str:
    """Identity of a tokenizer (object or directory): sha256 of its vocabulary (token -> id,
    added tokens included) and special tokens. The chat template is not part of it."""
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    special = {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())}
    blob = json.dumps({"vocab": vocab, "special": special}, ensure_ascii=False, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def read_meta(path: str | Path) -> dict[str, Any]:
    """`reward_model.json` of a reward-model directory, checked for its fields."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise RewardError(f"reward model {path}: not a directory; train one with `soups train-reward --dim NAME`")
    meta_file = path / META
    if not meta_file.is_file():
        raise RewardError(f"reward model {path}: no {META}; is this a directory written by `soups train-reward`?")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise RewardError(f"{meta_file}:{e.lineno}: invalid JSON ({e.msg})") from None
    missing = [f for f in META_FIELDS if not isinstance(meta, dict) or f not in meta]
    if missing:
        raise RewardError(f"{meta_file}: missing field(s) {', '.join(missing)}; re-run `soups train-reward`")
    return meta


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


class ModelReward(RewardFn):
    """A reward model as a reward function; the model loads on first use and is not pickled."""

    kind = "model"

    def __init__(self, dimension: str, config: Config) -> None:
        super().__init__(dimension, config)
        self.path = Path(config.path).expanduser()
        self.meta = read_meta(self.path)
        if self.meta["dimension"] != dimension:
            log.warning("reward model %s: trained for %r, used for %r", self.path, self.meta["dimension"], dimension)
        stats = ("score_mean", "score_std")
        if config.normalize and not all(isinstance(self.meta.get(k), (int, float)) for k in stats):
            raise RewardError(f"reward model {self.path}: `normalize: true` needs score_mean and score_std in {META}; "
                              "re-train it with `soups train-reward` (which records them)")
        self._shift = float(self.meta["score_mean"]) if config.normalize else 0.0
        self._scale = max(float(self.meta["score_std"]), 1e-6) if config.normalize else 1.0
        self._model: Any = None
        self._tokenizer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None, "_tokenizer": None}

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), loaded once: eval mode, float32 on CPU, pad token set."""
        if self._model is None:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(str(self.path))
                device = _device()
                dtype = torch.float32 if device == "cpu" else torch.bfloat16
                model = AutoModelForSequenceClassification.from_pretrained(str(self.path), dtype=dtype)
            except (OSError, ValueError) as e:
                why = " ".join(str(e).split())[:200]
                raise RewardError(f"reward model {self.path}: cannot load ({why})") from None
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            tok.truncation_side = "left"  # keep the end of the answer
            if model.config.pad_token_id is None:
                model.config.pad_token_id = tok.pad_token_id
            self._model, self._tokenizer = model.to(device).eval(), tok
        return self._model, self._tokenizer

    @property
    def model(self) -> Any:
        return self.load()[0]

    @property
    def tokenizer(self) -> Any:
        return self.load()[1]

    def score(self, completions: list[str], prompts: list[str] | None) -> list[float]:
        import torch

        model, tok = self.load()
        ps = prompts or [None] * len(completions)
        texts = [render_exchange(tok, p, c) for p, c in zip(ps, completions)]
        out: list[float] = []
        bs = self.config.batch_size
        for i in range(0, len(texts), bs):
            enc = tok(texts[i : i + bs], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.config.max_length, add_special_tokens=False)
            with torch.no_grad():
                logits = model(**enc.to(model.device)).logits
            out.extend(((logits[:, 0].float() - self._shift) / self._scale).tolist())
        return out


def build(config: Config, dim: Any) -> ModelReward:
    """Registry builder for kind `model`."""
    return ModelReward(dim.name, config)
