"""What the serve tests share: a tiny base with two experts (module-scoped, built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_lora_expert, make_tiny_llama, set_norms

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def world(tmp_path_factory, default_base):
    root = tmp_path_factory.mktemp("serve")
    base = make_tiny_llama(root / "base", dtype="float32", tie=True, hidden=128, tokenizer_from=default_base)
    set_norms(base)
    e1 = make_lora_expert(base, root / "experts" / "kind", r=8, alpha=16, targets=TARGETS, seed=1)
    e2 = make_lora_expert(base, root / "experts" / "brief", r=4, alpha=4, targets=("q_proj", "v_proj"), seed=2)
    return {"root": root, "base": base, "experts": [e1, e2]}


def users_yaml(path: Path, experts, users: str) -> Path:
    path.write_text(f"experts: [{experts[0]}, {experts[1]}]\nusers:\n{users}")
    return path
