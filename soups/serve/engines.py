"""The vLLM servers behind `soups serve`, and the two ways a soup reaches one (the serving modes).

An `Engine` is one vLLM OpenAI-compatible server (soups.vllm_server) on a private loopback port that
only `soups serve` can call (its own random key in VLLM_API_KEY). The backends map a soup, named by its
content hash, to an engine and the model name to ask it for:

- `LoraBackend` (`--mode lora`, the default on a GPU): one engine, the base with LoRA on; each soup is
  its exact adapter, loaded under its hash through vLLM's runtime LoRA API and unloaded when dropped.
- `MergedBackend` (`--mode merged`, the default on a CPU, where vLLM's LoRA path is 2-4x slower than
  the base): the base's engine plus at most `max_users` engines, each serving one soup's merged full
  checkpoint as fast as the base. An engine starts on first use (or ahead, when there is room) and the
  least recently used idle one stops to make room; an engine answering a request is never stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, ServerError
from soups.recipe import Soup
from soups.vllm_server import BASE_MODEL_NAME

log = logging.getLogger(__name__)


@dataclass
class EngineOptions:
    """What every engine of one `soups serve` shares."""

    log_stem: str  # logs: <stem>.log (the base's), <stem>.<soup hash>.log
    dtype: str = "auto"
    max_model_len: int | None = 2048
    kv_cache_gb: float | None = None
    threads: int | None = None  # OpenMP threads on CPU (soups.vllm_server.cpu_threads)
    startup_timeout: float = 900.0
    extra_args: list[str] = field(default_factory=list)


@dataclass
class Built:
    """A soup built for a backend: its content hash, the adapter or checkpoint, the adapter's rank."""

    key: str
    path: Path
    rank: int | None = None


def build_for(mode: str, soup: Soup, base_dir: Path) -> Built:
    """The soup as that mode serves it (soups/serve/builds.py, cached): an exact adapter or a merged checkpoint."""
    from soups.serve.builds import build_adapter, build_checkpoint

    if mode == "merged":
        path = build_checkpoint(soup, base_dir)
        return Built(path.name, path)
    path, rank = build_adapter(soup, base_dir)
    return Built(path.name, path, rank)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """One vLLM server on 127.0.0.1 serving `model_dir` as model `name` (LoRA on when `lora` is given)."""

    def __init__(self, name: str, model_dir: Path, opts: EngineOptions, lora: dict | None = None):
        from soups.vllm_server import VllmServer, cpu_thread_env, server_command

        self.name, self.model_dir, self.key = name, Path(model_dir), secrets.token_urlsafe(24)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        lora = lora or {}
        cmd = server_command(model_dir, host="127.0.0.1", port=port, max_lora_rank=lora.get("max_lora_rank"),
                             max_loras=lora.get("max_loras", 4), max_cpu_loras=lora.get("max_cpu_loras"),
                             dtype=opts.dtype, max_model_len=opts.max_model_len, kv_cache_gb=opts.kv_cache_gb,
                             extra_args=opts.extra_args, served_name=name)
        logf = Path(f"{opts.log_stem}.log" if name == BASE_MODEL_NAME else f"{opts.log_stem}.{name}.log")
        env = cpu_thread_env(opts.threads) | {"VLLM_API_KEY": self.key}
        self.server = VllmServer(cmd, self.url, logf, env=env)
        self.timeout, self.inflight, self._stopping = opts.startup_timeout, 0, threading.Event()
        self.ready: asyncio.Future | None = None  # set by the backend that starts it

    def start(self, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Start and wait until healthy (blocking); False, with nothing left running, if stopped or cancelled."""
        ok = self.server.start(self.timeout, cancelled=lambda: self._stopping.is_set() or cancelled())
        if not ok or self._stopping.is_set():
            self.server.stop()
            return False
        return True

    def alive(self) -> bool:
        return self.server.proc is not None and self.server.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.server.proc.pid if self.server.proc is not None else None

    def stop(self) -> None:
        self._stopping.set()  # a start still waiting in another thread gives up and stops what it started
        self.server.stop()


class LoraBackend:
    """One engine: the base with LoRA; a soup is its exact adapter, loaded under its hash."""

    mode = "lora"

    def __init__(self, base_dir: Path, opts: EngineOptions, max_lora_rank: int, max_loras: int = 4,
                 max_cpu_loras: int | None = None):
        self.base_dir, self.max_lora_rank = Path(base_dir), max_lora_rank
        self.base = Engine(BASE_MODEL_NAME, base_dir, opts, lora={
            "max_lora_rank": max_lora_rank, "max_loras": max_loras, "max_cpu_loras": max_cpu_loras})
        self.loaded: set[str] = set()

    def build(self, soup: Soup) -> Built:
        """The soup's exact adapter (cached); refused when its rank exceeds the server's --max-lora-rank."""
        return self.check(build_for(self.mode, soup, self.base_dir))

    def check(self, built: Built) -> Built:
        if built.rank is not None and built.rank > self.max_lora_rank:
            raise ConfigError(
                f"soup rank {built.rank} exceeds the server's --max-lora-rank {self.max_lora_rank}; restart "
                "`soups serve` with a larger --max-lora-rank or use --method svd with a smaller rank")
        return built

    async def register(self, built: Built, warm: bool = False) -> None:
        from soups.vllm_server import load_adapter_into

        if built.key not in self.loaded:
            await asyncio.to_thread(load_adapter_into, self.base.url, built.key, built.path, False, self.base.key)
            self.loaded.add(built.key)

    async def drop(self, key: str) -> None:
        from soups.vllm_server import unload_adapter

        if key in self.loaded:
            self.loaded.discard(key)
            await asyncio.to_thread(unload_adapter, self.base.url, key, self.base.key)

    @contextlib.asynccontextmanager
    async def acquire(self, key: str | None) -> AsyncIterator[tuple[Engine, str]]:
        yield self.base, key or BASE_MODEL_NAME

    def engines(self) -> dict[str, Engine]:
        return {BASE_MODEL_NAME: self.base}

    def stop(self) -> None:
        self.base.stop()


class MergedBackend:
    """The base's engine plus at most `max_users` engines, one per soup's merged checkpoint (LRU)."""

    mode = "merged"

    def __init__(self, base_dir: Path, opts: EngineOptions, max_users: int = 4, on_change=lambda: None):
        self.base_dir, self.opts, self.max_users, self.on_change = Path(base_dir), opts, max_users, on_change
        self.base = Engine(BASE_MODEL_NAME, base_dir, opts)
        self.models: dict[str, Path] = {}  # soup hash -> merged checkpoint
        self.pool: OrderedDict[str, Engine] = OrderedDict()  # running or starting, least recently used first
        self.retiring: set[Engine] = set()  # out of the pool, stopping once their last request is answered
        self._cond: asyncio.Condition | None = None

    @property
    def cond(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    def build(self, soup: Soup) -> Built:
        return build_for(self.mode, soup, self.base_dir)

    async def register(self, built: Built, warm: bool = False) -> None:
        """Know the soup; with `warm`, start its engine now if there is room (without evicting anyone)."""
        self.models[built.key] = built.path
        if warm:
            async with self.cond:
                if built.key not in self.pool and len(self.pool) < self.max_users:
                    self._spawn(built.key)

    def _spawn(self, key: str) -> Engine:
        engine = Engine(key, self.models[key], self.opts)
        engine.ready = asyncio.ensure_future(asyncio.to_thread(engine.start))
        engine.ready.add_done_callback(lambda f: f.cancelled() or f.exception() or self.on_change())
        self.pool[key] = engine
        log.info("starting the engine of soup %s", key)
        return engine

    def _victim(self) -> Engine | None:
        """The least recently used engine that is up and idle."""
        return next((e for e in self.pool.values() if e.inflight == 0 and e.ready.done()), None)

    async def _retire(self, engine: Engine) -> None:
        """Stop `engine` (already out of the pool) once its last request is answered."""
        self.retiring.add(engine)
        async with self.cond:
            await self.cond.wait_for(lambda: engine.inflight == 0)
        await asyncio.to_thread(engine.stop)
        self.retiring.discard(engine)
        self.on_change()

    async def drop(self, key: str) -> None:
        self.models.pop(key, None)
        async with self.cond:
            engine = self.pool.pop(key, None)
        if engine is not None:
            asyncio.ensure_future(self._retire(engine))

    async def _reserve(self, key: str) -> Engine:
        async with self.cond:
            while True:
                engine = self.pool.get(key)
                if engine is not None and engine.ready.done() and not engine.alive():
                    del self.pool[key]  # died (or failed to start): start it again below
                    engine = None
                if engine is None:
                    if key not in self.models:
                        raise ConfigError(f"soup {key}: no longer served (removed meanwhile); send the request again")
                    if len(self.pool) >= self.max_users:
                        victim = self._victim()
                        if victim is None:  # every engine busy or starting: wait for one to finish a request
                            await self.cond.wait()
                            continue
                        del self.pool[victim.name]
                        log.info("stopping the engine of soup %s (least recently used)", victim.name)
                        asyncio.ensure_future(self._retire(victim))
                    engine = self._spawn(key)
                self.pool.move_to_end(key)
                engine.inflight += 1
                return engine

    async def _release(self, engine: Engine) -> None:
        async with self.cond:
            engine.inflight -= 1
            self.cond.notify_all()

    @contextlib.asynccontextmanager
    async def acquire(self, key: str | None) -> AsyncIterator[tuple[Engine, str]]:
        if key is None:
            yield self.base, BASE_MODEL_NAME
            return
        engine = await self._reserve(key)
        try:
            try:
                started = await asyncio.shield(engine.ready)
            except Exception as e:
                started = e
            if started is not True:
                async with self.cond:
                    if self.pool.get(key) is engine:
                        del self.pool[key]
                reason = str(started) if isinstance(started, Exception) else "stopped before it was ready"
                raise ServerError(f"soup {key}: its vLLM engine did not start ({reason}); "
                                  f"see {engine.server.log_file}")
            yield engine, key
        finally:
            await self._release(engine)

    def engines(self) -> dict[str, Engine]:
        return {BASE_MODEL_NAME: self.base, **self.pool}

    def stop(self) -> None:
        for engine in [*self.pool.values(), *self.retiring, self.base]:
            engine.stop()
