"""`soups serve` (many users' soups behind one OpenAI-compatible address), `soups serve add` (a user at run time)."""

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
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless you say)."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    mode: str = typer.Option(
        "auto", "--mode", help="`lora` (one engine, an adapter per user; default on a GPU), `merged` (an engine per "
        "user's merged checkpoint; default on a CPU, where LoRA is 2-4x slower) or `auto`."
    ),
    max_users: int = typer.Option(4, "--max-users", min=1, help="Merged mode: users' engines running at once "
                                  "(least recently used stopped first; about 1 GB each for the default base)."),
    max_soups: int = typer.Option(8, "--max-soups", min=0, help="Soups named in requests (`soup:...`) kept built."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="Key clients must send (default: $SOUPS_API_KEY, else one generated and printed)."
    ),
    no_api_key: bool = typer.Option(False, "--no-api-key", help="Serve without a key (behind your own auth only)."),
    max_lora_rank: Optional[int] = typer.Option(
        None, "--max-lora-rank", min=1, max=512,
        help="LoRA mode: vLLM's max LoRA rank (default: fits any exact soup of the experts).",
    ),
    max_loras: int = typer.Option(4, "--max-loras", min=1, help="LoRA mode: users' adapters batched in one step."),
    max_cpu_loras: Optional[int] = typer.Option(None, "--max-cpu-loras", min=1, help="LoRA mode: adapters in memory."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype for vLLM: auto | bfloat16 | float16 | float32."),
    max_model_len: int = typer.Option(2048, "--max-model-len", min=16, help="Longest prompt + answer, in tokens."),
    kv_cache_gb: Optional[float] = typer.Option(
        None, "--kv-cache-gb", help="KV cache per engine (default on CPU: 15% of free RAM, 0.25-4 GiB, shared out "
        "among the engines in merged mode; on GPU: vLLM's)."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="CPU threads per engine (default: 1 on a busy machine, else half the cores)."
    ),
    log_file: Optional[Path] = typer.Option(
        None, "--log", help="vLLM's log (default: $SOUPS_HOME/serve/HOST-PORT.log)."
    ),
    vllm_arg: list[str] = typer.Option([], "--vllm-arg", help="Extra vLLM server flag, repeatable: --vllm-arg=--foo."),
    statements: bool = typer.Option(False, "--statements", help="Append each user's preference statements (their "
                                    "soup's dimensions) to their messages, as the paper asks its soups."),
) -> None:
    """Serve many users' soups behind one OpenAI-compatible address; vLLM answers.

    Each user is a model name; `base` is the base; `soup:concise=1,expert=0.5` is that exact soup, built on
    first use. Requests need `Authorization: Bearer KEY` (the key is printed at start). Ctrl-C stops everything.

    users.yaml:

        experts: [concise, friendly, expert]      # optional: order of positional weights
        users:
          alice: 1,0,1
          bob: {concise: 2, expert: 1}
          carol: {recipe: merge_recipes/concise_expert.yaml}

    Example:

        soups serve --users users.yaml --port 8000

        curl localhost:8000/v1/chat/completions -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \\
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
        mode=mode,
        max_users=max_users,
        max_soups=max_soups,
        api_key=api_key,
        no_api_key=no_api_key,
        max_lora_rank=max_lora_rank,
        max_loras=max_loras,
        max_cpu_loras=max_cpu_loras,
        dtype=dtype,
        max_model_len=max_model_len,
        kv_cache_gb=kv_cache_gb,
        threads=threads,
        log_file=log_file,
        extra_args=list(vllm_arg),
        statements=statements,
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
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="The running `soups serve`'s port."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", help="The server's key (default: $SOUPS_API_KEY, else the key file it wrote)."
    ),
) -> None:
    """Add a user to a running `soups serve`, or replace a user's soup, without a restart.

    Example:

        soups serve add dave --weights concise=1,friendly=1 --port 8000
    """
    from soups.serve import add_user

    res = add_user(user, weights, recipe=recipe, host=host, port=port, method=method, api_key=api_key)
    what = f"soup rank {res['rank']}" if res.get("rank") else "merged checkpoint"
    typer.echo(f"{'updated' if res['replaced'] else 'added'} user {user} ({what}, {res['path']})")
