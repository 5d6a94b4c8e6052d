"""Dimensions: one axis of preference each, defined by `experts/<name>.yaml`, the single source.

A dimension file names the axis, describes it in one line, gives the preference statement a
judge (or a prompt) uses, verbatim from the Personalized Soups paper for the shipped six, its
opposite if any, its reward (any registered kind, soups/rewards/) and the held-out metric that
evaluates it (soups/eval/scorers.py) with the direction it wants:

    name: concise
    description: Short answers that still answer the question.
    statement: Generate a response that is concise and to the point without being verbose.
    opposite: informative
    reward:
      kind: rule          # rule | model | judge, or a registered kind
      scorer: concise     # a rule scorer, or package.module:function
    heldout:
      metric: words       # a held-out metric, or package.module:function(text) -> float
      better: lower

Every `experts/*.yaml` is a dimension except `experts/default.yaml` (the default expert set)
and anything under `experts/configs/`. A user adds a dimension by adding a file. The folder is
`$SOUPS_EXPERTS_DIR`, default `<project>/experts`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, ValidationInfo, field_validator

from soups.config import experts_dir
from soups.errors import ConfigError
from soups.rewards import RewardConfig, parse_config

log = logging.getLogger(__name__)

NOT_DIMENSIONS = {"default.yaml"}  # the default expert set, not a dimension
_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

__all__ = ["Dimension", "Heldout", "dimension_files", "list_dimensions", "load_dimension"]


class Heldout(BaseModel):
    """How evaluation measures the dimension: a metric (independent of the reward) and its good direction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="a held-out metric (grade, words, distinct, sentiment) or package.module:function")
    better: Literal["higher", "lower"] = Field(description="which way the dimension moves the metric")

    @property
    def direction(self) -> int:
        return 1 if self.better == "higher" else -1


class Dimension(BaseModel):
    """One preference dimension (see module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Identifier, lowercase: the file stem and the expert's name.")
    description: str = Field(description="One line for `soups dims`.")
    statement: str = Field(description="The preference statement given to a judge (the paper's wording).")
    opposite: str | None = Field(None, description="The dimension at the other end of this axis, if any.")
    paper_id: str | None = Field(None, description="The paper's label (P1A..P3B) for the shipped six.")
    reward: SerializeAsAny[RewardConfig] = Field(description="How training scores it: a reward kind and its fields.")
    heldout: Heldout | None = Field(None, description="How evaluation measures it (held-out metric, direction).")
    source: Path | None = Field(None, exclude=True, description="The YAML file it was loaded from.")

    @field_validator("reward", mode="wrap")
    @classmethod
    def _reward_of_its_kind(cls, v: Any, handler: Any, info: ValidationInfo) -> RewardConfig:
        return parse_config(v, info.context)

    @field_validator("name", "opposite")
    @classmethod
    def _check_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid dimension name (lowercase letters, digits, '-', '_')")
        return v

    @field_validator("description", "statement")
    @classmethod
    def _non_empty(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("must not be empty")
        return v


def dimension_files(root: Path | None = None) -> dict[str, Path]:
    """Dimension name -> YAML file, for every dimension file in `root` (default: the experts folder)."""
    root = Path(root) if root is not None else experts_dir()
    if not root.is_dir():
        return {}
    return {p.stem: p for p in sorted(root.glob("*.yaml")) if p.name not in NOT_DIMENSIONS}


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location (deepest node found)."""
    line = None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == key]
            if not match:
                break
            k, node = match[0]
            line = k.start_mark.line + 1
        else:
            break
    return line


def _parse(path: Path) -> Dimension:
    from soups.io.files import read_text

    text = read_text(path, None, ConfigError, "a dimension file is YAML text (see `soups dims`)")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(e, 'problem', None) or e}); fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{path}: YAML nested too deeply; fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: a dimension file must be a YAML mapping (name, description, statement, ...)")
    data.setdefault("name", path.stem)
    try:
        dim = Dimension.model_validate({**data, "source": path}, context={"folder": path.parent})
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "(top level)"
            line = _line_of(node, loc) or (_line_of(node, loc[:-1]) if loc else None)
            where = f"{path}:{line}" if line else str(path)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: field `{field}`: {msg}")
        raise ConfigError("; ".join(problems)) from None
    if dim.name != path.stem:
        raise ConfigError(f"{path}: field `name` is {dim.name!r} but the file is {path.name}; make them match")
    return dim


def load_dimension(name_or_path: str | Path | Dimension) -> Dimension:
    """A dimension by name (`concise`) or by YAML path; unknown names list the known ones."""
    if isinstance(name_or_path, Dimension):
        return name_or_path
    spec = str(name_or_path)
    path = Path(spec).expanduser()
    if spec.endswith((".yaml", ".yml")) or "/" in spec or path.is_file():
        if not path.is_file() and (experts_dir() / spec).is_file():
            path = experts_dir() / spec
        if not path.is_file():
            raise ConfigError(f"dimension file {spec}: not found; give a dimension name or an existing YAML file")
        return _parse(path)
    files = dimension_files()
    if spec not in files:
        known = ", ".join(files) or "(none)"
        raise ConfigError(
            f"unknown dimension {spec!r}; known: {known} (add {experts_dir() / (spec + '.yaml')} to define it)"
        )
    return _parse(files[spec])


def list_dimensions(root: Path | None = None) -> list[Dimension]:
    """Every dimension in the experts folder, the paper's six first (P1A..P3B), then by name.

    Also checks that each `opposite` names a known dimension.
    """
    dims = [_parse(p) for p in dimension_files(root).values()]
    names = {d.name for d in dims}
    for d in dims:
        if d.opposite is not None and d.opposite not in names:
            raise ConfigError(
                f"{d.source}: field `opposite` is {d.opposite!r}, not a known dimension ({', '.join(sorted(names))})"
            )
    return sorted(dims, key=lambda d: (d.paper_id is None, d.paper_id or "", d.name))
