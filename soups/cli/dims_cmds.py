"""`soups dims`: list the preference dimensions (experts/*.yaml), or score a text on each."""

from __future__ import annotations

import json
import sys

import typer

from soups.cli import app


@app.command("dims")
def dims_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the dimensions (or scores) as JSON."),
    score: str | None = typer.Option(None, "--score", help="Score this text on every dimension (`-`: stdin)."),
    prompt: str | None = typer.Option(None, "--prompt", help="The instruction the --score text answers."),
) -> None:
    """List the preference dimensions: name, opposite, reward kind and the paper's preference statement.

    A dimension is a file `experts/<name>.yaml` (folder: $SOUPS_EXPERTS_DIR); add one to add a dimension.

    Examples:

        soups dims
        soups dims --score "Rayleigh scattering: air scatters blue light most." --prompt "Why is the sky blue?"
    """
    from soups.dimensions import list_dimensions

    dims = list_dimensions()
    if score is not None:
        from soups.rewards import get_reward

        text = sys.stdin.read() if score == "-" else score
        scores = {d.name: get_reward(d)([text], prompts=[prompt] if prompt else None)[0] for d in dims}
        if as_json:
            typer.echo(json.dumps(scores, indent=2))
        else:
            for d in dims:
                typer.echo(f"{d.name:14} {d.reward.kind:6} {scores[d.name]:8.3f}")
        return
    if as_json:
        rows = [{**d.model_dump(mode="json"), "source": str(d.source)} for d in dims]
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(dims)} dimensions", show_lines=False)
    for col in ("name", "opposite", "reward", "statement"):
        table.add_column(col, overflow="fold")
    for d in dims:
        table.add_row(d.name, d.opposite or "-", d.reward.kind, d.statement)
    Console().print(table)
