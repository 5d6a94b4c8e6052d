"""Answer files: one JSON object per line, appended and flushed as the user answers.

A record: ``{"prompt", "a", "b", "choice": "a"|"b"|"tie"|"skip"}`` plus, when written by
`soups ask`, ``a_source``/``b_source``, ``pair`` (pool indices shown as A, B), ``phi_a``/``phi_b``
(standardized features, dimension -> value) and ``time``. A file collected elsewhere needs only
the four required fields; `soups fit-weights` then scores the responses itself.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from soups.errors import DataError
from soups.io.jsonl import read_jsonl
from soups.prefs.fit import CHOICES

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "a", "b", "choice")
MAX_PHI = 1e4  # phi is a reward in standard deviations of the pool: far beyond this is a broken file


def _check_record(path: Path, no: int, obj: dict) -> dict:
    for key in ("prompt", "a", "b"):
        if not isinstance(obj.get(key), str):
            raise DataError(f"{path}:{no}: field `{key}` must be a string, got {obj.get(key)!r}; fix the line")
    choice = obj.get("choice")
    if choice not in CHOICES:
        raise DataError(f"{path}:{no}: field `choice` is {choice!r}; use one of {', '.join(map(repr, CHOICES))}")
    for key in ("phi_a", "phi_b"):
        val = obj.get(key)
        if val is None:
            continue
        ok = isinstance(val, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) <= MAX_PHI for v in val.values()
        )
        if not ok:
            raise DataError(f"{path}:{no}: field `{key}` must map dimension names to standardized rewards (finite, "
                            f"within +-{MAX_PHI:g}); fix or drop it")
    pair = obj.get("pair")
    if pair is not None and not (
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(i, int) and i >= 0 for i in pair)
    ):
        raise DataError(f"{path}:{no}: field `pair` must be two pool indices like [3, 5], got {pair!r}")
    return obj


def read_answers(path: str | Path, tolerate_torn_tail: bool = False) -> list[dict]:
    """Read and validate an answer file; errors name the file and line.

    With `tolerate_torn_tail`, a last line that does not parse and has no newline (a write cut by a
    kill) is dropped with a warning instead of failing (used by `--resume`).
    """
    path = Path(path)
    rows = read_jsonl(path, "answers file", tolerate_torn_tail=tolerate_torn_tail)
    records = [_check_record(path, no, obj) for no, obj in rows]
    if tolerate_torn_tail:  # the file is valid but for a torn last line: cut it, so appends start on a fresh line
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):
            last = text.rsplit(b"\n", 1)[-1]
            if not rows or rows[-1][0] != text.count(b"\n") + 1:
                with open(path, "r+b") as fh:
                    fh.truncate(len(text) - len(last))
            else:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
    return records


class AnswerLog:
    """Append-only answer file: each record is written, flushed and fsynced before the next question."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held for the session, closed by close()

    def append(self, record: Mapping) -> None:
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> AnswerLog:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def has_phi(records: Sequence[Mapping], dims: Sequence[str]) -> bool:
    """True when every answered record carries phi_a/phi_b for all `dims`."""
    return all(
        all(isinstance(r.get(k), dict) and all(d in r[k] for d in dims) for k in ("phi_a", "phi_b"))
        for r in records
        if r["choice"] != "skip"
    )


def design(records: Sequence[Mapping], dims: Sequence[str], phi_a=None, phi_b=None) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) for fit_bt from answered records: X = phi(A) - phi(B), y = 1 / 0 / 0.5; skips dropped.

    phi_a/phi_b: (n, d) arrays for all records; default: the records' own phi_a/phi_b fields.
    """
    keep = [i for i, r in enumerate(records) if r["choice"] != "skip"]
    if phi_a is None:
        phi_a = np.array([[float(r["phi_a"][d]) for d in dims] for r in records]).reshape(len(records), len(dims))
        phi_b = np.array([[float(r["phi_b"][d]) for d in dims] for r in records]).reshape(len(records), len(dims))
    X = (np.asarray(phi_a) - np.asarray(phi_b))[keep].reshape(len(keep), len(dims))
    y = np.array([CHOICES[records[i]["choice"]] for i in keep], dtype=float)
    return X, y
