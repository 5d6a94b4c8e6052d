"""Rewards: one registry of kinds, one callable convention.

A kind is two things in one module: its config model (pydantic, `kind: Literal["name"]` plus the
fields it needs, each with its help text) and a builder `build(config, dimension) -> RewardFn`.
A dimension file's `reward:` block is validated as the union of the registered kinds, discriminated
by `kind` (`parse_config`, used by soups.dimensions). Shipped kinds, each a module with `Config`
and `build` imported on first use: `rule` (soups/rewards/rule.py, offline scorers), `model`
(soups/rewards/model.py, a reward model from `soups train-reward`), `judge` (soups/rewards/judge.py,
an OpenAI-compatible endpoint), `mix` (soups/rewards/mix.py, a weighted sum of other rewards, e.g. a
rule reward plus a learned one). A new kind is `register_kind(MyConfig, my_build)`.

`get_reward(dimension)` returns a `RewardFn`, a small picklable callable following TRL's
reward-function convention::

    fn(completions: list[str], prompts: list[str] | None = None, **kwargs) -> list[float]

Completions and prompts may also be TRL "conversational" lists of messages; the last assistant
(completion) or user (prompt) message is scored. Ranges by kind: `rule` in [0, 1], `judge` in
[0, 1] (the judge's 1-10 score mapped by (s - 1) / 9), `model` the reward model's raw logit
(or, with `normalize: true`, the logit centred and scaled by its spread on the held-out pairs), `mix`
the weighted sum of its parts.
This package never reads dimension files (soups.dimensions does, and imports it): `dimension` is
any object with `name`, `statement`, `source` and `reward` (its validated config).
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from soups.errors import RewardError

log = logging.getLogger(__name__)

__all__ = ["RewardConfig", "RewardFn", "as_text", "get_reward", "kinds", "parse_config", "register_kind"]


class RewardConfig(BaseModel):
    """Base of every kind's config: `kind` plus the kind's own fields (unknown fields are an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(description="the reward kind: rule, model, judge or a registered one")


@dataclass(frozen=True)
class Kind:
    config: type[RewardConfig]
    build: Callable[[Any, Any], RewardFn]


# kind -> a registered Kind, or the module of a shipped kind (its `Config` and `build`), imported on first use
_KINDS: dict[str, Kind | str] = {
    "rule": "soups.rewards.rule",
    "model": "soups.rewards.model",
    "judge": "soups.rewards.judge",
    "mix": "soups.rewards.mix",
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

    def __init__(self, dimension: str, config: RewardConfig) -> None:
        self.dimension = dimension
        self.config = config
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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dimension!r})"


def kinds() -> list[str]:
    """Registered reward kinds."""
    return list(_KINDS)


def register_kind(config: type[RewardConfig], build: Callable[[Any, Any], RewardFn]) -> None:
    """Add a reward kind: `config` (a RewardConfig with `kind: Literal["name"] = "name"`) and
    `build(config, dimension) -> RewardFn`. Dimension files can use it at once (`reward: {kind: name}`)."""
    name = config.model_fields["kind"].default
    if not isinstance(name, str):
        raise TypeError(f"{config.__name__}: give `kind` a default, e.g. kind: Literal['mine'] = 'mine'")
    _KINDS[name] = Kind(config, build)


def kind(name: str) -> Kind:
    """The kind called `name` (a shipped kind's module is imported now); an unknown name lists the valid ones."""
    entry = _KINDS.get(name)
    if entry is None:
        raise RewardError(f"reward kind {name!r} is unknown; valid kinds: {', '.join(_KINDS)}")
    if isinstance(entry, str):
        module = importlib.import_module(entry)
        entry = _KINDS[name] = Kind(module.Config, module.build)
    return entry


def parse_config(data: Any, context: dict | None = None) -> RewardConfig:
    """A `reward:` block validated by its kind's config model (`kind` defaults to rule); `context` is
    pydantic's validation context (`folder`: the dimension file's folder, for relative paths).

    Raises ValueError for an unknown kind and pydantic's ValidationError for bad fields (so a
    dimension file's errors carry the field's location)."""
    if isinstance(data, RewardConfig):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"must be a mapping like {{kind: rule, scorer: concise}}, got {data!r}")
    name = data.get("kind", "rule")
    if name not in _KINDS:
        raise ValueError(f"kind {name!r} is not one of {', '.join(_KINDS)}")
    return kind(name).config.model_validate({**data, "kind": name}, context=context)


def get_reward(dimension: Any) -> RewardFn:
    """The reward function of a loaded dimension (soups.dimensions.load_dimension(name))."""
    if isinstance(dimension, str):
        raise TypeError(f"get_reward takes a loaded dimension: get_reward(load_dimension({dimension!r}))")
    fn = kind(dimension.reward.kind).build(dimension.reward, dimension)
    log.debug("reward for %s: %r", dimension.name, fn)
    return fn
