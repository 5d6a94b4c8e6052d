"""JSON-lines files: one object a line, read with `file:line` errors, written atomically.

Every JSONL file soups reads (prompt sets, preference pairs, answer files, candidate pools) or
writes (responses, pools) goes through here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from soups.errors import DataError, OutputExistsError


def read_jsonl(path: Path | str, what: str = "file", objects: bool = True) -> list[tuple[int, Any]]:
    """(line number, value) for every non-blank line; a line that is not JSON (or, with `objects`, not
    a JSON object) raises DataError naming `path:line`. `what` names the file in a not-found error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path}: file not found; check the path")
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{no}: invalid JSON ({e.msg} at column {e.colno}); one object per line, "
                                    "fix or delete the line") from None
                if objects and not isinstance(value, dict):
                    raise DataError(f"{path}:{no}: expected a JSON object, got {type(value).__name__}; fix the line")
                out.append((no, value))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return out


def jsonl_text(rows: Iterable[Mapping]) -> str:
    """Rows as JSON lines (UTF-8 kept as is)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def check_file_output(path: Path, force: bool, flag: str = "--out") -> None:
    """Refuse an existing output file unless `force` (call before any heavy work)."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{flag} {path}: is a directory; give a file path such as responses.jsonl")
    if path.exists() and not force:
        raise OutputExistsError(f"{flag} {path}: file exists; pass --force to replace it")


def write_jsonl(path: Path | str, rows: Iterable[Mapping], *, force: bool = False, flag: str = "--out") -> Path:
    """Write rows as JSON lines atomically (temp file + rename); refuse an existing file without `force`."""
    from soups.io.atomic import atomic_write_text

    check_file_output(Path(path), force, flag)
    return atomic_write_text(Path(path), jsonl_text(rows), force=force, flag=flag)
