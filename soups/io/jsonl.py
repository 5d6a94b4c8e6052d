"""JSON-lines files: one object a line, read with `file:line` errors, written atomically.

Every JSONL file soups reads (prompt sets, preference pairs, answer files, candidate pools) or
writes (responses, pools) goes through here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from soups.errors import DataError

log = logging.getLogger(__name__)


def read_jsonl(path: Path | str, what: str = "file", objects: bool = True,
               tolerate_torn_tail: bool = False) -> list[tuple[int, Any]]:
    """(line number, value) for every non-blank line; a line that is not JSON (or, with `objects`, not
    a JSON object) raises DataError naming `path:line`. `what` names the file (its flag) in errors.

    With `tolerate_torn_tail`, a last line without its newline that does not parse (a write cut by a
    kill) is dropped with a warning instead (the file itself is left as it is)."""
    from soups.io.files import input_file

    path = input_file(path, what, hint="give a JSON-lines file (one object a line)")
    out = []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = list(enumerate(fh, 1))
    except UnicodeDecodeError as e:
        raise DataError(f"{what} {path}: not UTF-8 text ({e.reason} at byte {e.start}); give a JSON-lines file") \
            from None
    except OSError as e:
        raise DataError(f"{what} {path}: cannot read ({e.strerror}); check the path") from None
    for no, line in lines:
        if not line.strip():
            continue
        if "\0" in line:
            raise DataError(f"{path}:{no}: binary data, not JSON text; give a JSON-lines file")
        try:
            value = json.loads(line, parse_constant=_no_constants)
        except (json.JSONDecodeError, RecursionError) as e:
            if tolerate_torn_tail and no == len(lines) and not line.endswith("\n"):
                log.warning("%s:%d: dropping an incomplete last line (a write cut short)", path, no)
                break
            why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise DataError(f"{path}:{no}: invalid JSON ({why}); one object per line, fix or delete the line") \
                from None
        except ValueError as e:
            raise DataError(f"{path}:{no}: {e}; write numbers as plain decimals, fix the line") from None
        if objects and not isinstance(value, dict):
            raise DataError(f"{path}:{no}: expected a JSON object, got {type(value).__name__}; fix the line")
        out.append((no, value))
    return out


def _no_constants(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def jsonl_text(rows: Iterable[Mapping]) -> str:
    """Rows as JSON lines (UTF-8 kept as is)."""
    from soups.io.files import finite_json

    return "".join(finite_json(row, "JSON-lines output", ensure_ascii=False) + "\n" for row in rows)


def check_file_output(path: Path, force: bool, flag: str = "--out") -> None:
    """Refuse an existing output file unless `force`, a directory, an unwritable place (call before any heavy work)."""
    from soups.io.atomic import check_file_target

    check_file_target(Path(path), force, flag)


def write_jsonl(path: Path | str, rows: Iterable[Mapping], *, force: bool = False, flag: str = "--out") -> Path:
    """Write rows as JSON lines atomically (temp file + rename); refuse an existing file without `force`."""
    from soups.io.atomic import atomic_write_text

    check_file_output(Path(path), force, flag)
    return atomic_write_text(Path(path), jsonl_text(rows), force=force, flag=flag)
