"""What a running `soups serve` leaves in its state directory, `$SOUPS_HOME/serve/`:

- `HOST-PORT.json`: the state (url, pid, mode, base, experts, users and their soups, engines), written
  only by the server, atomically, under its lock; `soups serve add` reads it to find the server;
- `HOST-PORT.key`: the API key, owner-only (0600), which soups' own client sends;
- `HOST-PORT.log` (and `HOST-PORT.<engine>.log` in merged mode): vLLM's logs.
The state and key files are removed when the server stops.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
from pathlib import Path

from soups.errors import ConfigError

KEY_ENV = "SOUPS_API_KEY"  # the key for soups' own client (and a judge's `api_key_env`)


def state_dir() -> Path:
    from soups.config import soups_home

    return soups_home() / "serve"


def state_path(host: str, port: int) -> Path:
    """Where a running `soups serve` records its state (read by `serve add`)."""
    return state_dir() / f"{host}-{port}.json"


def key_path(host: str, port: int) -> Path:
    return state_dir() / f"{host}-{port}.key"


def write_state(path: Path, state: dict) -> None:
    from soups.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(state, indent=1), force=True)


def read_state(host: str, port: int) -> dict:
    """The state of the live `soups serve` at host:port (its pid is checked), else a ConfigError."""
    path = state_path(host, port)
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
        if not isinstance(state.get("experts"), list) or not isinstance(state.get("url"), str):
            raise ValueError
        return state
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"--host {host} --port {port}: no `soups serve` running there (no live {path}); start one or fix --port"
        ) from None


def new_key() -> str:
    return "soups-" + secrets.token_urlsafe(24)


def check_key(key: str, flag: str = "--api-key") -> str:
    if len(key) < 8 or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigError(f"{flag}: a key needs at least 8 printable characters and no spaces; "
                          "leave it out to have one generated")
    return key


def write_key(path: Path, key: str) -> Path:
    """Store `key` owner-only (mode 0600, created so: never readable by others, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (key + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def client_key(state: dict, api_key: str | None = None) -> str | None:
    """The key soups' client sends: `api_key`, else $SOUPS_API_KEY, else the server's key file (if readable)."""
    if api_key or os.environ.get(KEY_ENV):
        return api_key or os.environ[KEY_ENV]
    try:
        return Path(state["key_file"]).read_text().strip() or None
    except (KeyError, TypeError, OSError):
        return None


def exposure_warning(host: str, key: str | None) -> str | None:
    """The warning for a server anyone on the network may use and change: another address than loopback, no key."""
    if key is None and not is_loopback(host):
        return (f"warning: listening on {host} without an API key (--no-api-key): anyone who can reach this port "
                "can use the server and change its users")
    return None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
