"""The one address clients call: vLLM's OpenAI-compatible API, authenticated, routed by `model` to the
engine that serves that soup (soups/serve/router.py); vLLM itself answers every completion.

    GET  /health                           no key (a load balancer's probe)
    GET  /v1/models                        base, users, request-named soups
    POST /v1/chat/completions, /v1/completions   proxied to the engine, streaming included; the answer's
                                           `model` is the name the client asked for
    POST /v1/load_lora_adapter             vLLM's runtime LoRA API (LoRA mode): only soup adapters built
    POST /v1/unload_lora_adapter           in soups' own cache; unload removes a user
    POST /soups/v1/users                   `soups serve add`: {"user": NAME, "soup": {...}} (a Soup)
    DELETE /soups/v1/users/NAME

Every path but /health needs `Authorization: Bearer KEY` when the server has a key (401 otherwise).
With `statements` (`soups serve --statements`), a chat request for a soup (a user or `soup:...`) gets
the soup's preference statements appended to its last user message (soups/serve/statements.py).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from pathlib import Path

from soups.errors import SoupsError
from soups.serve.router import HTTPError, Router

log = logging.getLogger(__name__)

OPEN_PATHS = ("/health",)
PROXIED = ("/v1/chat/completions", "/v1/completions")


def _error(status: int, message: str):
    from aiohttp import web

    kind = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
            404: "NotFoundError", 503: "ServiceUnavailableError"}.get(status, "Error")
    return web.json_response({"error": {"message": message, "type": kind, "code": status}}, status=status)


def _authorized(header: str | None, key: str) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


def _renamed(data: bytes, model: str) -> bytes:
    """A JSON body (or one SSE `data: {...}` line) with its `model` set to the name the client asked for."""
    prefix = b""
    if data.startswith(b"data: "):
        prefix, data = b"data: ", data[6:]
    try:
        obj = json.loads(data)
    except ValueError:
        return prefix + data
    if isinstance(obj, dict) and "model" in obj:
        obj["model"] = model
        tail = b"\n" if data.endswith(b"\n") else b""
        return prefix + json.dumps(obj).encode() + tail
    return prefix + data


def make_app(router: Router, key: str | None, key_file: Path | None = None, statements: bool = False):
    """The aiohttp application of a `soups serve` (module docstring)."""
    import aiohttp
    from aiohttp import web

    where = f" (it is in {key_file})" if key_file else ""
    said: dict[Path, list[str]] = {}  # build -> its preference statements (with `statements`)

    def with_statements(data: dict, path: str, name: str) -> dict:
        from soups.merge.provenance import statements as statements_of
        from soups.serve.statements import append_statements

        build = router.path_of(name)
        if not statements or not path.endswith("/chat/completions") or build is None:
            return data
        if build not in said:
            try:
                said[build] = statements_of(build)
            except SoupsError as e:
                log.warning("soup %s: answers without statements (%s)", name, e)
                said[build] = []
        return append_statements(data, said[build]) if said[build] else data

    @web.middleware
    async def guard(request, handler):
        if key and request.path not in OPEN_PATHS and not _authorized(request.headers.get("Authorization"), key):
            return _error(401, f"missing or wrong API key: send `Authorization: Bearer KEY` with the key "
                               f"`soups serve` printed at start{where}")
        try:
            return await handler(request)
        except HTTPError as e:
            return _error(e.status, e.message)

    async def body(request) -> dict:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "the request body should be a JSON object")
        return data

    async def health(request):
        ok = router.backend.base.alive()
        return web.Response(status=200 if ok else 503, text="ok" if ok else "base engine down")

    async def models(request):
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "soups"} for m in router.models()]})

    async def proxy(request):
        data = await body(request)
        asked = data.get("model")
        session: aiohttp.ClientSession = request.app["session"]
        async with router.route(asked) as (engine, name):
            data = with_statements(data | {"model": name}, request.path, name)
            headers = {"Authorization": f"Bearer {engine.key}"}
            try:
                async with session.post(engine.url + request.path, json=data, headers=headers) as up:
                    if up.content_type != "text/event-stream":
                        return web.Response(status=up.status, body=_renamed(await up.read(), asked),
                                            content_type=up.content_type)
                    out = web.StreamResponse(status=up.status, headers={"Content-Type": "text/event-stream",
                                                                       "Cache-Control": "no-cache"})
                    await out.prepare(request)
                    async for line in up.content:
                        await out.write(_renamed(line, asked))
                    await out.write_eof()
                    return out
            except aiohttp.ClientError as e:
                raise HTTPError(503, f"the engine serving {asked!r} is unreachable ({e}); "
                                     f"see its log: {engine.server.log_file}") from None

    async def add_user(request):
        from pydantic import ValidationError

        from soups.recipe import Soup

        data = await body(request)
        name = router.check_name(data.get("user"))
        try:
            soup = Soup.model_validate(data.get("soup"))
        except ValidationError as e:
            raise HTTPError(400, f"user {name}: not a valid soup ({e.errors()[0]['msg']})") from None
        for spec in soup.experts:
            if spec not in router.experts and ("/" in spec or spec.startswith(".")):
                raise HTTPError(400, f"user {name}: expert {spec!r} is neither one of the server's experts "
                                     f"({', '.join(router.experts)}) nor a shipped expert name")
        try:
            return web.json_response(await router.add_user(name, soup))
        except SoupsError as e:
            raise HTTPError(400, f"user {name}: {e}") from None

    async def remove_user(request):
        await router.remove_user(request.match_info["name"])
        return web.json_response({"removed": request.match_info["name"]})

    async def load_lora(request):
        from soups.serve.builds import cache_dir, in_cache
        from soups.serve.engines import Built, LoraBackend

        data = await body(request)
        name = router.check_name(data.get("lora_name"))
        path = in_cache(str(data.get("lora_path") or ""))
        if path is None:
            raise HTTPError(403, f"lora_path {str(data.get('lora_path'))[:200]!r}: soups serve loads only soup "
                                 f"adapters it built, in {cache_dir('adapters')}; add users with `soups serve add`")
        if not isinstance(router.backend, LoraBackend):
            raise HTTPError(400, "this server runs in merged mode (full checkpoints, no adapters): add users with "
                                 "`soups serve add`, or restart it with --mode lora")
        try:
            rank = int(json.loads((path / "adapter_config.json").read_text())["r"])
            built = router.backend.check(Built(path.name, path, rank))
            await router.add_user(name, built=built)
        except (SoupsError, ValueError, KeyError) as e:
            raise HTTPError(400, f"lora_name {name}: {e}") from None
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(request):
        data = await body(request)
        await router.remove_user(str(data.get("lora_name")))
        return web.Response(text=f"Success: LoRA adapter '{data.get('lora_name')}' removed successfully.")

    async def open_session(app):
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        app["session"] = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))

    async def close_session(app):
        await app["session"].close()
        await asyncio.sleep(0)

    app = web.Application(middlewares=[guard], client_max_size=32 << 20)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    for path in PROXIED:
        app.router.add_post(path, proxy)
    app.router.add_post("/v1/load_lora_adapter", load_lora)
    app.router.add_post("/v1/unload_lora_adapter", unload_lora)
    app.router.add_post("/soups/v1/users", add_user)
    app.router.add_delete("/soups/v1/users/{name}", remove_user)
    return app
