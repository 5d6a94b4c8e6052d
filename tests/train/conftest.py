"""Fixtures of the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def confident_base(tmp_path_factory) -> Path:
    """The tiny random Llama with a confident output head (see the module docstring)."""
    from safetensors.torch import load_file, save_file

    from soups.base import resolve_base
    from tests.helpers import make_tiny_llama

    out = make_tiny_llama(tmp_path_factory.mktemp("tiny") / "base", tokenizer_from=resolve_base("default"))
    sd = load_file(out / "model.safetensors")
    sd["model.norm.weight"].fill_(4.0)  # confident head: logits std ~1.6 instead of ~0.02
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    return out
