"""The `soups` command line: thin typer commands, one library call each.

Each command group lives in its own module (merge, base, train, eval, serve, prefs) and
registers on `app`. Heavy imports (torch, transformers, trl, vllm) happen inside the
commands so `soups --help` is instant. A SoupsError prints one line and exits 2.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import sys

import typer

try:  # typer >= 0.16 carries its own click
    from typer._click import exceptions as click_errors
except ImportError:  # older typer runs on click itself
    from click import exceptions as click_errors

from soups.errors import SoupsError

app = typer.Typer(
    name="soups",
    help="Personalized Soups: train one LoRA expert per preference dimension, merge them per user.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

# command modules, registered in this order (a missing optional module is skipped)
_COMMAND_MODULES = [
    "merge_cmds", "base_cmds", "dims_cmds", "train_cmds", "eval_cmds", "serve_cmds", "prefs_cmds", "playground_cmds",
]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


def _register() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"soups.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"soups.cli.{name}":
                raise


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise SystemExit(code)


def usage_line(e: click_errors.UsageError) -> str:
    """A typer/click usage error (missing or unknown option, bad value) as one line: what, and where to look."""
    where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else "; see `soups --help`"
    message = e.format_message().rstrip(".")
    errors = getattr(e.__cause__, "errors", None)  # typer coerces values with pydantic: the bad input is there
    if isinstance(e, click_errors.BadParameter) and callable(errors):
        with contextlib.suppress(Exception):
            message = message.replace(": ", f" (got {errors()[0]['input']!r}): ", 1)
    return message + where


# errors of the environment rather than of soups (a full disk, a path that went away): one line, not a traceback
_OS_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
              errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.EEXIST, errno.EXDEV, errno.EMFILE}


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app; a SoupsError, a usage error or an environment error (disk full,
    permission) prints one line on stderr and exits 2 (the one place these are turned into that line)."""
    _register()
    try:
        code = app(args=argv, prog_name="soups", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as e:  # `soups`, `soups base`: the help is the answer
        typer.echo(e.ctx.get_help())
        code = 0
    except click_errors.UsageError as e:
        fail(usage_line(e), 2)
    except click_errors.ClickException as e:
        fail(e.format_message(), 2)
    except typer.Abort:
        fail("interrupted (end of input or Ctrl-C)", 130)
    except SoupsError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as e:
        if e.errno not in _OS_ERRNOS or not e.filename:
            raise
        logging.getLogger(__name__).debug("environment error", exc_info=True)
        fail(f"{e.filename}: {(e.strerror or str(e)).lower()}; check the path, its permissions and the free space", 2)
    if isinstance(code, int) and code:
        raise SystemExit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
