"""The option helpers the command modules share (soups/cli/options.py)."""

from __future__ import annotations

import pytest

from soups.cli.options import parse_params, split_list
from soups.errors import ConfigError


def test_split_list():
    assert split_list(" a, b,,c ") == ["a", "b", "c"] and split_list(None) is None and split_list("") is None


def test_parse_params():
    assert parse_params(["rank=16", "factor=0.5", "name=svd", "on=true"]) == {
        "rank": 16, "factor": 0.5, "name": "svd", "on": True}
    assert parse_params(None) == {}
    with pytest.raises(ConfigError, match="--param rank: use KEY=VALUE, e.g. --param rank=16"):
        parse_params(["rank"])
