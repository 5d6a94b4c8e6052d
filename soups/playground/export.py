""""Export" on the page: the current soup as a recipe and a `soups merge` command; the answers as JSONL.

Both come from the one soup type (soups.recipe.Soup) `soups merge --recipe` loads, so what the page
offers is what the command accepts, and the command builds the same soup as the recipe. Answering
with the preference statements (the page's "statements" box) is not part of a soup (a recipe has no
field for it: the statements follow from the soup's declared dimensions when it answers), so it is
exported as the `soups generate ... --statements` command that asks the built soup that way, also
named in a comment of the recipe.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

HEADER = "# exported by `soups playground`; build it with: soups merge --recipe THIS_FILE --out my_soup\n"


def recipe_yaml(soup, statements: bool = False, out: str = "my_soup") -> str:
    """The soup as a `merge_recipes/*.yaml` recipe; with `statements`, a comment says how to answer with them."""
    note = ("# the playground answered with the soup's preference statements appended to the prompt; do the same "
            f"with: {generate_command(out, statements=True)}\n") if statements else ""
    return HEADER + note + soup.to_yaml()


def generate_command(out: str = "my_soup", *, statements: bool = False, prompts: str = "heldout") -> str:
    """The `soups generate` command line that asks the soup built in `out`, with its declared dimensions'
    preference statements appended to every prompt when `statements` (as the page's "statements" box does)."""
    args = ["soups", "generate", "--soup", out, "--prompts", prompts, "--out", f"{out}_answers.jsonl"]
    return shlex.join(args + (["--statements"] if statements else []))


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
