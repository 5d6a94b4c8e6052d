"""Shared fixtures: the prepared default base (for its real tokenizer) and tiny local models."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def default_base():
    """The embedded default base, prepared once (under $SOUPS_HOME)."""
    from soups.base import resolve_base

    return resolve_base("default")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, default_base):
    """A random Llama (hidden 64, 2 layers, tied embeddings, float32) with SmolLM2's tokenizer."""
    from tests.helpers import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "base", tokenizer_from=default_base)
