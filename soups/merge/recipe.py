"""Merge recipes (`merge_recipes/*.yaml`): a saved soup, typed and validated on load.

```yaml
base: default            # the embedded default, or a path
method: exact
normalize: true
format: full
experts:                 # name or path -> weight, in order
  concise: 1
  friendly: 0
  expert: 1
```
CLI flags override recipe fields. All problems in a file are reported together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from soups.errors import ConfigError


class Recipe(BaseModel):
    """A saved soup."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field("default", description="`default` (the embedded base) or a model directory")
    method: str = Field("exact", description="merge method: exact, linear or svd")
    normalize: bool = Field(True, description="divide the weights by their sum (a soup average)")
    format: Literal["full", "adapter"] = Field("full", description="full checkpoint or one LoRA adapter")
    rank: int | None = Field(None, description="target rank for method svd")
    dtype: str | None = Field(None, description="output dtype (default: the base's for full, float32 for adapter)")
    experts: dict[str, float] = Field(..., description="expert name or path -> weight")

    @field_validator("experts")
    @classmethod
    def _some_experts(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("needs at least one expert")
        return v

    @field_validator("rank")
    @classmethod
    def _positive_rank(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"`rank` should be positive, got {v}")
        return v


def load_recipe(path: Path | str) -> Recipe:
    """Load and validate a recipe YAML; a name resolves under merge_recipes/."""
    import yaml

    from soups.config import recipes_dir

    path = Path(path)
    if not path.is_file() and (recipes_dir() / f"{path}.yaml").is_file():
        path = recipes_dir() / f"{path}.yaml"
    if not path.is_file():
        raise ConfigError(f"--recipe {path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe is a mapping with at least `experts:`")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"`{'.'.join(map(str, err['loc'])) or '(root)'}`: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{path}: {problems}") from None
