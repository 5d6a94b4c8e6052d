"""The soup type (soups/recipe.py): recipe files, flags over a recipe, errors naming what the user wrote,
and `to_yaml` back to an equal soup; the model card's recipe rebuilds the same bytes (issue 12's two bugs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soups.errors import ConfigError, WeightsError
from soups.recipe import Soup, load_soup, soup_from_flags
from tests.helpers import assert_one_line_error, make_lora_expert, make_tiny_llama, run_cli


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_recipe_loads_into_a_soup_and_back(tmp_path):
    r = write(tmp_path / "r.yaml", "base: /models/x\nmethod: svd\nrank: 16\nformat: adapter\ndtype: bf16\n"
                                   "experts:\n  concise: 1\n  friendly: 0\n  expert: 2\n")
    soup = load_soup(r)
    assert (soup.base, soup.method, soup.params, soup.format, soup.dtype) == ("/models/x", "svd", {"rank": 16},
                                                                              "adapter", "bfloat16")
    assert soup.experts == {"concise": 1.0, "friendly": 0.0, "expert": 2.0} and soup.normalize
    assert soup.applied() == pytest.approx([1 / 3, 0.0, 2 / 3]) and soup.declared() == ["concise", "expert"]
    back = write(tmp_path / "back.yaml", soup.to_yaml())
    assert load_soup(back) == soup
    assert back.read_text().splitlines()[:3] == ["base: /models/x", "method: svd", "rank: 16"]  # params at the top


def test_recipe_errors_name_the_file_and_field_the_user_wrote(tmp_path):
    """Bug 1: a recipe's unknown method was reported as the flag --method, which the user never passed."""
    r = write(tmp_path / "r.yaml", "method: foo\nexperts: {concise: 1}\n")
    with pytest.raises(ConfigError, match=rf"^{r}: field `method`: 'foo' is unknown; choose one of: exact, linear"):
        load_soup(r)
    write(r, "method: svd\nrank: 0\nformat: gguf\nbogus: 1\nexperts: {concise: .nan}\n")
    with pytest.raises(ConfigError) as e:
        load_soup(r)
    msg = str(e.value)  # every problem at once, each with its field
    for part in (f"{r}: field `rank`: Input should be greater than or equal to 1",
                 f"{r}: field `format`: Input should be 'full' or 'adapter', got 'gguf'",
                 f"{r}: field `bogus`: not a soup field nor a parameter of method svd",
                 f"{r}: field `experts`: weight of concise is nan; weights must be finite numbers"):
        assert part in msg, msg
    write(r, "method: exact\nrank: 4\nexperts: {concise: 1}\n")
    with pytest.raises(ConfigError, match="field `rank`: not a soup field nor a parameter of method exact"):
        load_soup(r)
    write(r, "method: svd\nexperts: {concise: 1}\n")
    with pytest.raises(ConfigError, match="field `rank`: method svd needs this parameter"):
        load_soup(r)


def test_flags_override_the_recipe_and_errors_name_the_flag(tmp_path):
    r = write(tmp_path / "r.yaml", "method: svd\nrank: 8\nexperts:\n  concise: 1\n  expert: 3\n")
    soup = soup_from_flags(r, format="adapter", params={"rank": 4})
    assert (soup.method, soup.params, soup.format, soup.weights) == ("svd", {"rank": 4}, "adapter", [1.0, 3.0])
    assert soup_from_flags(r, weights="2,2").weights == [2.0, 2.0]  # positional over the recipe's experts
    assert soup_from_flags(r, weights="expert=1").weights == [0.0, 1.0]
    exact = soup_from_flags(r, method="exact")  # the recipe's svd parameters do not follow another method
    assert (exact.method, exact.params) == ("exact", {})
    with pytest.raises(ConfigError, match=r"^--method: 'foo' is unknown"):
        soup_from_flags(r, method="foo")
    with pytest.raises(ConfigError, match=r"^--rank: Input should be greater than or equal to 1"):
        soup_from_flags(r, params={"rank": 0})
    with pytest.raises(ConfigError, match=r"^--dtype: 'int8' is not supported"):
        soup_from_flags(r, dtype="int8")
    with pytest.raises(WeightsError, match=r"^--weights 1,2,3: 3 weight\(s\) for 2 expert\(s\)"):
        soup_from_flags(r, weights="1,2,3")
    with pytest.raises(WeightsError, match=r"^--weights: weights sum to 0; a soup average needs a positive sum"):
        soup_from_flags(r, weights="1,-1")
    assert soup_from_flags(r, weights="1,-1", no_normalize=True).applied() == [1.0, -1.0]  # task arithmetic


def test_build_from_python_values():
    soup = Soup.build(["a", "b"], [1, 3], method="svd", rank=2, base=Path("/m"))
    assert soup.experts == {"a": 1.0, "b": 3.0} and soup.params == {"rank": 2} and soup.base == "/m"
    assert Soup.build(["a", "b"], {"b": 1}).weights == [0.0, 1.0]
    assert Soup.build(["a", "b"], "a=2").weights == [2.0, 0.0]
    with pytest.raises(ConfigError, match="'a' is listed twice"):
        Soup.build(["a", "a"], [1, 1])
    with pytest.raises(WeightsError, match="^--weights: all weights are zero"):
        Soup.build(["a", "b"], [0, 0])


@pytest.fixture(scope="module")
def two_experts(tmp_path_factory):
    root = tmp_path_factory.mktemp("card")
    base = make_tiny_llama(root / "base", vocab_size=512, dtype="bfloat16")
    return base, [make_lora_expert(base, root / f"e{i}", r=4, seed=i) for i in (1, 2)]


@pytest.mark.parametrize("flags", [
    ["--method", "svd", "--rank", "3", "--format", "adapter", "--dtype", "float16"],
    ["--method", "svd", "--param", "rank=2", "--dtype", "float32"],
    ["--method", "linear", "--no-normalize"],
], ids=["svd-adapter-fp16", "svd-full-fp32", "linear-no-normalize"])
def test_the_model_cards_recipe_rebuilds_the_same_bytes(two_experts, tmp_path, flags):
    """Bug 2: the card's recipe omitted rank and dtype, so rebuilding an svd soup from its own README failed."""
    from soups.merge.provenance import recipe_of_card

    base, (e1, e2) = two_experts
    first = tmp_path / "first"
    res = run_cli("merge", "--base", base, "--experts", f"{e1},{e2}", "--weights", "1,3", *flags, "--out", first)
    assert res.code == 0, res.err
    recipe = write(tmp_path / "card.yaml", recipe_of_card((first / "README.md").read_text()))
    res = run_cli("merge", "--recipe", recipe, "--out", tmp_path / "again")
    assert res.code == 0, res.err
    files = sorted(p.name for p in first.iterdir())
    assert files == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in files:
        assert (first / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    assert json.loads((first / "soup.json").read_text())["method"] == flags[1]


def test_merge_cli_names_the_recipe_field_not_a_flag(tmp_path):
    r = write(tmp_path / "r.yaml", "method: foo\nexperts: {concise: 1}\n")
    err = assert_one_line_error(run_cli("merge", "--recipe", r, "--out", tmp_path / "o"), f"{r}: field `method`")
    assert "--method" not in err
