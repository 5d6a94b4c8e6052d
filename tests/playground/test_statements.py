"""The "statements" box: the soup is asked with its dimensions' preference statements appended, as the paper does.

References: the statements are read from the dimension files in this test, the message is the paper's
`"{instruction} {statement 1} {statement 2}"`, the prompt actually sent is what the tokenizer is handed,
and the page's answer equals what the exported `soups merge` + `soups generate --statements` answer.
"""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from soups.config import experts_dir
from soups.playground.export import generate_command, merge_command, recipe_yaml
from soups.playground.session import Settings
from soups.prompts import with_statements
from tests.helpers import run_cli

PROMPT = "Why is the sky blue?"
WEIGHTS = (1.0, 0.0, 2.0)  # concise and expert in the soup, friendly not


def _statement(dim: str) -> str:
    return yaml.safe_load((experts_dir() / f"{dim}.yaml").read_text())["statement"]


@pytest.fixture
def sent(playground, monkeypatch):
    """The user messages the answerer is handed (one per model it starts)."""
    seen: list[str] = []
    real = playground.answerer.chat_ids

    def spy(prompt, system=None):
        seen.append(prompt)
        return real(prompt, system)

    monkeypatch.setattr(playground.answerer, "chat_ids", spy)
    return seen


def test_the_soup_is_asked_with_the_statements_of_its_dimensions(playground, sent):
    said = [_statement("concise"), _statement("expert")]
    want = f"{PROMPT} {said[0]} {said[1]}"
    assert with_statements(PROMPT, said) == want
    assert playground.statements(Settings(WEIGHTS, statements=True)) == said
    assert playground.statements(Settings((2.0, -1.0, 0.0), normalize=False)) == [_statement("concise")]

    plain = list(playground.answer(PROMPT, Settings(WEIGHTS), fresh_base=True))[-1]
    assert sent == [PROMPT, PROMPT]
    sent.clear()
    asked = list(playground.answer(PROMPT, Settings(WEIGHTS, statements=True), fresh_base=True))[-1]
    assert sorted(sent) == sorted([PROMPT, want])  # the base: the prompt; the soup: the prompt + statements
    assert asked.texts["base"] == plain.texts["base"]
    assert asked.texts["soup"] != plain.texts["soup"]  # ticking the box changes the soup's answer
    ref = list(playground.answerer.stream({"soup": playground.soup.model}, want, max_new_tokens=8))[-1]
    assert asked.texts["soup"] == ref.texts["soup"]
    base_row, soup_row = playground.history[-2:]
    assert (soup_row["system"], soup_row["prompt"], soup_row["user_message"]) == ("soup", PROMPT, want)
    assert soup_row["statements"] == said and base_row["user_message"] == PROMPT and base_row["statements"] == []

    sent.clear()  # unticked again: the soup (not rebuilt) answers the plain prompt as before
    again = list(playground.answer(PROMPT, Settings(WEIGHTS)))[-1]
    assert sent == [PROMPT] and again.texts["soup"] == plain.texts["soup"]


def test_export_asks_the_built_soup_as_the_page_did(playground, tmp_path):
    """The recipe still loads (the statements are a comment), and the exported merge + generate commands answer
    the page's prompt with the page's answer."""
    from soups.recipe import load_soup

    settings = Settings(WEIGHTS, statements=True)
    page = list(playground.answer(PROMPT, settings))[-1].texts["soup"]
    soup = playground.soup_spec(settings)
    text = recipe_yaml(soup, statements=True)
    assert "--statements" in text.split("experts:")[0]
    (tmp_path / "recipe.yaml").write_text(text)
    assert load_soup(tmp_path / "recipe.yaml") == soup
    assert "--statements" not in generate_command() and "--statements" not in recipe_yaml(soup)

    out = tmp_path / "my_soup"
    res = run_cli(*shlex.split(merge_command(soup, out=str(out)))[1:], "--format", "adapter")
    assert res.code == 0, res.err
    (tmp_path / "prompts.txt").write_text(PROMPT + "\n")
    args = shlex.split(generate_command(str(out), statements=True, prompts=str(tmp_path / "prompts.txt")))
    assert args[:2] == ["soups", "generate"] and "--statements" in args
    res = run_cli(*args[1:], "--max-new-tokens", "8")
    assert res.code == 0, res.err
    rows = [json.loads(line) for line in (tmp_path / "my_soup_answers.jsonl").read_text().splitlines()]
    assert [r["response"] for r in rows] == [page]


def test_a_dimension_without_a_file_is_a_message(playground, monkeypatch):
    from soups.errors import ConfigError

    monkeypatch.setattr(playground.slots[0], "dimension", "no-such-dimension")
    with pytest.raises(ConfigError, match="statements: unknown dimension 'no-such-dimension'.*untick"):
        next(playground.answer(PROMPT, Settings(WEIGHTS, statements=True)))
    assert list(playground.answer(PROMPT, Settings(WEIGHTS)))[-1].texts["soup"]  # unticked: answers
