"""`soups playground`: a local web page to move the experts' sliders, find your weights and export a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from soups.cli import app


@app.command("playground")
def playground_cmd(
    experts: Optional[str] = typer.Option(
        None, "--experts", "-e", help="Expert dirs or names under experts/, comma-separated (default: default.yaml)."
    ),
    base: str = typer.Option("default", "--base", help="`default` (embedded SmolLM2-135M-Instruct) or a model dir."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(7860, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="Starting sliders: `1,0,1` (over the experts) or `concise=1`. Default: all 1."
    ),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, max=1024, help="Length cap of each answer."),
    rounds: int = typer.Option(10, "--rounds", min=1, help="Questions of “Find my weights”."),
    pool: Optional[Path] = typer.Option(None, "--pool", help="Candidate pool JSONL for “Find my weights”."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the questions' A/B order (default: random)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for generation."),
    statements: bool = typer.Option(
        False, "--statements", help="Start with “statements” ticked: the soup is asked with its dimensions' "
        "preference statements appended (the paper's inference)."
    ),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="float32 (default: one answer at a time decodes fastest in it on a CPU) or bfloat16 "
        "(half the memory)."
    ),
) -> None:
    """Start a local web app: one slider per expert, the base's and the soup's answers streamed side by side
    with held-out score bars, "Find my weights" (ten pairwise choices) and "Export" (recipe, merge command).

    Works offline on the embedded base and the shipped experts. Needs the `playground` extra
    (`pip install -e '.[playground]'`; `make install` has it).

    Examples:

        soups playground                                   # then open http://127.0.0.1:7860

        soups playground --experts concise,friendly,expert,elementary --weights 1,0,1,0 --port 8080

        soups playground --statements --dtype bfloat16
    """
    import socket
    import time

    from soups.errors import ConfigError

    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ConfigError("soups playground needs Gradio: pip install -e '.[playground]' (or make install)") from None
    from soups.playground.app import launch
    from soups.playground.session import Playground
    from soups.recipe import default_expert_names, short_name
    from soups.weights import parse_weights

    names = [s.strip() for s in experts.split(",") if s.strip()] if experts else default_expert_names()
    start = parse_weights(weights, [short_name(n) for n in names]) if weights else None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:  # before seconds of loading
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); pick another --port "
                              "(or check --host)") from None
    typer.echo("loading the base and the experts…")
    pg = Playground(names, base, max_new_tokens=max_new_tokens, threads=threads, dtype=dtype)
    for err in pg.soup.errors:
        typer.echo(f"warning: {err} (left out; the page says so too)", err=True)
    try:
        demo = launch(pg, host=host, port=port, block=False, weights=start, rounds=rounds,
                      pool=str(pool) if pool else None, seed=seed, statements=statements)
    except OSError as e:
        raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({e}); pick another --port") from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.echo(f"warning: --host {host}: the playground is reachable from other machines", err=True)
    typer.echo(f"soups playground on http://{'localhost' if host == '127.0.0.1' else host}:{port} (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        typer.echo("stopping")
    finally:
        pg.answerer.stop()
        demo.close()
