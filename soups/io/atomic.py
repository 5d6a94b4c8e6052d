"""Atomic outputs: build in a temp dir (or file) beside the target, fsync, swap in when complete.

A failure, Ctrl-C or SIGKILL leaves no partial output at the target, and never loses the old one:
a directory is swapped in by one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`), else by two
renames whose interruption the next run repairs (the old output is put back). Temporary siblings
(`.<name>.tmp-*-<pid>`) of killed runs are removed by the next run that writes the same target.

`--force` replaces only what soups wrote: a non-empty directory must carry one of soups' marker
files (`MARKERS`: soup.json, expert.json, ...), else it is refused whatever the flags say.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from soups.errors import OutputExistsError

TMP_TAG = ".tmp-"
OLD_TAG = ".tmp-old-"
# the provenance file each kind of soups output carries: it marks a directory --force may replace
MARKERS = ("soup.json", "expert.json", "reward_model.json", "results.json", "sweep.json", "soups_base.json")
EXCHANGE = True  # use renameat2(RENAME_EXCHANGE) where the kernel and filesystem have it


def is_soups_output(path: Path) -> bool:
    """True when the directory holds one of soups' marker files (a soups output)."""
    return any((Path(path) / m).is_file() for m in MARKERS)


def check_output(out: Path, force: bool, flag: str = "--out") -> None:
    """Refuse a non-empty `out` unless `force` and soups wrote it; refuse an unwritable one (before heavy work).

    Also repairs an interrupted replacement of `out` and removes killed runs' temporary siblings."""
    from soups.io.files import check_writable

    out = Path(os.path.abspath(Path(out).expanduser()))
    check_writable(out, flag)
    repair(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{flag} {out}: exists and is not a directory; choose another path")
    if not out.is_dir():
        return
    cwd = Path(os.path.abspath(Path.cwd()))
    if out == cwd or out in cwd.parents:
        raise OutputExistsError(f"{flag} {out}: is (or contains) the current directory; choose another path")
    if not any(out.iterdir()):
        return
    if not force:
        raise OutputExistsError(f"{flag} {out}: directory is not empty; pass --force to replace it")
    if not is_soups_output(out):
        raise OutputExistsError(
            f"{flag} {out}: not a soups output (no {' / '.join(MARKERS[:3])} ...) and not empty; --force replaces "
            "only what soups wrote: choose another path or empty it"
        )


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


def _owner_alive(path: Path) -> bool:
    """Whether the process whose id ends the temporary name (`...-<pid>`) still runs."""
    try:
        pid = int(path.name.rsplit("-", 1)[-1])
    except ValueError:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def repair(out: Path) -> None:
    """Finish what killed runs left beside `out`: put back an old output a swap had moved away (when `out`
    is missing), then remove their temporary directories and files. Live runs' files are left alone."""
    out = Path(out).absolute()
    try:
        siblings = sorted(out.parent.glob(f".{out.name}{TMP_TAG}*"))
    except OSError:
        return
    for stale in siblings:
        if _owner_alive(stale):
            continue
        if stale.name.startswith(f".{out.name}{OLD_TAG}") and stale.is_dir() and not os.path.lexists(out):
            os.rename(stale, out)  # the swap was cut between its two renames: the old output comes back
        elif stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not EXCHANGE:
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, out: Path) -> None:
    """Put the finished `tmp` at `out`; the old `out` survives until the new one is in place."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):  # one step: `out` is the new output, `tmp` now holds the old one
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.with_name(f".{out.name}{OLD_TAG}{os.getpid()}")
    os.rename(out, old)  # a kill here leaves `old`: the next run's repair() renames it back
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(out: Path, force: bool = False, flag: str = "--out", sync: bool = True) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `out`, on failure it is removed."""
    out = Path(os.path.abspath(Path(out).expanduser()))
    check_output(out, force, flag)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}{TMP_TAG}", suffix=f"-{os.getpid()}", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; the output gets the usual permissions
    try:
        yield tmp
        if sync:
            fsync_tree(tmp)
        _swap_in(tmp, out)
        if sync:
            fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_file_target(path: Path, force: bool, flag: str = "--out") -> Path:
    """Refuse an existing file without `force`, a directory, or an unwritable place; clean killed runs' temp files."""
    from soups.io.files import check_writable

    path = Path(path).expanduser()
    check_writable(path, flag)
    if path.is_dir():
        raise OutputExistsError(f"{flag} {path}: is a directory; give a file path")
    if os.path.lexists(path) and not force:
        raise OutputExistsError(f"{flag} {path}: file exists; pass --force to replace it")
    repair(path)
    return path


def atomic_write_text(path: Path, text: str, force: bool = False, flag: str = "--out") -> Path:
    """Write one file through a temp file + fsync + rename; refuse an existing file without `force`."""
    path = check_file_target(Path(path), force, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
