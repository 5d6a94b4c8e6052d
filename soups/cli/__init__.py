"""The `soups` command line: thin typer commands, one library call each.

Each command group lives in its own module (merge, base, train, eval, serve, prefs) and
registers on `app`. Heavy imports (torch, transformers, trl, vllm) happen inside the
commands so `soups --help` is instant. A SoupsError prints one line and exits 2.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

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
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning SoupsError into one line + exit 2."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except SoupsError as e:
        fail(" ".join(str(e).split()), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)


if __name__ == "__main__":
    main(sys.argv[1:])
