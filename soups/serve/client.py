"""soups' own client for a running `soups serve`: find it (its state file), send its key, add users."""

from __future__ import annotations

import json
from pathlib import Path

from soups.errors import ConfigError, ServerError
from soups.serve.state import KEY_ENV, client_key, read_state
from soups.serve.users import user_soup


def call(state: dict, method: str, path: str, body: dict | None = None, *, api_key: str | None = None,
         timeout: float = 3600) -> dict:
    """One authenticated call to the server `state` describes; its JSON answer, or a one-line error."""
    from soups.vllm_server import error_message, http

    url = state["url"]
    try:
        status, text = http(method, url + path, body, timeout=timeout, key=client_key(state, api_key))
    except OSError as e:
        raise ServerError(f"soups serve at {url} unreachable ({e}); is it still running?") from None
    if status == 401:
        raise ConfigError(f"soups serve at {url} refused the API key (HTTP 401): pass --api-key (or ${KEY_ENV}) with "
                          "the key it printed at start, or run as the user who started it (it reads the key file)")
    if status != 200:
        raise ConfigError(error_message(text))
    try:
        return json.loads(text)
    except ValueError:
        return {"text": text}


def add_user(name: str, weights=None, *, recipe: Path | None = None, host: str = "127.0.0.1", port: int = 8000,
             method: str = "exact", api_key: str | None = None) -> dict:
    """Serve a soup as `name` on the running `soups serve` at host:port (replacing the user's older one).

    The soup is checked here (weights against the server's experts) and built by the server. Returns the
    server's answer: user, soup (its hash), path, rank (LoRA mode), replaced, mode."""
    state = read_state(host, port)
    if (weights is None) == (recipe is None):
        raise ConfigError("soups serve add: give exactly one of --weights and --recipe")
    value = {"recipe": str(recipe)} if recipe is not None else weights
    soup = user_soup(name, value, state["experts"], where="soups serve add", method=method)
    return call(state, "POST", "/soups/v1/users", {"user": name, "soup": soup.model_dump()}, api_key=api_key)
