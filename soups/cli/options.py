"""Option helpers the command modules share: comma lists, `--param KEY=VALUE`, the `--method` help."""

from __future__ import annotations

from typing import Any


def split_list(text: str | None) -> list[str] | None:
    """`a, b,c` -> ["a", "b", "c"]; None (or empty) -> None."""
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


def parse_params(items: list[str] | None, flag: str = "--param") -> dict[str, Any]:
    """`["rank=16", "density=0.5"]` -> {"rank": 16, "density": 0.5} (values read as YAML scalars)."""
    import yaml

    from soups.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item}: use KEY=VALUE, e.g. {flag} rank=16")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def method_help() -> str:
    """The `--method` option's help, from the registry (soups/merge/methods.py)."""
    from soups.merge.methods import methods_help

    return f"Merge method: {methods_help()}."


# the ranges of the numbers commands share (typer checks them before any work; the errors name the flag)
SEED_MAX = 2**32 - 1  # numpy and torch seeds are 32-bit
MAX_NEW_TOKENS = 8192
MAX_BATCH = 4096
GEN_DTYPES = ("float32", "bfloat16", "float16", "auto")


def gen_dtype(value: str | None) -> str | None:
    """The `--dtype` of generation (typer callback): float32, bfloat16, float16 or auto."""
    import typer

    if value is not None and value not in GEN_DTYPES:
        raise typer.BadParameter(f"{value!r} is not a generation dtype; use one of {', '.join(GEN_DTYPES)}")
    return value
