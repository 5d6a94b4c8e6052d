"""Prompt sets: the shipped train/held-out sets are sized, diverse and disjoint; the loader's errors."""

from __future__ import annotations

import json
import re

import pytest

from soups.errors import DataError
from soups.prompts import load_prompts, prompts_path


def norm(p: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", p.lower()))


def content(p: str) -> set[str]:
    stop = {"what", "is", "the", "a", "an", "how", "do", "does", "i", "why", "of", "and", "to", "in", "are", "my"}
    return {w for w in norm(p).split() if w not in stop}


def test_shipped_sets_sizes_and_no_duplicates():
    train, held = load_prompts("train"), load_prompts("heldout")
    assert 250 <= len(train) <= 350 and 80 <= len(held) <= 120
    for ps in (train, held):
        assert len({norm(p) for p in ps}) == len(ps)
        assert all(10 <= len(p) <= 300 for p in ps)


def test_shipped_sets_are_disjoint_even_near_duplicates():
    train, held = load_prompts("train"), load_prompts("heldout")
    assert not {norm(p) for p in train} & {norm(p) for p in held}
    for h in held:  # no held-out prompt is a near copy (word-set Jaccard >= 0.8) of a training one
        ch = content(h)
        for t in train:
            ct = content(t)
            assert len(ch & ct) / max(1, len(ch | ct)) < 0.8, (h, t)


def test_shipped_sets_are_diverse():
    for split in ("train", "heldout"):
        ps = load_prompts(split)
        openers = {norm(p).split()[0] for p in ps}
        assert len(openers) >= 8  # what / how / why / explain / write / describe / who / ...
        words = set().union(*(content(p) for p in ps))
        assert len(words) >= 2 * len(ps)  # many distinct topics, not one template


def test_shipped_files_are_plain_jsonl():
    for split in ("train", "heldout"):
        for line in prompts_path(split).read_text().splitlines():
            assert set(json.loads(line)) == {"prompt"}


def test_user_files_jsonl_alpaca_chat_and_txt(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        '{"prompt": "Explain tides."}\n\n'
        '{"instruction": "Translate to French.", "input": "Good morning"}\n'
        '{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a planet."}]}\n'
        '"Why is snow white?"\n'
    )
    want = ["Explain tides.", "Translate to French.\n\nGood morning", "Name a planet.", "Why is snow white?"]
    assert load_prompts(f) == want
    t = tmp_path / "p.txt"
    t.write_text("First prompt\n\n  Second prompt  \n")
    assert load_prompts(str(t)) == ["First prompt", "Second prompt"]


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ('{"prompt": "ok"}\n{"prompt": "bad"\n', 2, "invalid JSON"),
        ('{"prompt": "ok"}\n\n{"text": "no prompt field"}\n', 3, 'expected an object with a "prompt" field'),
        ('{"prompt": 42}\n', 1, '"prompt" must be a string, got int'),
        ('{"prompt": "ok"}\n{"prompt": "   "}\n', 2, 'empty "prompt"'),
        ("[1, 2]\n", 1, 'expected an object with a "prompt" field'),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, body, line, what):
    f = tmp_path / "bad.jsonl"
    f.write_text(body)
    with pytest.raises(DataError) as e:
        load_prompts(f)
    assert f"{f}:{line}: {what}" in str(e.value) and "\n" not in str(e.value)


def test_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(DataError, match="no such file; give train, heldout or"):
        load_prompts(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl: no prompts"):
        load_prompts(tmp_path / "empty.jsonl")
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="not UTF-8"):
        load_prompts(tmp_path / "bin.jsonl")
