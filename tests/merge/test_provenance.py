"""What a soup records about itself (soups/merge/provenance.py): the dimensions it declares and their statements."""

from __future__ import annotations

import json

import pytest

from soups.errors import ConfigError
from soups.merge.provenance import declared_dimensions, statements


def test_declared_dimensions_from_soup_json_and_expert_json(tmp_path):
    soup = tmp_path / "soup"
    soup.mkdir()
    (soup / "soup.json").write_text(json.dumps({"experts": [
        {"name": "c", "dimension": "concise", "weight": 0.5}, {"name": "friendly", "dimension": None, "weight": 0.0},
        {"name": "expert", "dimension": None, "weight": 0.5}, {"name": "c2", "dimension": "concise", "weight": 0.1}]}))
    assert declared_dimensions(soup) == ["concise", "expert"]  # weight > 0, a missing dimension is the name
    assert statements(soup) == [
        "Generate a response that is concise and to the point without being verbose.",
        "Generate a response that only a PhD Student in that specific field could understand."]
    expert = tmp_path / "my-expert"
    expert.mkdir()
    (expert / "expert.json").write_text(json.dumps({"dimension": "friendly"}))
    assert declared_dimensions(expert) == ["friendly"]
    with pytest.raises(ConfigError, match="declares no dimensions"):
        declared_dimensions(tmp_path)
    (soup / "soup.json").write_text("{}")
    with pytest.raises(ConfigError, match="soup.json / expert.json unreadable"):
        declared_dimensions(soup)
