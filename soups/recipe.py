"""The soup: one validated type from recipe file and CLI flags to users.yaml, evaluation and the model card.

A soup names its experts with their declared weights (in order), the base, the merge method and
the method's parameters, whether weights are normalized, and the output format and dtype. As a
recipe (`merge_recipes/*.yaml`; the method's parameters sit at the top level):

```yaml
base: default            # the embedded default, or a path
method: svd
rank: 16                 # a parameter of `svd` (declared in soups/merge/methods.py)
normalize: true
format: adapter
dtype: float32           # optional: the base's dtype for full soups, float32 for adapters
experts:                 # name under experts/ or path -> weight, in order
  concise: 1
  friendly: 0
  expert: 1
```
`load_soup(path)` reads a recipe, `soup_from_flags(...)` builds one from command-line flags
(flags override a recipe's fields), `Soup.build(...)` from Python values; `to_yaml()` writes it
back, and the model card embeds that, so `soups merge --recipe <card's recipe>` rebuilds the same
bytes. All problems are reported together, each naming what the user wrote: the recipe file and
field, or the flag.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails

from soups.errors import ConfigError, WeightsError

DTYPES = ("bfloat16", "float16", "float32", "float64")
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}
# how each field is written on the command line (soups merge)
FLAGS = {"base": "--base", "method": "--method", "normalize": "--no-normalize", "format": "--format",
         "dtype": "--dtype", "experts": "--weights"}


class Soup(BaseModel):
    """A personalized soup (module docstring). Immutable and validated on creation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field("default", description="`default` (the embedded base) or a model directory")
    method: str = Field("exact", description="merge method (soups/merge/methods.py)")
    params: dict[str, Any] = Field(default_factory=dict, validate_default=True,
                                   description="the method's parameters, e.g. svd's rank")
    normalize: bool = Field(True, description="divide the weights by their sum (a soup average)")
    format: Literal["full", "adapter"] = Field("full", description="full checkpoint or one LoRA adapter")
    dtype: str | None = Field(None, description="output dtype (default: the base's for full, float32 for adapter)")
    experts: dict[str, float] = Field(..., description="expert name (under experts/) or path -> declared weight")

    @model_validator(mode="before")
    @classmethod
    def _method_params_at_top_level(cls, data: Any) -> Any:
        """Keys that are not soup fields are the method's parameters (as a recipe writes them)."""
        if isinstance(data, Mapping):
            extra = {k: v for k, v in data.items() if k not in cls.model_fields}
            if extra:
                data = {k: v for k, v in data.items() if k in cls.model_fields}
                data["params"] = {**dict(data.get("params") or {}), **extra}
        return data

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        from soups.merge.methods import METHODS

        if v not in METHODS:
            raise ValueError(f"{v!r} is unknown; choose one of: {', '.join(METHODS)}")
        return v

    @field_validator("params", mode="wrap")
    @classmethod
    def _method_params(cls, v: Any, handler: Callable, info: ValidationInfo) -> dict[str, Any]:
        from soups.merge.methods import METHODS

        v = handler(v)
        method = METHODS.get(info.data.get("method"))
        if method is None:
            return v
        # every problem located at the parameter's own name, as the user wrote it; unknown names included
        details = [InitErrorDetails(type="extra_forbidden", loc=(k,), input=x) for k, x in v.items()
                   if k not in method.params.model_fields]
        try:
            params = method.params.model_validate({k: x for k, x in v.items() if k in method.params.model_fields})
        except ValidationError as e:
            details = [InitErrorDetails(type=x["type"], loc=x["loc"], input=x["input"], ctx=x.get("ctx", {}))
                       for x in e.errors()] + details
        if details:
            raise ValidationError.from_exception_data("params", details)
        return params.model_dump()

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | None) -> str | None:
        if v is None:
            return None
        name = DTYPE_ALIASES.get(v.lower(), v.lower()).removeprefix("torch.")
        if name not in DTYPES:
            raise ValueError(f"{v!r} is not supported; use bfloat16, float16 or float32")
        return name

    @field_validator("experts")
    @classmethod
    def _weights(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        from soups.weights import weight_problem

        if not v:
            raise ValueError("needs at least one expert")
        problem = weight_problem(list(v.values()), [short_name(n) for n in v])
        if problem:
            raise ValueError(problem)
        total = math.fsum(v.values())
        if info.data.get("normalize", True) and total <= 0:
            raise ValueError(f"weights sum to {total:g}; a soup average needs a positive sum "
                             "(use --no-normalize / `normalize: false` for task arithmetic)")
        return v

    # ------------------------------------------------------------------ building
    @classmethod
    def parse(cls, data: Mapping[str, Any], label: Callable[[tuple], str]) -> Soup:
        """Validate `data`; every problem in one ConfigError, each named by `label(error location)`."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                msg = err["msg"].removeprefix("Value error, ")
                in_params = err["loc"][:1] == ("params",)
                if err["type"] == "extra_forbidden":
                    msg = f"not a soup field nor a parameter of method {data.get('method', 'exact')}" if in_params \
                        else "not a soup field"
                if err["type"] == "missing" and in_params:
                    msg = f"method {data.get('method')} needs this parameter"
                value = err.get("input")
                if isinstance(value, (str, int, float)) and err["type"] not in ("missing", "extra_forbidden") \
                        and repr(value) not in msg:
                    msg += f", got {value!r}"
                problems.append(f"{label(tuple(err['loc']))}: {msg}")
            error = WeightsError if all(loc_field(tuple(err["loc"])) == "experts" for err in e.errors()) \
                else ConfigError
            raise error("; ".join(problems)) from None

    @classmethod
    def build(cls, experts: Sequence[str | Path] | None, weights: str | Sequence[float] | Mapping[str, float],
              flag: str = "--weights", **fields: Any) -> Soup:
        """A soup from Python values: `weights` positional over `experts` (default: the default set),
        named (`{"concise": 1}` / `"concise=1"`) or as text (`"1,0,1"`); `fields` as in a recipe
        (method parameters included, e.g. `rank=16`). Errors name the `soups merge` flags (the weights
        as `flag`)."""
        names = [str(e) for e in experts] if experts else default_expert_names()
        data = {k: str(v) if k == "base" else v for k, v in fields.items() if v is not None}
        data["experts"] = expert_weights(names, weights, flag)
        return cls.parse(data, lambda loc: flag if loc_field(loc) == "experts" else flag_label(loc))

    # ------------------------------------------------------------------ reading
    @property
    def names(self) -> list[str]:
        """The experts' short names (a directory's name, else the name under experts/), in order."""
        return [short_name(n) for n in self.experts]

    @property
    def weights(self) -> list[float]:
        """The declared weights, in order."""
        return list(self.experts.values())

    def applied(self) -> list[float]:
        """The weights the merge applies: w = v / sum(v), or v with normalize off (DESIGN.md "Weights")."""
        from soups.weights import normalize_weights

        return normalize_weights(self.weights, self.names, self.normalize)

    def declared(self) -> list[str]:
        """The expert specs with a non-zero weight."""
        return [e for e, w in self.experts.items() if w != 0]

    def method_params(self):
        """The method's parameters as its pydantic model (e.g. SvdParams(rank=16))."""
        from soups.merge.methods import get_method

        return get_method(self.method).params.model_validate(self.params)

    def recipe(self) -> dict[str, Any]:
        """The recipe mapping (method parameters at the top level, dtype only when set)."""
        out: dict[str, Any] = {"base": self.base, "method": self.method, **self.params,
                               "normalize": self.normalize, "format": self.format}
        if self.dtype is not None:
            out["dtype"] = self.dtype
        return out | {"experts": dict(self.experts)}

    def to_yaml(self) -> str:
        """The soup as recipe YAML; `load_soup` reads it back to an equal soup."""
        import yaml

        return yaml.safe_dump(self.recipe(), sort_keys=False)


def short_name(spec: str | Path) -> str:
    """An expert's name: a directory's last component, else the name as given."""
    return Path(spec).name if Path(spec).is_dir() else str(spec)


def loc_field(loc: tuple) -> str:
    """The field a pydantic error location is about: a method parameter's own name, else the top field."""
    if loc[:1] == ("params",) and len(loc) > 1:
        return str(loc[1])
    return str(loc[0]) if loc else "(soup)"


def flag_label(loc: tuple) -> str:
    """How a field is written on the command line (`--param rank` for a method parameter)."""
    field = loc_field(loc)
    if field in FLAGS:
        return FLAGS[field]
    return "--rank" if field == "rank" else f"--param {field}"


def expert_weights(names: Sequence[str], weights: str | Sequence[float] | Mapping[str, float],
                   flag: str = "--weights") -> dict[str, float]:
    """Expert spec -> declared weight, from positional / named / text weights over `names`."""
    from soups.weights import parse_weights, weights_from_mapping

    short = [short_name(n) for n in names]
    if len(set(short)) != len(short):
        dup = next(n for n in short if short.count(n) > 1)
        raise ConfigError(f"--experts: {dup!r} is listed twice; name each expert once")
    if isinstance(weights, str):
        values = parse_weights(weights, short, flag)
    elif isinstance(weights, Mapping):
        values = weights_from_mapping(weights, short, flag)
    else:
        values = [float(v) for v in weights]
        if len(values) != len(names):
            raise WeightsError(f"{flag}: {len(values)} weight(s) for {len(names)} expert(s) ({', '.join(short)}); "
                               "give one per expert")
    return dict(zip((str(n) for n in names), values))


def default_expert_names() -> list[str]:
    """The default expert set, in the order positional weights follow (experts/default.yaml)."""
    import yaml

    from soups.config import experts_dir

    path = experts_dir() / "default.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: missing; pass --experts explicitly")
    data = yaml.safe_load(path.read_text()) or {}
    names = data.get("experts")
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{path}: `experts` should be a non-empty list of expert names")
    return [str(n) for n in names]


def _read_yaml(path: Path) -> dict:
    from soups.io.files import read_yaml

    data = read_yaml(path, "--recipe", hint="a recipe is a YAML mapping with at least `experts:`", expect=None)
    if not isinstance(data, dict):
        raise ConfigError(f"--recipe {path}: a recipe is a mapping with at least `experts:`, got "
                          f"{type(data).__name__}")
    return data


def recipe_path(path: Path | str) -> Path:
    """A recipe file; a bare name resolves under merge_recipes/."""
    from soups.config import recipes_dir
    from soups.io.files import input_file

    path = Path(path)
    if not os.path.lexists(path) and (recipes_dir() / f"{path}.yaml").is_file():
        path = recipes_dir() / f"{path}.yaml"
    known = sorted(p.stem for p in recipes_dir().glob("*.yaml")) if recipes_dir().is_dir() else []
    return input_file(path, "--recipe", ConfigError,
                      f"give a recipe file or a name under merge_recipes/ ({', '.join(known) or 'none'})")


def load_soup(path: Path | str) -> Soup:
    """Read and validate a recipe (a name resolves under merge_recipes/); errors name the file and field."""
    path = recipe_path(path)
    return Soup.parse(_read_yaml(path), recipe_label(path))


def recipe_label(path: Path) -> Callable[[tuple], str]:
    """How a recipe file's field is named in errors: `FILE: field `name``."""
    return lambda loc: f"{path}: field `{loc_field(loc)}`"


def soup_from_flags(
    recipe: Path | str | None = None,
    *,
    experts: Sequence[str] | None = None,
    weights: str | None = None,
    weights_from: Path | None = None,
    base: str | None = None,
    method: str | None = None,
    params: Mapping[str, Any] | None = None,
    format: str | None = None,
    no_normalize: bool = False,
    dtype: str | None = None,
) -> Soup:
    """The soup `soups merge` flags describe: a recipe (optional) with the given flags overriding its fields.

    `--weights` is positional over the expert order (from `--experts`, the recipe, or experts/default.yaml)
    or named; `--weights-from` reads a user.json. Errors name the flag, or the recipe file and field."""
    from soups.weights import weights_from_file

    path = recipe_path(recipe) if recipe is not None else None
    data = load_soup(path).recipe() if path is not None else {}  # a recipe is valid on its own
    names = list(experts) if experts else None
    if weights_from is not None:
        if weights is not None:
            raise ConfigError("--weights and --weights-from both given; use one")
        names_from, weights = weights_from_file(weights_from)
        names = names or names_from
    from_flags = {"base": base, "method": method, "format": format, "dtype": dtype,
                  "normalize": False if no_normalize else None}
    from_flags = {k: v for k, v in from_flags.items() if v is not None}
    if method is not None and method != data.get("method", "exact"):  # the recipe's parameters were for its method
        data = {k: v for k, v in data.items() if k in Soup.model_fields}
    fields = {**data, **from_flags, **dict(params or {})}
    flagged = set(from_flags) | set(params or {})
    recipe_weights = fields.pop("experts", None)
    if weights is not None or names is not None:
        flagged.add("experts")
    if names is None and recipe_weights:
        names, weights = list(recipe_weights), weights if weights is not None else list(recipe_weights.values())
    if weights is None:
        raise ConfigError("--weights is required (or --recipe / --weights-from); e.g. --weights 1,0,1")
    fields["experts"] = expert_weights(names or default_expert_names(), weights)

    in_recipe = recipe_label(path) if path is not None else flag_label
    return Soup.parse(fields, lambda loc: flag_label(loc) if loc_field(loc) in flagged else in_recipe(loc))
