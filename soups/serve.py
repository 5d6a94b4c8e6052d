"""Serve many users' soups from one vLLM server: one base, one exact soup adapter per user (multi-LoRA).

`serve()` reads a users file, builds each user's soup adapter (method `exact` by default; cached under
$SOUPS_HOME/serve/adapters/<content hash>), starts vLLM's OpenAI-compatible server with LoRA enabled
and a `--max-lora-rank` that fits every soup of the expert set, registers each user as a model name
through vLLM's runtime LoRA API, and stops the server and all its processes on SIGINT/SIGTERM.
`add_user()` builds one more soup and loads it into a running server (or replaces a user's soup).

users.yaml:
    experts: [concise, friendly, expert]     # optional: expert order (default: experts/default.yaml)
    users:
      alice: 1,0,1                           # positional weights over `experts`
      bob: {concise: 2, expert: 1}           # named weights (missing ones are 0)
      carol: {recipe: merge_recipes/concise_expert.yaml}   # a saved recipe (its experts, method, normalize)
      dave: {weights_from: dave/user.json}   # `soups fit-weights` output
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from soups.errors import ConfigError, DataError, SoupsError
from soups.vllm_server import BASE_MODEL_NAME

log = logging.getLogger(__name__)

_USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass
class UserSoup:
    """One user's soup: experts, raw weights, method (a row of users.yaml or `soups serve add`)."""

    name: str
    experts: list[str]
    weights: list[float] | Mapping[str, float] | str
    method: str = "exact"
    normalize: bool = True
    rank: int | None = None


@dataclass
class UsersFile:
    experts: list[str]
    users: list[UserSoup] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # bad entries, one line each; the others still serve


def check_user_name(name: str, where: str = "user") -> str:
    if not _USER_NAME.match(str(name)) or str(name) == BASE_MODEL_NAME:
        raise ConfigError(
            f"{where} {name!r}: not a valid user name (letters, digits, _ . @ -, at most 64, not {BASE_MODEL_NAME!r})"
        )
    return str(name)


def user_soup(name: str, value, experts: list[str], where: str = "users") -> UserSoup:
    """Turn one users.yaml entry into a UserSoup (raises SoupsError naming the entry)."""
    name = check_user_name(name, f"{where}: user")
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return UserSoup(name, experts, str(value))
    if isinstance(value, list) and value:
        return UserSoup(name, experts, [_number(v, f"{where}: user {name}") for v in value])
    if isinstance(value, Mapping) and "recipe" in value:
        from soups.merge.recipe import load_recipe

        rec = load_recipe(Path(value["recipe"]))
        return UserSoup(name, list(rec.experts), dict(rec.experts), rec.method, rec.normalize, rec.rank)
    if isinstance(value, Mapping) and "weights_from" in value:
        from soups.weights import weights_from_file

        names, weights = weights_from_file(Path(value["weights_from"]))
        return UserSoup(name, names, weights)
    if isinstance(value, Mapping) and value:
        return UserSoup(name, experts, {str(k): _number(v, f"{where}: user {name}: {k}") for k, v in value.items()})
    raise ConfigError(
        f"{where}: user {name}: {value!r} is not a weight vector (`1,0,1`), a mapping (`{{concise: 1}}`), "
        "`{recipe: PATH}` or `{weights_from: PATH}`"
    )


def _number(value, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{where}: weight {value!r} is not a number")


def load_users(path: Path | str, experts: list[str] | None = None) -> UsersFile:
    """Read users.yaml; a malformed file raises DataError, a bad user entry is collected in `errors`."""
    import yaml

    from soups.merge.engine import default_expert_names

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DataError(f"--users {path}: file not found") from None
    except yaml.YAMLError as e:
        raise DataError(f"--users {path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("users"), Mapping):
        raise DataError(
            f"--users {path}: expected a mapping with `users:` (user id -> weights); see `soups serve --help`"
        )
    names = experts or data.get("experts") or default_expert_names()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"--users {path}: `experts` should be a list of expert names or directories")
    out = UsersFile(experts=[str(n) for n in names])
    for name, value in data["users"].items():
        try:
            out.users.append(user_soup(str(name), value, out.experts, where=str(path)))
        except SoupsError as e:
            out.errors.append(str(e))
    return out


@lru_cache(maxsize=256)
def _expert_digest(path: str, stamp: tuple) -> str:
    from soups.merge.provenance import expert_sha256

    return expert_sha256(Path(path))


def _stamp(expert: Path) -> tuple:
    """Changes whenever an expert's files change (so the digest cache is never stale)."""
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(expert.iterdir()) if f.is_file())


def soup_key(user: UserSoup, base_dir: Path) -> tuple[str, list[Path], list[float]]:
    """Content hash of a soup: base fingerprint, experts' sha256, normalized weights, method, rank."""
    from soups.base import fingerprint
    from soups.config import experts_dir
    from soups.io.adapter import resolve_expert
    from soups.weights import normalize_weights

    paths = [resolve_expert(n, experts_dir()) for n in user.experts]
    short = [Path(n).name if Path(n).is_dir() else str(n) for n in user.experts]
    raw = _raw_weights(user, short)
    norm = normalize_weights(raw, short, user.normalize)
    digests = [_expert_digest(str(p.resolve()), _stamp(p)) for p in paths]
    blob = json.dumps(
        {
            "base": fingerprint(base_dir),
            "experts": sorted((d, round(w, 12)) for d, w in zip(digests, norm) if w != 0),
            "method": user.method,
            "rank": user.rank,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24], paths, raw


def build_user_adapter(user: UserSoup, base_dir: Path, cache: Path | None = None) -> tuple[Path, int]:
    """The user's soup adapter (built once, then reused from the cache by content hash) and its rank."""
    from soups.config import soups_home
    from soups.merge.engine import MergeSpec, merge

    key, paths, raw = soup_key(user, base_dir)
    out = Path(cache or soups_home() / "serve" / "adapters") / key
    if (out / "soup.json").is_file() and (out / "adapter_config.json").is_file():
        log.info("user %s: cached soup %s", user.name, out)
    else:
        spec = MergeSpec(
            experts=[str(p) for p in paths],
            weights=raw,
            out=out,
            base=str(base_dir),
            method=user.method,
            rank=user.rank,
            format="adapter",
            normalize=user.normalize,
            force=True,
        )
        merge(spec)
        log.info("user %s: built soup %s", user.name, out)
    return out, int(json.loads((out / "adapter_config.json").read_text())["r"])


def _raw_weights(user: UserSoup, names: list[str]) -> list[float]:
    from soups.errors import WeightsError
    from soups.weights import parse_weights, weights_from_mapping

    flag = f"user {user.name}: weights"
    if isinstance(user.weights, str):
        return parse_weights(user.weights, names, flag)
    if isinstance(user.weights, Mapping):
        return weights_from_mapping(user.weights, names, flag)
    if len(user.weights) != len(names):
        raise WeightsError(f"{flag}: {len(user.weights)} weight(s) for {len(names)} expert(s); give one per expert")
    return [float(v) for v in user.weights]


def max_rank_for_experts(experts: list[str]) -> int:
    """The vLLM `--max-lora-rank` that fits every exact soup of these experts (rank <= sum of ranks)."""
    from soups.config import experts_dir
    from soups.io.adapter import load_adapter, resolve_expert
    from soups.merge.engine import max_lora_rank_for

    total = sum(load_adapter(resolve_expert(n, experts_dir())).max_rank for n in experts)
    value = max_lora_rank_for(total)
    if value is None:
        raise ConfigError(f"experts {', '.join(experts)}: summed LoRA rank {total} exceeds vLLM's maximum (512)")
    return value


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


def _write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


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
    from soups.merge.engine import max_lora_rank_for
    from soups.vllm_server import VllmServer, load_adapter_into, server_command

    if importlib.util.find_spec("vllm") is None:
        raise ConfigError("soups serve needs vLLM, which is not installed: run scripts/install_vllm.sh")
    base_dir = resolve_base(opts.base)
    users = load_users(users_path, experts)
    for err in users.errors:
        echo(f"skipped: {err}")
    built: dict[str, tuple[Path, int]] = {}
    for user in users.users:
        try:
            built[user.name] = build_user_adapter(user, base_dir)
        except SoupsError as e:
            echo(f"skipped: user {user.name}: {e}")
    bound = max([max_rank_for_experts(users.experts)] + [r for _, r in built.values()])
    max_rank = opts.max_lora_rank or max_lora_rank_for(bound) or bound
    _check_port_free(opts.host, opts.port)
    url = f"http://{opts.host}:{opts.port}"
    state_file = state_path(opts.host, opts.port)
    cmd = server_command(
        base_dir,
        host=opts.host,
        port=opts.port,
        max_lora_rank=max_rank,
        max_loras=opts.max_loras,
        max_cpu_loras=opts.max_cpu_loras,
        dtype=opts.dtype,
        max_model_len=opts.max_model_len,
        kv_cache_gb=opts.kv_cache_gb,
        extra_args=opts.extra_args,
    )
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
        state = {
            "url": url,
            "pid": os.getpid(),
            "server_pid": server.proc.pid,
            "base": str(base_dir),
            "experts": users.experts,
            "max_lora_rank": max_rank,
            "users": {},
        }
        for name, (path, rank) in built.items():
            if rank > max_rank:
                echo(f"skipped: user {name}: soup rank {rank} > --max-lora-rank {max_rank}")
                continue
            try:
                load_adapter_into(url, name, path, replace=False)
                state["users"][name] = {"adapter": str(path), "rank": rank}
            except SoupsError as e:
                echo(f"skipped: {e}")
        _write_state(state_file, state)
        names = ", ".join(state["users"]) or "none yet"
        echo(f"serving {len(state['users'])} user(s) ({names}) at {url}/v1: pick one with `model`; Ctrl-C stops")
        while not stop and server.proc.poll() is None:
            time.sleep(0.2)
        if not stop:
            raise ConfigError(f"vLLM server exited (code {server.proc.returncode}); log:\n{server.log_tail()}")
        echo(f"stopping (signal {stop[0]})")
    finally:
        server.stop()
        state_file.unlink(missing_ok=True)
        for s, handler in previous.items():
            signal.signal(s, handler)


def add_user(
    name: str,
    weights=None,
    *,
    recipe: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    method: str = "exact",
) -> tuple[Path, int, bool]:
    """Build a soup for `name` and load it into the running `soups serve` at host:port (replacing an older one).

    Returns (adapter dir, rank, replaced)."""
    from soups.vllm_server import load_adapter_into, served_models

    state = read_state(host, port)
    if (weights is None) == (recipe is None):
        raise ConfigError("soups serve add: give exactly one of --weights and --recipe")
    value = {"recipe": str(recipe)} if recipe is not None else weights
    user = user_soup(name, value, state["experts"], where="soups serve add")
    if recipe is None:
        user.method = method
    path, rank = build_user_adapter(user, Path(state["base"]))
    if rank > state["max_lora_rank"]:
        raise ConfigError(
            f"user {name}: soup rank {rank} exceeds the server's --max-lora-rank {state['max_lora_rank']}; "
            "restart `soups serve` with a larger --max-lora-rank or use --method svd with a smaller rank"
        )
    replaced = name in served_models(state["url"])
    load_adapter_into(state["url"], name, path, replace=replaced)
    state["users"][name] = {"adapter": str(path), "rank": rank}
    _write_state(state_path(host, port), state)
    return path, rank, replaced
