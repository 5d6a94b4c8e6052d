"""`soups serve`: build every user's soup, start the vLLM engine(s), answer on one authenticated
OpenAI-compatible address until SIGINT/SIGTERM.

The mode (soups/serve/engines.py) is picked by device unless `--mode` says: on a GPU, `lora` (one
engine, one exact soup adapter per user); on a CPU, `merged` (one engine per soup's merged checkpoint,
at most `--max-users` at once, least recently used stopped first), because vLLM's CPU LoRA path costs
2-4x the base's time per token. The address is soups' own front (soups/serve/front.py); the engines
listen on private loopback ports. The key is `--api-key`, else $SOUPS_API_KEY, else generated; it is
stored owner-only beside the state file (soups/serve/state.py) and printed once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, ServerError, SoupsError
from soups.serve.state import KEY_ENV, check_key, exposure_warning, key_path, new_key, state_path, write_key
from soups.serve.users import load_users

log = logging.getLogger(__name__)

MODES = ("auto", "lora", "merged")


@dataclass
class ServeOptions:
    base: str | Path = "default"
    host: str = "127.0.0.1"
    port: int = 8000
    mode: str = "auto"  # auto: lora on a GPU, merged on a CPU
    max_users: int = 4  # merged mode: engines (users' soups) running at once
    max_soups: int = 8  # soups named in requests (`soup:...`) kept built and loaded
    max_lora_rank: int | None = None  # lora mode; default: fits every exact soup of the expert set
    max_loras: int = 4  # lora mode: adapters batched together in one step
    max_cpu_loras: int | None = None  # lora mode: adapters kept in memory (default: vLLM's, >= max_loras)
    dtype: str = "auto"
    max_model_len: int | None = 2048
    kv_cache_gb: float | None = None  # per engine
    threads: int | None = None  # OpenMP threads per engine on CPU (default: soups.vllm_server.cpu_threads)
    api_key: str | None = None  # default: $SOUPS_API_KEY, else generated
    no_api_key: bool = False  # serve without a key (only sensible behind an authenticating proxy)
    statements: bool = False  # append each soup's preference statements to its chat requests
    startup_timeout: float = 900.0
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)  # passed to every vLLM server as is

    def check(self) -> None:
        """Every cheap problem before anything is built or started (one line each, the flag named)."""
        problems = []
        if not 1 <= self.port <= 65535:
            problems.append(f"--port {self.port}: must be 1-65535")
        if self.mode not in MODES:
            problems.append(f"--mode {self.mode}: choose one of {', '.join(MODES)}")
        for flag, value, low in (("--max-users", self.max_users, 1), ("--max-soups", self.max_soups, 0),
                                 ("--max-loras", self.max_loras, 1), ("--threads", self.threads, 1),
                                 ("--max-model-len", self.max_model_len, 16)):
            if value is not None and value < low:
                problems.append(f"{flag} {value}: must be at least {low}")
        if self.kv_cache_gb is not None and not (math.isfinite(self.kv_cache_gb) and 0 < self.kv_cache_gb <= 1024):
            problems.append(f"--kv-cache-gb {self.kv_cache_gb}: must be a positive number of GiB, e.g. 0.5")
        if not (math.isfinite(self.startup_timeout) and self.startup_timeout > 0):
            problems.append(f"startup timeout {self.startup_timeout}: must be positive")
        if problems:
            raise ConfigError("; ".join(problems))


def pick_mode(mode: str) -> str:
    from soups.vllm_server import on_gpu

    return mode if mode != "auto" else ("lora" if on_gpu() else "merged")


def _check_port_free(host: str, port: int) -> None:
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(
                f"--host {host} --port {port}: cannot listen there ({e.strerror}); pick another --port or --host"
            ) from None


def _kv_per_engine(opts: ServeOptions, mode: str) -> float | None:
    """Merged mode runs 1 + max_users engines: split the default KV budget among them (>= 0.25 GiB each)."""
    from soups.vllm_server import kv_cache_bytes, on_gpu

    if opts.kv_cache_gb is not None or mode != "merged" or on_gpu():
        return opts.kv_cache_gb
    return max(0.25, kv_cache_bytes() / (1 << 30) / (1 + opts.max_users))


def _backend(mode: str, base_dir: Path, opts: ServeOptions, experts: list[str], built_ranks: list[int]):
    from soups.serve.builds import max_rank_for_experts
    from soups.serve.engines import EngineOptions, LoraBackend, MergedBackend
    from soups.vllm_server import max_lora_rank_for, on_gpu

    extra = list(opts.extra_args)
    if mode == "merged" and on_gpu() and not any(a.startswith("--gpu-memory-utilization") for a in extra):
        extra += ["--gpu-memory-utilization", f"{0.9 / (1 + opts.max_users):.3f}"]  # engines share one GPU
    stem = str(opts.log_file or state_path(opts.host, opts.port)).removesuffix(".json").removesuffix(".log")
    eng = EngineOptions(log_stem=stem,
                        dtype=opts.dtype, max_model_len=opts.max_model_len, kv_cache_gb=_kv_per_engine(opts, mode),
                        threads=opts.threads, startup_timeout=opts.startup_timeout, extra_args=extra)
    if mode == "merged":
        return MergedBackend(base_dir, eng, max_users=opts.max_users)
    bound = max([max_rank_for_experts(experts)] + built_ranks)
    rank = opts.max_lora_rank or max_lora_rank_for(bound) or bound
    return LoraBackend(base_dir, eng, rank, max_loras=opts.max_loras, max_cpu_loras=opts.max_cpu_loras)


def _api_key(opts: ServeOptions) -> str | None:
    if opts.no_api_key:
        return None
    if opts.api_key is not None:
        return check_key(opts.api_key)
    if os.environ.get(KEY_ENV):
        return check_key(os.environ[KEY_ENV], f"${KEY_ENV}")
    return new_key()


def serve(users_path: Path | str, opts: ServeOptions, experts: list[str] | None = None, echo=log.warning) -> None:
    """Build every user's soup, start the engine(s), answer until SIGINT/SIGTERM (module docstring)."""
    import importlib.util

    from soups.base import resolve_base

    opts.check()
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("soups serve needs vLLM, which is not installed: run scripts/install_vllm.sh")
    key = _api_key(opts)
    users = load_users(users_path, experts)
    base_dir = resolve_base(opts.base)
    _check_port_free(opts.host, opts.port)
    if warning := exposure_warning(opts.host, key):
        echo(warning)
    asyncio.run(_serve(users, opts, base_dir, key, echo))


async def _serve(users, opts: ServeOptions, base_dir: Path, key: str | None, echo) -> None:
    import signal

    from aiohttp import web

    from soups.serve.engines import build_for
    from soups.serve.front import make_app
    from soups.serve.router import Router

    mode = pick_mode(opts.mode)
    stop = threading.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(s, stop.set)
    for err in users.errors:
        echo(f"skipped: {err}")
    state_file, key_file = state_path(opts.host, opts.port), key_path(opts.host, opts.port)
    url = f"http://[{opts.host}]:{opts.port}" if ":" in opts.host else f"http://{opts.host}:{opts.port}"
    backend = router = runner = None
    try:
        built = {}  # every user's soup built first (an adapter or a merged checkpoint), then the engine(s)
        for name, soup in users.users.items():
            try:
                built[name] = (soup, await asyncio.to_thread(build_for, mode, soup, base_dir))
            except SoupsError as e:
                echo(f"skipped: user {name}: {e}")
        backend = _backend(mode, base_dir, opts, users.experts, [b.rank for _, b in built.values() if b.rank])
        shape = f"max LoRA rank {backend.max_lora_rank}" if mode == "lora" else f"up to {opts.max_users} soup engines"
        echo(f"starting vLLM in {mode} mode ({shape}; base {base_dir}); log: {backend.base.server.log_file}")
        if not await asyncio.to_thread(backend.base.start, stop.is_set):
            echo("stopping (signal) before vLLM was ready")
            return
        state = {"url": url, "pid": os.getpid(), "mode": mode, "base": str(base_dir), "experts": users.experts,
                 "max_lora_rank": getattr(backend, "max_lora_rank", None), "key_file": str(key_file) if key else None}
        router = Router(backend, base_dir, users.experts, state_file=state_file, state=state, max_soups=opts.max_soups)
        if mode == "merged":
            backend.on_change = router.write_state
        for name, (soup, b) in built.items():
            try:
                if mode == "lora":
                    backend.check(b)
                await router.add_user(name, soup, built=b)
            except SoupsError as e:
                echo(f"skipped: user {name}: {e}")
        if key:
            write_key(key_file, key)
        runner = web.AppRunner(make_app(router, key, key_file if key else None, statements=opts.statements),
                               access_log=None)
        await runner.setup()
        await web.TCPSite(runner, opts.host, opts.port).start()
        router.write_state()
        if key:
            echo(f"API key (send `Authorization: Bearer KEY`; stored owner-only in {key_file}): {key}")
        names = ", ".join(router.users) or "none yet"
        echo(f"serving {len(router.users)} user(s) ({names}) at {url}/v1 in {mode} mode: pick one with `model` "
             "(or `soup:WEIGHTS`); Ctrl-C stops")
        while not stop.is_set() and backend.base.alive():
            await asyncio.sleep(0.2)
        if not stop.is_set():
            raise ServerError(f"vLLM server exited (code {backend.base.server.proc.returncode})"
                              f"{backend.base.server.last_line()}; see its log: {backend.base.server.log_file}")
        echo("stopping (signal)")
    finally:
        if runner is not None:
            await runner.cleanup()
        if backend is not None:
            await asyncio.to_thread(backend.stop)
        state_file.unlink(missing_ok=True)
        key_file.unlink(missing_ok=True)
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(s)
