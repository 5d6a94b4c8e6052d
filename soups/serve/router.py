"""Who is served, and by which engine: users (name -> soup), the soups requests name themselves
(`"model": "soup:concise=1,expert=0.5"`, a bounded least-recently-used set), and the one lock that
serialises every change and the state file's updates (so concurrent `soups serve add` calls never lose
one). A soup is known by its content hash (soups/serve/builds.py): users with the same soup, and a
user whose soup a request also names, share one build and one adapter or engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from soups.errors import SoupsError
from soups.recipe import Soup
from soups.serve.engines import Built, Engine, LoraBackend, MergedBackend
from soups.serve.users import SOUP_PREFIX, check_user_name, request_soup
from soups.vllm_server import BASE_MODEL_NAME

log = logging.getLogger(__name__)


class HTTPError(Exception):
    """A request soups serve refuses: an HTTP status and a one-line message (OpenAI's error shape)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, " ".join(str(message).split())


@dataclass
class User:
    built: Built
    soup: Soup | None  # None for an adapter loaded through the runtime LoRA API


class Router:
    def __init__(self, backend: LoraBackend | MergedBackend, base_dir: Path, experts: list[str], *,
                 state_file: Path, state: dict, max_soups: int = 8):
        self.backend, self.base_dir, self.experts = backend, Path(base_dir), list(experts)
        self.state_file, self.state_base, self.max_soups = state_file, dict(state), max_soups
        self.users: dict[str, User] = {}
        self.soups: OrderedDict[str, tuple[str, Built]] = OrderedDict()  # hash -> (model name asked, build)
        self.busy: Counter = Counter()  # requests in flight per soup hash
        self.lock = asyncio.Lock()
        self._builds: dict[str, asyncio.Future] = {}
        self._build_slot = asyncio.Semaphore(1)  # one merge at a time (the merge engine is one process's work)

    # ------------------------------------------------------------------ building
    def _known(self, key: str) -> Built | None:
        if key in self.soups:
            return self.soups[key][1]
        return next((u.built for u in self.users.values() if u.built.key == key), None)

    async def build(self, soup: Soup, warm: bool = False) -> Built:
        """The soup built and registered with the backend, once per content hash."""
        from soups.serve.builds import soup_key

        key = await asyncio.to_thread(soup_key, soup, self.base_dir)
        if (built := self._known(key)) is not None:
            return built
        if key not in self._builds:
            self._builds[key] = asyncio.ensure_future(self._build_now(soup, warm))
            self._builds[key].add_done_callback(lambda f: self._builds.pop(key, None))
        return await asyncio.shield(self._builds[key])

    async def _build_now(self, soup: Soup, warm: bool) -> Built:
        async with self._build_slot:
            built = await asyncio.to_thread(self.backend.build, soup)
        await self.backend.register(built, warm=warm)
        return built

    async def _drop_unused(self, key: str) -> None:
        if self._known(key) is None:
            await self.backend.drop(key)

    # ------------------------------------------------------------------ users
    async def add_user(self, name: str, soup: Soup | None = None, built: Built | None = None) -> dict:
        """Serve `soup` (or an already built adapter) as `name`, replacing the user's older soup."""
        async with self.lock:
            if built is None:
                built = await self.build(soup, warm=True)
            else:
                await self.backend.register(built, warm=True)
            old = self.users.get(name)
            self.users[name] = User(built, soup)
            if old is not None and old.built.key != built.key:
                await self._drop_unused(old.built.key)
            self.write_state()
        return {"user": name, "soup": built.key, "path": str(built.path), "rank": built.rank,
                "replaced": old is not None, "mode": self.backend.mode}

    async def remove_user(self, name: str) -> None:
        async with self.lock:
            user = self.users.pop(name, None)
            if user is None:
                raise HTTPError(404, f"user {name!r} is not served here")
            await self._drop_unused(user.built.key)
            self.write_state()

    # ------------------------------------------------------------------ requests
    async def resolve(self, model) -> str | None:
        """A request's model name as a soup hash (None: the base); a `soup:` name is built on first use."""
        if model == BASE_MODEL_NAME:
            return None
        if isinstance(model, str) and model in self.users:
            return self.users[model].built.key
        if not isinstance(model, str) or not model.startswith(SOUP_PREFIX):
            served = ", ".join([BASE_MODEL_NAME, *self.users]) if len(self.users) < 20 else f"{len(self.users)} users"
            experts = ", ".join(Path(e).name for e in self.experts)
            raise HTTPError(404, f"model {str(model)[:80]!r} is not served here: ask for one of {served}, or name "
                                 f"a soup as `soup:WEIGHTS` over {experts} (soup:{self._example()})")
        try:
            soup = request_soup(model, self.experts)
            key = next((k for k, (asked, _) in self.soups.items() if asked == model), None)
            if key is None:
                async with self.lock:
                    built = await self.build(soup)
                    key = built.key
                    if self._known(key) is not None and key not in self.soups:  # a user's soup: shared
                        return key
                    self.soups[key] = (model, built)
                    await self._prune()
                    self.write_state()
        except SoupsError as e:
            raise HTTPError(400, str(e)) from None
        if key in self.soups:
            self.soups.move_to_end(key)
        return key

    def _example(self) -> str:
        return ",".join(f"{Path(e).name}={1 if i == 0 else 0.5}" for i, e in enumerate(self.experts[:2]))

    async def _prune(self) -> None:
        """Keep at most `max_soups` request-named soups: drop the least recently used idle ones."""
        idle = [k for k in self.soups if not self.busy[k]]
        for key in idle[: max(0, len(self.soups) - self.max_soups)]:
            del self.soups[key]
            await self._drop_unused(key)
        if isinstance(self.backend, MergedBackend):  # merged checkpoints are big: bound the disk they take
            from soups.serve.builds import cache_dir, prune

            keep = set(self.soups) | {u.built.key for u in self.users.values()}
            await asyncio.to_thread(prune, cache_dir("models"), keep, self.max_soups)

    @contextlib.asynccontextmanager
    async def route(self, model) -> AsyncIterator[tuple[Engine, str]]:
        """The engine that answers `model` and the model name to ask it for (held while answering)."""
        key = await self.resolve(model)
        self.busy[key] += 1
        try:
            async with self.backend.acquire(key) as target:
                yield target
        except SoupsError as e:
            raise HTTPError(503, str(e)) from None
        finally:
            self.busy[key] -= 1

    def path_of(self, key: str) -> Path | None:
        """The adapter or merged checkpoint of a soup hash (None: not known)."""
        built = self._known(key)
        return built.path if built is not None else None

    def models(self) -> list[str]:
        return [BASE_MODEL_NAME, *self.users, *(asked for asked, _ in self.soups.values())]

    # ------------------------------------------------------------------ state
    def write_state(self) -> None:
        """The state file (soups/serve/state.py): called from the event loop only, so writes never interleave."""
        from soups.serve.state import write_state

        users = {name: {"soup": u.built.key, "path": str(u.built.path), "rank": u.built.rank,
                        "experts": dict(u.soup.experts) if u.soup is not None else None}
                 | ({"adapter": str(u.built.path)} if self.backend.mode == "lora" else {})
                 for name, u in self.users.items()}
        engines = {name: e.pid for name, e in self.backend.engines().items() if e.alive()}
        write_state(self.state_file, self.state_base | {
            "users": users, "soups": {k: asked for k, (asked, _) in self.soups.items()}, "engines": engines})

    def check_name(self, name) -> str:
        try:
            return check_user_name(name, "user")
        except SoupsError as e:
            raise HTTPError(400, str(e)) from None
