"""Rewards: one registry of kinds (`rule`, `model`, `judge`), one callable convention.

`get_reward(dim, **overrides)` returns a `RewardFn`, a small picklable callable following TRL's
reward-function convention::

    fn(completions: list[str], prompts: list[str] | None = None, **kwargs) -> list[float]

Completions and prompts may also be TRL "conversational" lists of messages; the last assistant
(completion) or user (prompt) message is scored. Ranges by kind: `rule` in [0, 1], `judge` in
[0, 1] (the judge's 1-10 score mapped by (s - 1) / 9), `model` the reward model's raw logit.

Overrides replace fields of the dimension's reward spec (soups/rewards/spec.py), e.g.
`get_reward("concise", kind="judge", url="http://127.0.0.1:8000/v1", model="qwen")`;
`flag_overrides(...)` builds them from the CLI flags `--reward`, `--judge-url`, `--judge-model`,
`--judge-key-env` and `--reward-model`.
A new kind is added with `register_kind(name, "module:builder")`.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from soups.errors import RewardError
from soups.rewards.spec import RewardSpec

if TYPE_CHECKING:
    from soups.dimensions import Dimension

log = logging.getLogger(__name__)

__all__ = ["RewardFn", "RewardSpec", "as_text", "get_reward", "kinds", "register_kind"]

# kind -> "module:function" building a RewardFn from (Dimension, RewardSpec); imported on first use
_KINDS: dict[str, str | Callable[..., RewardFn]] = {
    "rule": "soups.rewards.rule:build",
    "model": "soups.rewards.model:build",
    "judge": "soups.rewards.judge:build",
}

_CHATML_USER = re.compile(r"<\|im_start\|>user\s*\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)
_LLAMA3_USER = re.compile(r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.DOTALL)
_SPECIAL = re.compile(r"<\|[^|>]{1,40}\|>")


def as_text(item: Any, role: str = "assistant") -> str:
    """Text of a completion or prompt: a string, or a list of chat messages (last one of `role`).

    A prompt string that carries a chat template (ChatML, Llama 3) is reduced to its last user
    turn, so system prompts and role markers do not leak into the scores.
    """
    if item is None:
        return ""
    if isinstance(item, dict):
        return str(item.get("content") or "")
    if isinstance(item, (list, tuple)):
        msgs = [m for m in item if isinstance(m, dict)]
        picked = [m for m in msgs if m.get("role") == role] or msgs
        return str(picked[-1].get("content") or "") if picked else ""
    text = str(item)
    if role == "user" and "<|" in text:
        for pattern in (_CHATML_USER, _LLAMA3_USER):
            turns = pattern.findall(text)
            if turns:
                return turns[-1].strip()
        return _SPECIAL.sub(" ", text).strip()
    return text


class RewardFn:
    """Base of every reward: picklable, `fn(completions, prompts=None, **kwargs) -> list[float]`."""

    kind = "base"

    def __init__(self, dimension: str, spec: RewardSpec) -> None:
        self.dimension = dimension
        self.spec = spec
        self.__name__ = f"{self.kind}_{dimension}"  # TRL logs rewards under the callable's name

    def __call__(self, completions: list[Any], prompts: list[Any] | None = None, **kwargs: Any) -> list[float]:
        texts = [as_text(c, "assistant") for c in completions]
        if prompts is not None:
            if len(prompts) != len(texts):
                raise ValueError(f"{len(prompts)} prompts for {len(texts)} completions")
            ptexts: list[str] | None = [as_text(p, "user") for p in prompts]
        else:
            ptexts = None
        return [float(x) for x in self.score(texts, ptexts)]

    def score(self, completions: list[str], prompts: list[str] | None) -> list[float]:
        raise NotImplementedError

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise if this reward cannot score the policy's tokens (only `model` rewards can mismatch)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dimension!r})"


def kinds() -> list[str]:
    """Registered reward kinds."""
    return list(_KINDS)


def register_kind(name: str, builder: str | Callable[..., RewardFn]) -> None:
    """Add a reward kind: `builder(dimension, spec) -> RewardFn`, or its "module:function" path."""
    _KINDS[name] = builder


def _builder(kind: str) -> Callable[..., RewardFn]:
    if kind not in _KINDS:
        raise RewardError(f"reward kind {kind!r} is unknown; valid kinds: {', '.join(_KINDS)}")
    target = _KINDS[kind]
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(importlib.import_module(module), attr)
    return target


def resolve_spec(dim: Dimension, **overrides: Any) -> RewardSpec:
    """The dimension's reward spec with `overrides` applied (None values ignored), validated."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return dim.reward
    if "kind" in overrides and overrides["kind"] not in _KINDS:
        raise RewardError(f"reward kind {overrides['kind']!r} is unknown; valid kinds: {', '.join(_KINDS)}")
    same_kind = overrides.get("kind", dim.reward.kind) == dim.reward.kind
    data = dim.reward.model_dump(exclude_unset=True) if same_kind else {}
    data.update(overrides)
    try:
        return RewardSpec.model_validate(data)
    except ValidationError as e:
        fields = list(RewardSpec.model_fields)
        problems = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown reward field; valid: {', '.join(fields)}"
            problems.append(f"{loc}: {msg}" if loc else msg)
        raise RewardError(f"reward for dimension {dim.name!r}: " + "; ".join(problems)) from None


def flag_overrides(
    reward_kind: str | None = None,
    judge_url: str | None = None,
    judge_model: str | None = None,
    judge_key_env: str | None = None,
    reward_model: str | None = None,
) -> dict[str, Any]:
    """Spec overrides from the CLI flags `--reward KIND`, `--judge-url`, `--judge-model`,
    `--judge-key-env` and `--reward-model DIR` (for `get_reward(dim, **overrides)`)."""
    if judge_url and reward_model:
        raise RewardError("--judge-url and --reward-model both given; pick one reward (judge or model)")
    kind = reward_kind or ("judge" if judge_url or judge_model else "model" if reward_model else None)
    if kind is not None and kind not in _KINDS:
        raise RewardError(f"--reward {kind}: unknown reward kind; valid kinds: {', '.join(_KINDS)}")
    out: dict[str, Any] = {"kind": kind}
    if kind == "judge":
        out.update(url=judge_url, model=judge_model, api_key_env=judge_key_env)
    elif judge_url or judge_model or judge_key_env:
        raise RewardError(f"--judge-url/--judge-model/--judge-key-env need --reward judge, not --reward {kind}")
    if kind == "model":
        out["path"] = reward_model
    elif reward_model:
        raise RewardError(f"--reward-model needs --reward model, not --reward {kind}")
    return {k: v for k, v in out.items() if v is not None}


def get_reward(dim: str | Dimension, **overrides: Any) -> RewardFn:
    """The reward function of a dimension (name, YAML path or Dimension), spec fields overridable."""
    from soups.dimensions import load_dimension

    d = load_dimension(dim)
    spec = resolve_spec(d, **overrides)
    fn = _builder(spec.kind)(d, spec)
    log.debug("reward for %s: %r", d.name, fn)
    return fn
