"""`soups serve` (one vLLM server, one soup adapter per user) and `soups serve add` (a user at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soups.cli import app
from soups.cli.options import method_help, split_list

serve_app = typer.Typer(no_args_is_help=False, rich_markup_mode="markdown")
app.add_typer(serve_app, name="serve")


@serve_app.callback(invoke_without_command=True)
def serve_cmd(
    ctx: typer.Context,
    users: Optional[Path] = typer.Option(None, "--users", "-u", help="users.yaml: user id -> weights or recipe."),
    base: str = typer.Option("default", "--base", help="`default` (embedded SmolLM2-135M-Instruct) or a model dir."),
    experts: Optional[str] = typer.Option(
        None,
        "--experts",
        "-e",
        help="Expert order for positional weights (default: users.yaml, experts/default.yaml).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    max_lora_rank: Optional[int] = typer.Option(
        None, "--max-lora-rank", help="vLLM's max LoRA rank (default: fits any exact soup of the experts)."
    ),
    max_loras: int = typer.Option(4, "--max-loras", help="Users' adapters batched together in one step."),
    max_cpu_loras: Optional[int] = typer.Option(None, "--max-cpu-loras", help="Adapters kept in memory."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype for vLLM: auto | bfloat16 | float16 | float32."),
    max_model_len: int = typer.Option(2048, "--max-model-len", help="Longest prompt + answer, in tokens."),
    kv_cache_gb: Optional[float] = typer.Option(
        None, "--kv-cache-gb", help="KV-cache size (default on CPU: 15% of free RAM, 0.25-4 GiB; on GPU: vLLM's)."
    ),
    log_file: Optional[Path] = typer.Option(
        None, "--log", help="vLLM's log (default: $SOUPS_HOME/serve/HOST-PORT.log)."
    ),
    vllm_arg: list[str] = typer.Option([], "--vllm-arg", help="Extra vLLM server flag, repeatable: --vllm-arg=--foo."),
) -> None:
    """Serve many users' soups from one vLLM server: one base, one exact soup adapter per user (multi-LoRA).

    Each user is a model name on vLLM's OpenAI-compatible API; the base is `base`. Ctrl-C stops everything.

    users.yaml:

        experts: [concise, friendly, expert]      # optional: order of positional weights
        users:
          alice: 1,0,1
          bob: {concise: 2, expert: 1}
          carol: {recipe: merge_recipes/concise_expert.yaml}

    Example:

        soups serve --users users.yaml --port 8000

        curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
            -d '{"model": "alice", "messages": [{"role": "user", "content": "Hi"}]}'
    """
    if ctx.invoked_subcommand is not None:
        return
    from soups.errors import ConfigError
    from soups.serve import ServeOptions, serve

    if users is None:
        raise ConfigError("--users is required: a users.yaml mapping user ids to weights (see `soups serve --help`)")
    opts = ServeOptions(
        base=base,
        host=host,
        port=port,
        max_lora_rank=max_lora_rank,
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        dtype=dtype,
        max_model_len=max_model_len,
        kv_cache_gb=kv_cache_gb,
        log_file=log_file,
        extra_args=list(vllm_arg),
    )
    serve(users, opts, experts=split_list(experts), echo=lambda msg: typer.echo(msg, err=True))


@serve_app.command("add")
def serve_add_cmd(
    user: str = typer.Argument(..., help="User id (the model name clients send)."),
    weights: Optional[str] = typer.Option(None, "--weights", "-w", help="`1,0,1` or `concise=1,expert=1`."),
    recipe: Optional[Path] = typer.Option(
        None, "--recipe", "-r", help="merge_recipes/NAME.yaml instead of --weights."
    ),
    method: str = typer.Option("exact", "--method", "-m", help=method_help() + " With --weights."),
    host: str = typer.Option("127.0.0.1", "--host", help="The running `soups serve`'s host."),
    port: int = typer.Option(8000, "--port", "-p", help="The running `soups serve`'s port."),
) -> None:
    """Add a user to a running `soups serve`, or replace a user's soup, without a restart.

    Example:

        soups serve add dave --weights concise=1,friendly=1 --port 8000
    """
    from soups.serve import add_user

    path, rank, replaced = add_user(user, weights, recipe=recipe, host=host, port=port, method=method)
    typer.echo(f"{'updated' if replaced else 'added'} user {user} (soup rank {rank}, {path})")
