""""Export" on the page: the current soup as a recipe and a `soups merge` command; the answers as JSONL.

Both come from the one soup type (soups.recipe.Soup) `soups merge --recipe` loads, so what the page
offers is what the command accepts, and the command builds the same soup as the recipe.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

HEADER = "# exported by `soups playground`; build it with: soups merge --recipe THIS_FILE --out my_soup\n"


def recipe_yaml(soup) -> str:
    """The soup as a `merge_recipes/*.yaml` recipe."""
    return HEADER + soup.to_yaml()


def merge_command(soup, out: str = "my_soup") -> str:
    """The `soups merge` command line that builds `soup` (the same soup as its recipe)."""
    weights = ",".join(f"{w:g}" for w in soup.weights)
    args = ["soups", "merge", "--experts", ",".join(soup.experts), "--weights", weights]
    if soup.base != "default":
        args += ["--base", soup.base]
    if soup.method != "exact":
        args += ["--method", soup.method]
    for key, value in soup.params.items():
        args += ["--param", f"{key}={value}"]
    if not soup.normalize:
        args.append("--no-normalize")
    if soup.format != "full":
        args += ["--format", soup.format]
    if soup.dtype:
        args += ["--dtype", soup.dtype]
    return shlex.join(args + ["--out", out])


def answers_jsonl(rows: Sequence[Mapping]) -> str:
    """JSON lines, one object per row (UTF-8 text, not escaped)."""
    return "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows)
