"""The evaluation tests' world: a prompt-sensitive tiny base and three experts tagged with shipped dimensions."""

from __future__ import annotations

import pytest

from tests.helpers import make_lora_expert, sharpen

N_PROMPTS, N_TOKENS = 4, 8


@pytest.fixture(scope="session")
def eval_world(tiny_base, tmp_path_factory):
    """(base, {dimension: expert dir}, prompts file): experts concise and friendly rank 4, expert rank 8."""
    root = tmp_path_factory.mktemp("eval")
    base = sharpen(tiny_base, root / "base")
    experts = {}
    for i, (dim, r) in enumerate([("concise", 4), ("friendly", 4), ("expert", 8)]):
        experts[dim] = make_lora_expert(base, root / "experts" / dim, r=r, alpha=16 * r, seed=i + 1, dimension=dim)
    prompts = root / "prompts.txt"
    prompts.write_text("Why is the sky blue?\nWrite a haiku about rain.\nHow do I boil an egg?\nWhat is DNA?\n")
    return base, experts, prompts
