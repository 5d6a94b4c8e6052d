"""User-named paths, checked before any work: input files and folders, output locations, finite numbers.

Every file a flag or a config names is read through here, so a directory, a symlink loop, a
device, an unreadable, binary or oversized file, or malformed JSON/YAML gives one `SoupsError`
naming the flag (or file), the problem and the fix, never a traceback. Output locations are
checked the same way before anything runs: no parent may be a file, and the nearest existing
folder must be writable.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from soups.errors import ConfigError, DataError, OutputExistsError, SoupsError

MAX_CONFIG_BYTES = 16 << 20  # a recipe, config, user.json or dimension file is small; refuse anything larger


def _label(path: Path, flag: str | None) -> str:
    return f"{flag} {path}" if flag else str(path)


def _why(e: OSError) -> str:
    return {errno.ELOOP: "a symlink loop", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.ENAMETOOLONG: "the name is too long", errno.ENOTDIR: "a parent is not a directory"}.get(
        e.errno, (e.strerror or type(e).__name__).lower())


def _stat(path: Path, where: str, error: type[SoupsError], hint: str, missing: str) -> os.stat_result:
    try:
        return path.stat()
    except OSError as e:
        raise error(f"{where}: {missing if e.errno == errno.ENOENT else _why(e)}; {hint}") from None


def input_file(path: Path | str, flag: str | None = None, error: type[SoupsError] = DataError,
               hint: str = "check the path") -> Path:
    """`path` as a readable regular file; otherwise `error` naming `flag`, what is wrong and `hint`."""
    path = Path(path).expanduser()
    where = _label(path, flag)
    st = _stat(path, where, error, hint, "file not found")
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{where}: is a directory, not a file; {hint}")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{where}: not a regular file (a device or pipe); {hint}")
    if not os.access(path, os.R_OK):
        raise error(f"{where}: permission denied; make it readable or {hint}")
    return path


def input_dir(path: Path | str, flag: str | None = None, error: type[SoupsError] = DataError,
              hint: str = "check the path") -> Path:
    """`path` as an existing directory; otherwise `error` naming `flag`, what is wrong and `hint`."""
    path = Path(path).expanduser()
    if not stat.S_ISDIR(_stat(path, _label(path, flag), error, hint, "not found").st_mode):
        raise error(f"{_label(path, flag)}: is a file, not a directory; {hint}")
    return path


def read_text(path: Path | str, flag: str | None = None, error: type[SoupsError] = DataError,
              hint: str = "check the path", max_bytes: int | None = MAX_CONFIG_BYTES) -> str:
    """A UTF-8 text file (checked by `input_file`); binary or oversized content is `error` too."""
    path = input_file(path, flag, error, hint)
    where = _label(path, flag)
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise error(f"{where}: {size / 1e6:.0f} MB is too large for this kind of file (at most "
                    f"{max_bytes / 1e6:.0f} MB); {hint}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise error(f"{where}: cannot read ({_why(e)}); {hint}") from None
    if b"\0" in data:
        raise error(f"{where}: a binary file, not text; {hint}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{where}: not UTF-8 text ({e.reason} at byte {e.start}); {hint}") from None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a finite number")


def read_json(path: Path | str, flag: str | None = None, error: type[SoupsError] = DataError,
              hint: str = "check the path", expect: type | None = dict) -> Any:
    """A JSON file (NaN/Infinity refused); with `expect`, the top level must be of that type."""
    text = read_text(path, flag, error, hint)
    where = _label(Path(path), flag)
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise error(f"{where}: not valid JSON ({e}); {hint}") from None
    if expect is not None and not isinstance(data, expect):
        want = {dict: "an object", list: "a list"}.get(expect, expect.__name__)
        raise error(f"{where}: expected a JSON {want} at the top level, got {type(data).__name__}; {hint}")
    return data


def read_yaml(path: Path | str, flag: str | None = None, error: type[SoupsError] = ConfigError,
              hint: str = "fix the file", expect: type | None = dict) -> Any:
    """A YAML file (safe loader); syntax errors name the line; with `expect`, the top level's type."""
    import yaml

    text = read_text(path, flag, error, hint)
    where = _label(Path(path), flag)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise error(f"{where}{line}: invalid YAML ({getattr(e, 'problem', None) or e}); {hint}") from None
    except RecursionError:
        raise error(f"{where}: YAML nested too deeply; {hint}") from None
    if expect is not None and not isinstance(data, expect):
        want = {dict: "a mapping", list: "a list"}.get(expect, expect.__name__)
        raise error(f"{where}: expected {want} at the top level, got {type(data).__name__}; {hint}")
    return data


def check_writable(path: Path | str, flag: str = "--out") -> Path:
    """`path` can be created: no parent is a file and the nearest existing folder is writable.

    Missing parents are fine (outputs create them). Nothing is written."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    try:
        if path.is_symlink() and not path.exists():
            raise OutputExistsError(f"{flag} {path}: a dangling symlink or a symlink loop; remove it or choose "
                                    "another path")
    except OSError as e:
        raise OutputExistsError(f"{flag} {path}: {_why(e)}; choose another path") from None
    parent = path.parent
    while True:
        try:
            st = parent.stat()
        except (FileNotFoundError, NotADirectoryError):  # created later, or under a file (found further up)
            parent = parent.parent
            continue
        except OSError as e:
            raise OutputExistsError(f"{flag} {path}: {parent} is unusable ({_why(e)}); choose another path") from None
        if not stat.S_ISDIR(st.st_mode):
            raise OutputExistsError(f"{flag} {path}: {parent} is a file, not a directory; choose another path")
        if not os.access(parent, os.W_OK | os.X_OK) or os.statvfs(parent).f_flag & os.ST_RDONLY:
            raise OutputExistsError(f"{flag} {path}: {parent} is not writable; choose another path")
        return path


def non_finite(value: Any, where: str = "") -> str | None:
    """The location (`a.b[2]`) of the first NaN or infinite number in nested dicts/lists, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(value)"
    if isinstance(value, Mapping):
        for k, v in value.items():
            found = non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def finite_json(value: Any, what: str, hint: str = "check the inputs", **dumps: Any) -> str:
    """`json.dumps(value)` for a file about to be written, refusing NaN/inf (named by location) with DataError."""
    bad = non_finite(value)
    if bad:
        raise DataError(f"{what}: `{bad}` is not a finite number; nothing was written ({hint})")
    return json.dumps(value, allow_nan=False, **dumps)
