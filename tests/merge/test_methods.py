"""The merge-method registry (soups/merge/methods.py): methods declare their parameters, help, label and
adapter config, and the commands read them from there."""

from __future__ import annotations

import pytest

from soups.errors import ConfigError
from soups.merge.methods import METHODS, get_method, methods_help
from tests.helpers import run_cli


def test_every_method_declares_help_label_and_params():
    assert list(METHODS)[:3] == ["exact", "linear", "svd"]
    for m in METHODS.values():
        assert m.help and m.label and m.describe().startswith(m.name)
        for name, field in m.params.model_fields.items():
            assert field.description, (m.name, name)  # a parameter carries its help
    assert list(METHODS["svd"].params.model_fields) == ["rank"] and not METHODS["exact"].params.model_fields
    assert METHODS["exact"].exact_at_vertex and METHODS["linear"].exact_at_vertex
    assert not METHODS["svd"].exact_at_vertex  # truncation changes even a single expert


def test_unknown_method_lists_the_registry():
    with pytest.raises(ConfigError, match="--method 'magic' is unknown; choose one of: exact, linear, svd"):
        get_method("magic")


def test_the_cli_reads_the_registry():
    import typer

    from soups.cli import _register, app

    _register()
    commands = typer.main.get_command(app).commands
    for command in ("merge", "eval", "generate"):
        method = next(p for p in commands[command].params if "--method" in p.opts)
        assert method.help == f"Merge method: {methods_help()}.", command
    for m in METHODS.values():
        assert m.describe() in methods_help()
    assert "svd (--param rank): the exact delta truncated" in methods_help()
    listed = " ".join(run_cli("methods").out.split())
    assert all(name in listed for name in METHODS) and "rank K the exact delta" in listed


def test_adapter_configs():
    class A:  # an adapter's config, as soups.io.adapter reads it
        config = {"r": 4, "lora_alpha": 8, "use_rslora": True, "rank_pattern": {"q": 2}, "alpha_pattern": None}

    assert METHODS["linear"].adapter_config([A()], None, 4) == {
        "r": 4, "lora_alpha": 8, "use_rslora": True, "rank_pattern": {"q": 2}, "alpha_pattern": {}}
    stacked = {"r": 12, "lora_alpha": 12, "use_rslora": False, "rank_pattern": {}, "alpha_pattern": {}}
    params = METHODS["svd"].params.model_validate({"rank": 12})
    assert METHODS["exact"].adapter_config([A()], None, 12) == stacked
    assert METHODS["svd"].adapter_config([A()], params, 12) == stacked
