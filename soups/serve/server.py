"""`soups serve`: build every user's soup, start vLLM with LoRA, register the users, run until SIGINT/SIGTERM.

vLLM runs as a subprocess through soups.vllm_server (its own process group: stopping leaves no
engine process behind) with a `--max-lora-rank` that fits every exact soup of the expert set; each
user becomes a model name through vLLM's runtime LoRA API. A running server leaves a state file,
`$SOUPS_HOME/serve/HOST-PORT.json` (base, experts, max rank, users), which `add_user()` (`soups
serve add`) reads to build one more soup and load it without a restart.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, ServerError, SoupsError
from soups.serve.builds import build_adapter, max_rank_for_experts
from soups.serve.users import load_users, user_soup

log = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    base: str | Path = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    max_lora_rank: int | None = None  # default: fits every exact soup of the expert set
    max_loras: int = 4  # adapters batched together in one step
    max_cpu_loras: int | None = None  # adapters kept in memory (default: vLLM's, >= max_loras)
    dtype: str = "auto"
    max_model_len: int | None = 2048
    kv_cache_gb: float | None = None
    startup_timeout: float = 900.0
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)  # passed to vLLM's server as is


def state_path(host: str, port: int) -> Path:
    """Where a running `soups serve` records its base, experts, max rank and users (read by `serve add`)."""
    from soups.config import soups_home

    return soups_home() / "serve" / f"{host}-{port}.json"


def write_state(path: Path, state: dict) -> None:
    from soups.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(state, indent=1), force=True)


def read_state(host: str, port: int) -> dict:
    path = state_path(host, port)
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        return state
    except (OSError, ValueError, KeyError):
        raise ConfigError(
            f"--host {host} --port {port}: no `soups serve` running there (no live {path}); start one or fix --port"
        ) from None


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"--host {host} --port {port}: cannot listen there ({e.strerror}); pick another --port"
            ) from None


def serve(users_path: Path | str, opts: ServeOptions, experts: list[str] | None = None, echo=log.warning) -> None:
    """Build every user's soup, start vLLM with LoRA, register the users, run until SIGINT/SIGTERM."""
    import importlib.util
    import signal
    import time

    from soups.base import resolve_base
    from soups.vllm_server import VllmServer, load_adapter_into, max_lora_rank_for, server_command

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("soups serve needs vLLM, which is not installed: run scripts/install_vllm.sh")
    base_dir = resolve_base(opts.base)
    users = load_users(users_path, experts)
    for err in users.errors:
        echo(f"skipped: {err}")
    built: dict[str, tuple[Path, int]] = {}
    for name, soup in users.users.items():
        try:
            built[name] = build_adapter(soup, base_dir)
        except SoupsError as e:
            echo(f"skipped: user {name}: {e}")
    bound = max([max_rank_for_experts(users.experts)] + [r for _, r in built.values()])
    max_rank = opts.max_lora_rank or max_lora_rank_for(bound) or bound
    _check_port_free(opts.host, opts.port)
    url = f"http://{opts.host}:{opts.port}"
    state_file = state_path(opts.host, opts.port)
    cmd = server_command(base_dir, host=opts.host, port=opts.port, max_lora_rank=max_rank, max_loras=opts.max_loras,
                         max_cpu_loras=opts.max_cpu_loras, dtype=opts.dtype, max_model_len=opts.max_model_len,
                         kv_cache_gb=opts.kv_cache_gb, extra_args=opts.extra_args)
    server = VllmServer(cmd, url, opts.log_file or state_file.with_suffix(".log"))
    stop = []
    previous = {
        s: signal.signal(s, lambda signum, frame: stop.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        echo(f"starting vLLM on {url} (base {base_dir}, max LoRA rank {max_rank}); log: {server.log_file}")
        if not server.start(opts.startup_timeout, cancelled=lambda: bool(stop)):
            echo(f"stopping (signal {stop[0]}) before vLLM was ready")
            return
        state = {"url": url, "pid": os.getpid(), "server_pid": server.proc.pid, "base": str(base_dir),
                 "experts": users.experts, "max_lora_rank": max_rank, "users": {}}
        for name, (path, rank) in built.items():
            if rank > max_rank:
                echo(f"skipped: user {name}: soup rank {rank} > --max-lora-rank {max_rank}")
                continue
            try:
                load_adapter_into(url, name, path, replace=False)
                state["users"][name] = {"adapter": str(path), "rank": rank}
            except SoupsError as e:
                echo(f"skipped: {e}")
        write_state(state_file, state)
        names = ", ".join(state["users"]) or "none yet"
        echo(f"serving {len(state['users'])} user(s) ({names}) at {url}/v1: pick one with `model`; Ctrl-C stops")
        while not stop and server.proc.poll() is None:
            time.sleep(0.2)
        if not stop:
            raise ServerError(f"vLLM server exited (code {server.proc.returncode}){server.last_line()}; "
                              f"see its log: {server.log_file}")
        echo(f"stopping (signal {stop[0]})")
    finally:
        server.stop()
        state_file.unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def add_user(name: str, weights=None, *, recipe: Path | None = None, host: str = "127.0.0.1", port: int = 8000,
             method: str = "exact") -> tuple[Path, int, bool]:
    """Build a soup for `name` and load it into the running `soups serve` at host:port (replacing an older one).

    Returns (adapter dir, rank, replaced)."""
    from soups.vllm_server import load_adapter_into, served_models

    state = read_state(host, port)
    if (weights is None) == (recipe is None):
        raise ConfigError("soups serve add: give exactly one of --weights and --recipe")
    value = {"recipe": str(recipe)} if recipe is not None else weights
    soup = user_soup(name, value, state["experts"], where="soups serve add", method=method)
    path, rank = build_adapter(soup, Path(state["base"]))
    if rank > state["max_lora_rank"]:
        raise ConfigError(
            f"user {name}: soup rank {rank} exceeds the server's --max-lora-rank {state['max_lora_rank']}; "
            "restart `soups serve` with a larger --max-lora-rank or use --method svd with a smaller rank"
        )
    replaced = name in served_models(state["url"])
    load_adapter_into(state["url"], name, path, replace=replaced)
    state["users"][name] = {"adapter": str(path), "rank": rank}
    write_state(state_path(host, port), state)
    return path, rank, replaced
