""""Export": the recipe loads back into the same soup, and the command's flags describe that soup too."""

from __future__ import annotations

import shlex

import pytest

from soups.errors import WeightsError
from soups.playground.export import merge_command, recipe_yaml
from soups.playground.session import Settings


@pytest.mark.parametrize("settings", [Settings((1.0, 0.0, 0.5)), Settings((1.0, 1.0, 1.0), method="svd", rank=3),
                                      Settings((2.0, -1.0, 0.0), normalize=False)])
def test_recipe_and_command_are_the_same_soup(playground, tmp_path, settings):
    from soups.cli.options import parse_params
    from soups.recipe import load_soup, soup_from_flags

    soup = playground.soup_spec(settings)
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe_yaml(soup))
    assert load_soup(path) == soup

    args = shlex.split(merge_command(soup))
    assert args[:2] == ["soups", "merge"] and args[-2:] == ["--out", "my_soup"]
    flags = dict(zip(args[2::2], args[3::2]))
    params = [v for k, v in zip(args[2::2], args[3::2]) if k == "--param"]
    parsed = soup_from_flags(experts=flags["--experts"].split(","), weights=flags["--weights"],
                             base=flags.get("--base"), method=flags.get("--method"), params=parse_params(params),
                             no_normalize="--no-normalize" in args)
    assert parsed == soup


def test_all_zero_weights_do_not_export(playground):
    with pytest.raises(WeightsError, match="all weights are zero"):
        playground.soup_spec(Settings((0.0, 0.0, 0.0)))
