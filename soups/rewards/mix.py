"""Mixed rewards: a weighted sum of other rewards, e.g. a rule reward plus a learned one.

    reward:
      kind: mix
      parts:
        - {weight: 0.6, reward: {kind: rule, scorer: unfriendly}}
        - {weight: 0.4, squash: sigmoid, gate: true,
           reward: {kind: model, path: rewards/unfriendly, normalize: true}}

The score is sum_i weight_i * squash_i(part_i) [* gate(text)], where `squash` is `none` (the part's own scale)
or `sigmoid` (maps a reward model's unbounded logit into (0, 1), so it sits on the rule rewards' scale; use it with the
model's `normalize: true`, which centres and scales the logit by its spread on held-out pairs first), and `gate: true`
multiplies the part by the rule rewards' shared gates (soups.rewards.rule.gate: quality, relevance, novelty, 10+
words), since a reward model learned from a few hundred pairs knows nothing of loops or salad. Parts
may be of any kind, a `mix` included; relative paths inside a part are relative to the dimension file, as
at the top level. `score_parts` returns every part's value, for logs and debugging.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from soups.rewards import RewardConfig, RewardFn, kind, parse_config


class Part(BaseModel):
    """One term of a mix: `weight * squash(reward)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: float = Field(1.0, description="the part's weight in the sum (negative: a penalty)")
    squash: Literal["none", "sigmoid"] = Field("none", description="sigmoid: map an unbounded score into (0, 1)")
    gate: bool = Field(False, description="multiply the part by the rule rewards' shared gates (quality, relevance "
                       "to the prompt, novelty, 10+ words), so loops, salad or an off-topic answer earn nothing")
    reward: RewardConfig = Field(description="a reward block of any kind, as under a dimension's `reward:`")

    @field_validator("reward", mode="before")
    @classmethod
    def _parse(cls, v: Any, info: ValidationInfo) -> RewardConfig:
        return parse_config(v, context=info.context)

    @field_validator("weight")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class Config(RewardConfig):
    """`reward: {kind: mix, parts: [{weight, squash, reward}, ...]}`."""

    kind: Literal["mix"] = "mix"
    parts: list[Part] = Field(min_length=1, description="the rewards to add up, each with its weight and squash")


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


class MixReward(RewardFn):
    """Weighted sum of its parts' rewards (picklable when its parts are)."""

    kind = "mix"

    def __init__(self, dimension: str, config: Config, parts: list[RewardFn]) -> None:
        super().__init__(dimension, config)
        self.parts = parts

    def score_parts(self, completions: list[str], prompts: list[str] | None) -> list[list[float]]:
        """Each part's squashed value (before its weight), one list per part."""
        from soups.rewards.rule import gate

        ps = prompts or [None] * len(completions)
        out = []
        for part, fn in zip(self.config.parts, self.parts):
            values = [_sigmoid(v) if part.squash == "sigmoid" else float(v) for v in fn.score(completions, prompts)]
            if part.gate:
                values = [v * gate(c, p) for v, c, p in zip(values, completions, ps)]
            out.append(values)
        return out

    def score(self, completions: list[str], prompts: list[str] | None) -> list[float]:
        values = self.score_parts(completions, prompts)
        weights = [p.weight for p in self.config.parts]
        return [sum(w * v[i] for w, v in zip(weights, values)) for i in range(len(completions))]


def build(config: Config, dim: Any) -> MixReward:
    """Registry builder for kind `mix`: each part built by its own kind now (so a bad part fails at once)."""
    return MixReward(dim.name, config, [kind(p.reward.kind).build(p.reward, dim) for p in config.parts])
