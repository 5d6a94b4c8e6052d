"""RewardSpec: how a dimension is scored (the `reward:` block of `experts/<dim>.yaml`).

One typed model for all kinds; the fields a kind does not use stay None. Kinds:
- `rule`  (offline, soups/rewards/rule.py): `scorer` (default: the dimension's name), `params`.
- `model` (soups/rewards/model.py): `path` to a reward-model directory from `soups train-reward`.
- `judge` (soups/rewards/judge.py): `url` and `model` of an OpenAI-compatible chat endpoint,
  the API key read from the environment variable `api_key_env`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RewardSpec(BaseModel):
    """A dimension's reward: `kind` plus the fields that kind needs (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field("rule", description="Reward kind: rule | model | judge.")
    # rule
    scorer: str | None = Field(None, description="rule: scorer name (default: the dimension's name).")
    params: dict[str, Any] = Field(default_factory=dict, description="rule: keyword arguments for the scorer.")
    # model
    path: str | None = Field(None, description="model: reward-model directory (relative paths: to the YAML file).")
    max_length: int = Field(1024, gt=0, description="model: truncate prompt+completion to this many tokens.")
    batch_size: int = Field(8, gt=0, description="model: scoring batch size.")
    # judge
    url: str | None = Field(None, description="judge: OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1.")
    model: str | None = Field(None, description="judge: model name sent to the endpoint.")
    api_key_env: str = Field("OPENAI_API_KEY", description="judge: environment variable holding the API key.")
    timeout: float = Field(60.0, gt=0, description="judge: seconds per HTTP request.")
    retries: int = Field(3, ge=0, description="judge: retries after a failed request (exponential backoff).")
    backoff: float = Field(1.0, ge=0, description="judge: first retry delay in seconds (doubles each retry).")
    concurrency: int = Field(4, gt=0, description="judge: parallel requests per batch.")
    max_tokens: int = Field(16, gt=0, description="judge: max tokens of the judge's answer.")
    temperature: float = Field(0.0, ge=0, description="judge: sampling temperature of the judge.")
    cache: bool = Field(True, description="judge: cache answers under $SOUPS_HOME/judge-cache.")

    @model_validator(mode="after")
    def _kind_fields(self) -> RewardSpec:
        from soups.rewards import kinds  # the registry is the source of truth (user kinds included)

        problems = []
        if self.kind not in kinds():
            problems.append(f"kind {self.kind!r} is not one of {', '.join(kinds())}")
        if self.kind == "model" and not self.path:
            problems.append("kind 'model' needs `path` (a reward-model directory from `soups train-reward`)")
        if self.kind == "judge":
            if not self.url:
                problems.append("kind 'judge' needs `url` (an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1)")
            if not self.model:
                problems.append("kind 'judge' needs `model` (the judge model's name at that endpoint)")
        if problems:
            raise ValueError("; ".join(problems))
        return self
