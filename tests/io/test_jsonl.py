"""JSON-lines files (soups/io/jsonl.py): file:line errors, atomic writes that refuse to clobber."""

from __future__ import annotations

import json

import pytest

from soups.errors import DataError, OutputExistsError
from soups.io.jsonl import read_jsonl, write_jsonl


def test_read_gives_line_numbers_and_skips_blank_lines(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n\n  \n{"a": 2, "b": "é"}\n')
    assert read_jsonl(f) == [(1, {"a": 1}), (4, {"a": 2, "b": "é"})]
    f.write_text('"just a string"\n')
    assert read_jsonl(f, objects=False) == [(1, "just a string")]


@pytest.mark.parametrize(("body", "line", "words"), [
    ('{"a": 1}\n{"a": \n', 2, "invalid JSON"),
    ('{"a": 1}\n\n[1, 2]\n', 3, "expected a JSON object, got list"),
])
def test_bad_lines_name_file_and_line(tmp_path, body, line, words):
    f = tmp_path / "x.jsonl"
    f.write_text(body)
    with pytest.raises(DataError, match=rf"^{f}:{line}: {words}"):
        read_jsonl(f)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(DataError, match=r"--pool .*nope.jsonl: file not found"):
        read_jsonl(tmp_path / "nope.jsonl", "--pool")
    (tmp_path / "bin.jsonl").write_bytes(b'{"a": "\xff\xfe"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        read_jsonl(tmp_path / "bin.jsonl")


def test_write_is_atomic_and_refuses_to_clobber(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "a", "response": "ü"}])
    assert path.read_text(encoding="utf-8") == '{"prompt": "a", "response": "ü"}\n'
    assert [json.loads(x) for x in path.read_text().splitlines()] == [{"prompt": "a", "response": "ü"}]
    with pytest.raises(OutputExistsError, match="--out .*r.jsonl: file exists; pass --force"):
        write_jsonl(path, [])
    write_jsonl(path, [], force=True)
    assert path.read_text() == "" and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(OutputExistsError, match="is a directory"):
        write_jsonl(tmp_path, [])
