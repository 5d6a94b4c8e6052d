"""users.yaml (soups/serve/users.py): good entries kept, bad ones collected; a request's `soup:` model name."""

from __future__ import annotations

from pathlib import Path

import pytest

from soups.errors import ConfigError, DataError, WeightsError
from tests.serve.conftest import users_yaml


def test_users_file_collects_bad_entries_and_keeps_good_ones(world, tmp_path):
    from soups.serve.users import load_users

    f = users_yaml(
        tmp_path / "u.yaml",
        world["experts"],
        "  alice: 1,0\n  bob: {kind: 1, brief: 3}\n  carol: [0, 2]\n  eve: 1,2,3\n"
        "  'bad name!': 1,1\n  mallory: {nope: 1}\n  base: 1,1\n",
    )
    users = load_users(f)
    assert list(users.users) == ["alice", "bob", "carol"]
    kind, brief = (str(e) for e in world["experts"])
    assert users.users["alice"].experts == {kind: 1.0, brief: 0.0}
    assert users.users["bob"].experts == {kind: 1.0, brief: 3.0}
    assert users.users["carol"].experts == {kind: 0.0, brief: 2.0}
    assert len(users.errors) == 4 and all(e.startswith(f"{f}: user ") for e in users.errors), users.errors
    eve, bad, mallory, base = users.errors
    assert "user eve: weights 1,2,3: 3 weight(s) for 2 expert(s)" in eve
    assert "'bad name!'" in bad and "unknown expert 'nope'" in mallory and "'base'" in base
    with pytest.raises(DataError, match="users"):
        load_users(users_yaml(tmp_path / "v.yaml", world["experts"], "  - alice\n"))
    (tmp_path / "w.yaml").write_text("users: {alice: [1, 0\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_users(tmp_path / "w.yaml")
    with pytest.raises(DataError, match="not found"):
        load_users(tmp_path / "missing.yaml")
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)))
    with pytest.raises(DataError, match="not a text file"):
        load_users(tmp_path / "bin.yaml")
    with pytest.raises(DataError, match="cannot read it"):
        load_users(tmp_path)


def test_request_soup_is_the_exact_soup_normalised_like_merge(world):
    from soups.recipe import Soup
    from soups.serve.users import request_soup

    exp = [str(e) for e in world["experts"]]
    named, positional = request_soup("soup:kind=1,brief=0.5", exp), request_soup("soup: 2,1", exp)
    assert named.method == positional.method == "exact"
    assert named.applied() == positional.applied() == pytest.approx([2 / 3, 1 / 3])
    assert named.applied() == Soup.build(exp, "kind=1,brief=0.5").applied()  # what `soups merge` applies
    assert request_soup("soup:brief=1", exp).experts == {exp[0]: 0.0, exp[1]: 1.0}
    with pytest.raises(WeightsError, match=r"model 'soup:nope=1'.*unknown expert 'nope'"):
        request_soup("soup:nope=1", exp)
    with pytest.raises(WeightsError, match="model 'soup:0,0'"):
        request_soup("soup:0,0", exp)
    with pytest.raises(ConfigError, match="give weights after `soup:`"):
        request_soup("soup:", exp)
    assert Path(exp[0]).name == "kind"
