"""Atomic output directories: build in a temp dir beside the target, fsync, rename when complete.

A failure, Ctrl-C or SIGKILL leaves no partial output at the target (a killed run may leave
a hidden `.<name>.tmp-*` sibling, which the next run removes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from soups.errors import OutputExistsError

TMP_TAG = ".tmp-"


def check_output(out: Path, force: bool, flag: str = "--out") -> None:
    """Refuse a non-empty `out` unless `force` (call before any heavy work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{flag} {out}: exists and is not a directory; choose another path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{flag} {out}: directory is not empty; pass --force to replace it")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file, then every directory, under `root`."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _clean_stale(out: Path) -> None:
    for stale in out.parent.glob(f".{out.name}{TMP_TAG}*"):
        if stale.is_dir():
            with contextlib.suppress(OSError):
                pid = int(stale.name.rsplit("-", 1)[-1])
                os.kill(pid, 0)  # owner still running: leave it alone
                continue
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: Path, force: bool = False, flag: str = "--out", sync: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `out` (rename), on failure it is removed."""
    out = Path(out).absolute()
    check_output(out, force, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_TAG}", suffix=f"-{os.getpid()}", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output gets the usual permissions
    try:
        yield tmp
        if sync:
            fsync_tree(tmp)
        if out.exists():
            old = out.with_name(f".{out.name}{TMP_TAG}old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
        if sync:
            fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str, force: bool = False, flag: str = "--out") -> Path:
    """Write one file through a temp file + fsync + rename; refuse an existing file without `force`."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{flag} {path}: file exists; pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
