"""The playground tests' world: a prompt-sensitive tiny base and experts tagged with shipped dimensions."""

from __future__ import annotations

import pytest

from tests.helpers import make_lora_expert, set_norms, sharpen


@pytest.fixture(scope="session")
def pg_world(tiny_base, tmp_path_factory):
    """(base, {dimension: expert dir}): concise r=4 on q/v, friendly r=2 rsLoRA on q/k/v/o, expert r=4 on MLP."""
    root = tmp_path_factory.mktemp("playground-world")
    base = set_norms(sharpen(tiny_base, root / "base"))
    specs = [("concise", 4, ("q_proj", "v_proj"), False),
             ("friendly", 2, ("q_proj", "k_proj", "v_proj", "o_proj"), True),
             ("expert", 4, ("gate_proj", "up_proj", "down_proj"), False)]
    experts = {dim: make_lora_expert(base, root / "experts" / dim, r=r, alpha=4 * r, targets=t, rslora=rs, seed=i + 1,
                                     dimension=dim)
               for i, (dim, r, t, rs) in enumerate(specs)}
    return base, experts


@pytest.fixture(scope="session")
def playground(pg_world):
    """A Playground over the tiny world (base float32, three experts), answers of 8 tokens."""
    from soups.playground.session import Playground

    base, experts = pg_world
    return Playground([str(p) for p in experts.values()], base, max_new_tokens=8, threads=1)
