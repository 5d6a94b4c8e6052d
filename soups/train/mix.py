"""Statement mix: train an expert on prompts that carry a whole combination's preference statements.

The paper evaluates a soup with every declared dimension's statement appended to the user message
(`soups eval`'s "soup + statements"). An expert trained on plain prompts never saw such a message, and the
135M base, told to be concise *and* friendly *and* PhD-level at once, writes short, simple answers whatever
the soup. With `statement_mix: s` a share `s` of the PPO prompts carries the statements of one of the paper's
combinations that includes the trained dimension: its own statement, and one of the two statements of each
other opposing pair (chosen at random per prompt), in the paper's axis order (P1, P2, P3). The reward and
every held-out check still see the plain prompt: what is scored is the answer to the question.
"""

from __future__ import annotations

import random

from soups.errors import ConfigError
from soups.prompts import with_statements


def axes(dims: list) -> list[tuple]:
    """Opposing pairs of dimensions (each `opposite` pair once), in `dims`' order (list_dimensions: the paper's)."""
    by_name = {d.name: d for d in dims}
    out, seen = [], set()
    for d in dims:
        if d.opposite and d.opposite in by_name and d.name not in seen:
            out.append((d, by_name[d.opposite]))
            seen |= {d.name, d.opposite}
    return out


def mix_statements(prompts: list[str], dim, dims: list, share: float, seed: int) -> dict[str, str]:
    """{prompt as trained on: plain prompt}: round(share * len(prompts)) of them carry a combination's statements.

    `dim` is the trained dimension (its own statement is used, so a dimension file outside the experts folder
    works); `dims` every known dimension (soups.dimensions.list_dimensions). Seeded: the same prompts, seed and
    share give the same mix."""
    if share <= 0:
        return {p: p for p in prompts}
    if not getattr(dim, "statement", None):
        raise ConfigError(f"statement_mix: dimension {dim.name} has no preference statement; "
                          "add `statement:` to its file or set statement_mix=0")
    pairs = axes(dims)
    others = [pair for pair in pairs if dim.name not in {pair[0].name, pair[1].name}]
    if not others:
        raise ConfigError(f"statement_mix: no opposing pair besides {dim.name}'s among the dimensions "
                          f"({', '.join(d.name for d in dims)}), so no combination to mix in; set statement_mix=0")
    on_axis = len(others) < len(pairs)
    rng = random.Random(f"statement_mix:{seed}")
    mixed = set(rng.sample(range(len(prompts)), round(share * len(prompts))))
    out: dict[str, str] = {}
    for i, p in enumerate(prompts):
        if i not in mixed:
            out[p] = p
            continue
        statements = [] if on_axis else [dim.statement]  # a dimension on no axis: its statement first
        statements += [dim.statement if dim.name in {a.name, b.name} else rng.choice((a, b)).statement
                       for a, b in pairs]
        out[with_statements(p, statements)] = p
    return out
