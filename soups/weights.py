"""Weight vectors: parse `--weights`, validate, normalize (DESIGN.md "Weights").

`1,0,1` is positional over the expert order; `concise=1,expert=1` names experts (unnamed
ones get 0). By default the vector becomes a soup average w = v / sum(v); with
`normalize=False` it is kept as is (task arithmetic). Zero-weight experts are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from soups.errors import WeightsError

MAX_WEIGHT = 1e6  # bigger weights only overflow sums (or, unnormalized, the model's weights)


def parse_weights(text: str, names: Sequence[str], flag: str = "--weights") -> list[float]:
    """Parse '1,0,1' (positional over `names`) or 'a=1,b=0.5' (named) into one float per name."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise WeightsError(f"{flag} is empty; give one number per expert, e.g. {flag} {','.join('1' * len(names))}")
    if all("=" in s for s in items):
        named: dict[str, float] = {}
        for s in items:
            key, _, val = s.partition("=")
            named[key.strip()] = _number(val, f"{flag} {key.strip()}")
        return weights_from_mapping(named, names, flag)
    if any("=" in s for s in items):
        raise WeightsError(f"{flag} {text}: mix of named and positional weights; use all `name=value` or all values")
    values = [_number(s, flag) for s in items]
    if len(values) != len(names):
        raise WeightsError(
            f"{flag} {text}: {len(values)} weight(s) for {len(names)} expert(s) ({', '.join(names)}); "
            "give one per expert"
        )
    return values


def weights_from_mapping(named: Mapping[str, float], names: Sequence[str], flag: str = "--weights") -> list[float]:
    """Named weights -> positional list over `names`; unknown names are an error, missing ones are 0."""
    unknown = [k for k in named if k not in names]
    if unknown:
        raise WeightsError(f"{flag}: unknown expert {unknown[0]!r}; the experts are {', '.join(names)}")
    return [float(named.get(n, 0.0)) for n in names]


def _number(s: str, where: str) -> float:
    try:
        return float(s)
    except ValueError:
        raise WeightsError(f"{where}: {s.strip()!r} is not a number") from None


def weight_problem(values: Sequence[float], names: Sequence[str]) -> str | None:
    """What is wrong with a weight vector (NaN/inf, all zero), or None."""
    for n, v in zip(names, values):
        if not math.isfinite(v):
            return f"weight of {n} is {v}; weights must be finite numbers"
        if abs(v) > MAX_WEIGHT:
            return f"weight of {n} is {v:g}; weights must lie within +-{MAX_WEIGHT:g} (only their ratios matter)"
    if all(v == 0 for v in values):
        return "all weights are zero; give at least one expert a non-zero weight"
    return None


def check_weights(values: Sequence[float], names: Sequence[str], flag: str = "--weights") -> None:
    """Reject a wrong count, NaN/inf, and an all-zero vector."""
    if len(values) != len(names):
        raise WeightsError(f"{flag}: {len(values)} weight(s) for {len(names)} expert(s); give one per expert")
    problem = weight_problem(values, names)
    if problem:
        raise WeightsError(f"{flag}: {problem}")


def normalize_weights(values: Sequence[float], names: Sequence[str], normalize: bool = True) -> list[float]:
    """w = v / sum(v) (soup average, needs sum > 0), or v unchanged with normalize=False."""
    check_weights(values, names)
    if not normalize:
        return [float(v) for v in values]
    total = math.fsum(values)
    if total <= 0:
        raise WeightsError(
            f"--weights sum to {total:g}; a soup average needs a positive sum (use --no-normalize for task arithmetic)"
        )
    return [float(v) / total for v in values]


def weights_from_file(path) -> tuple[list[str], dict[str, float]]:
    """Read `merge_weights` from a user.json written by `soups fit-weights` / `soups ask`."""
    from pathlib import Path

    from soups.io.files import read_json

    path = Path(path)
    data = read_json(path, "--weights-from", WeightsError, hint="give a user.json from `soups fit-weights`")
    mw = data.get("merge_weights")
    if not isinstance(mw, dict) or not mw:
        raise WeightsError(f"--weights-from {path}: no `merge_weights` mapping; write it with `soups fit-weights`")
    bad = {k: v for k, v in mw.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        k, v = next(iter(bad.items()))
        raise WeightsError(f"--weights-from {path}: `merge_weights.{k}` is {v!r}; the values must be numbers")
    named = {str(k): float(v) for k, v in mw.items()}
    return list(named), named
