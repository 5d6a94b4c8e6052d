"""users.yaml: which user gets which soup (soups/recipe.py's Soup, as an adapter on the server's base).

    experts: [concise, friendly, expert]     # optional: expert order (default: experts/default.yaml)
    users:
      alice: 1,0,1                           # positional weights over `experts`
      bob: {concise: 2, expert: 1}           # named weights (missing ones are 0)
      carol: {recipe: merge_recipes/concise_expert.yaml}   # a saved recipe (its experts, method, params)
      dave: {weights_from: dave/user.json}   # `soups fit-weights` output

A malformed file raises DataError; a bad user entry is collected in `UsersFile.errors` (one line
each) so the other users are still served. A request may also name its soup directly,
`"model": "soup:concise=1,expert=0.5"` (or `soup:1,0,1` over the server's expert order):
`request_soup()` reads it as the exact soup, normalised as `soups merge` does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, DataError, SoupsError
from soups.recipe import Soup
from soups.vllm_server import BASE_MODEL_NAME

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
SOUP_PREFIX = "soup:"  # "model": "soup:concise=1,expert=0.5" names a soup in the request itself


@dataclass
class UsersFile:
    experts: list[str]
    users: dict[str, Soup] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # bad entries, one line each; the others still serve


def check_user_name(name: str, where: str = "user") -> str:
    if not _USER_NAME.match(str(name)) or str(name) == BASE_MODEL_NAME:
        raise ConfigError(
            f"{where} {name!r}: not a valid user name (letters, digits, _ . @ -, at most 64, not {BASE_MODEL_NAME!r})"
        )
    return str(name)


def request_soup(model: str, experts: list[str]) -> Soup:
    """`soup:WEIGHTS` (a request's model name) as the exact soup over `experts`; errors name the model."""
    spec = model[len(SOUP_PREFIX):].strip()
    if not spec or len(model) > 1024:
        raise ConfigError(f"model {model[:80]!r}: give weights after `soup:`, e.g. soup:concise=1,expert=0.5 "
                          f"or soup:{','.join('1' for _ in experts)} (experts: {', '.join(experts)})")
    return Soup.build(experts, spec, flag=f"model {model!r}", method="exact")


def _number(value, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{where}: weight {value!r} is not a number")


def user_soup(name: str, value, experts: list[str], where: str = "users", method: str = "exact") -> Soup:
    """One users.yaml entry (or `soups serve add` arguments) as a Soup; errors name the file and user."""
    from soups.recipe import load_soup
    from soups.weights import weights_from_file

    name = check_user_name(name, f"{where}: user")
    at = f"{where}: user {name}"
    if isinstance(value, Mapping) and "recipe" in value:
        return load_soup(Path(value["recipe"]))
    if isinstance(value, Mapping) and "weights_from" in value:
        names, weights = weights_from_file(Path(value["weights_from"]))
        return Soup.build(names, weights, method=method, flag=f"{at}: weights")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        weights = str(value)
    elif isinstance(value, list) and value:
        weights = [_number(v, at) for v in value]
    elif isinstance(value, Mapping) and value:
        weights = {str(k): _number(v, f"{at}: {k}") for k, v in value.items()}
    else:
        raise ConfigError(
            f"{at}: {value!r} is not a weight vector (`1,0,1`), a mapping (`{{concise: 1}}`), "
            "`{recipe: PATH}` or `{weights_from: PATH}`"
        )
    return Soup.build(experts, weights, method=method, flag=f"{at}: weights")


def load_users(path: Path | str, experts: list[str] | None = None) -> UsersFile:
    """Read users.yaml (module docstring)."""
    import yaml

    from soups.recipe import default_expert_names

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"--users {path}: file not found") from None
    except UnicodeDecodeError:
        raise DataError(f"--users {path}: not a text file (not UTF-8); give a users.yaml") from None
    except OSError as e:
        raise DataError(f"--users {path}: cannot read it ({(e.strerror or str(e)).lower()}); give a users.yaml file") \
            from None
    except yaml.YAMLError as e:
        raise DataError(f"--users {path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("users"), Mapping):
        raise DataError(
            f"--users {path}: expected a mapping with `users:` (user id -> weights); see `soups serve --help`"
        )
    names = experts or data.get("experts") or default_expert_names()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"--users {path}: `experts` should be a list of expert names or directories")
    out = UsersFile(experts=[str(n) for n in names])
    for name, value in data["users"].items():
        try:
            out.users[str(name)] = user_soup(str(name), value, out.experts, where=str(path))
        except SoupsError as e:
            out.errors.append(str(e))
    return out
