"""Each soup built once on the server's base, cached by content hash: an exact adapter (LoRA mode) or a
merged full checkpoint (merged mode).

Caches: `$SOUPS_HOME/serve/adapters/<hash>` and `$SOUPS_HOME/serve/models/<hash>`, where the hash covers
the base fingerprint, the kept experts' sha256 with their applied weights, the method and its parameters
(and the dtype when the soup sets one): two users with the same soup (e.g. weights 1,3 and 2,6) share one
build, and a retrained expert gets a new one. The adapter cache is also the only place the server loads
LoRA adapters from (`in_cache`). `prune()` bounds a cache (least recently used first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from functools import lru_cache
from pathlib import Path

from soups.errors import ConfigError
from soups.recipe import Soup

log = logging.getLogger(__name__)


@lru_cache(maxsize=256)
def _expert_digest(path: str, stamp: tuple) -> str:
    from soups.merge.provenance import expert_sha256

    return expert_sha256(Path(path))


def _stamp(expert: Path) -> tuple:
    """Changes whenever an expert's files change (so the digest cache is never stale)."""
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in sorted(expert.iterdir()) if f.is_file())


def soup_key(soup: Soup, base_dir: Path) -> str:
    """Content hash of a soup on a base (module docstring)."""
    from soups.base import fingerprint
    from soups.config import experts_dir
    from soups.io.adapter import resolve_expert

    paths = [resolve_expert(n, experts_dir()) for n in soup.experts]
    digests = [_expert_digest(str(p.resolve()), _stamp(p)) for p in paths]
    record = {
        "base": fingerprint(base_dir),
        "experts": sorted((d, round(w, 12)) for d, w in zip(digests, soup.applied()) if w != 0),
        "method": soup.method,
        "params": soup.params,
    }
    if soup.dtype is not None:
        record["dtype"] = soup.dtype
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:24]


def cache_dir(kind: str) -> Path:
    """`adapters` or `models` under $SOUPS_HOME/serve."""
    from soups.config import soups_home

    return soups_home() / "serve" / kind


def _build(soup: Soup, base_dir: Path, out: Path, fmt: str) -> Path:
    from soups.merge.engine import merge

    marker = "adapter_config.json" if fmt == "adapter" else "config.json"
    if (out / "soup.json").is_file() and (out / marker).is_file():
        os.utime(out)  # recently used: pruned last
        log.info("cached soup %s", out)
    else:
        merge(soup.model_copy(update={"base": str(base_dir), "format": fmt}), out, force=True)
        log.info("built soup %s", out)
    return out


def build_adapter(soup: Soup, base_dir: Path, cache: Path | None = None) -> tuple[Path, int]:
    """The soup as an adapter on `base_dir` (built once, then reused from the cache) and its LoRA rank."""
    out = _build(soup, base_dir, Path(cache or cache_dir("adapters")) / soup_key(soup, base_dir), "adapter")
    return out, int(json.loads((out / "adapter_config.json").read_text())["r"])


def build_checkpoint(soup: Soup, base_dir: Path, cache: Path | None = None) -> Path:
    """The soup merged into a full checkpoint of `base_dir` (built once, then reused from the cache)."""
    return _build(soup, base_dir, Path(cache or cache_dir("models")) / soup_key(soup, base_dir), "full")


def in_cache(path: str | Path, cache: Path | None = None) -> Path | None:
    """`path` resolved, if it is a soup adapter built in the adapter cache (symlinks followed); else None."""
    root = Path(cache or cache_dir("adapters")).resolve()
    try:
        p = Path(path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if p.parent != root or not (p / "soup.json").is_file() or not (p / "adapter_config.json").is_file():
        return None
    return p


def prune(cache: Path, keep: set[str], limit: int) -> list[str]:
    """Remove the least recently used builds in `cache` beyond `limit`, never those named in `keep`."""
    if not cache.is_dir():
        return []
    builds = sorted((p for p in cache.iterdir() if p.is_dir() and (p / "soup.json").is_file() and p.name not in keep),
                    key=lambda p: p.stat().st_mtime_ns)
    gone = [p.name for p in builds[: max(0, len(builds) - limit)]]
    for name in gone:
        shutil.rmtree(cache / name, ignore_errors=True)
    return gone


def max_rank_for_experts(experts: list[str]) -> int:
    """The vLLM `--max-lora-rank` that fits every exact soup of these experts (rank <= sum of ranks)."""
    from soups.config import experts_dir
    from soups.io.adapter import load_adapter, resolve_expert
    from soups.vllm_server import max_lora_rank_for

    total = sum(load_adapter(resolve_expert(n, experts_dir())).max_rank for n in experts)
    value = max_lora_rank_for(total)
    if value is None:
        raise ConfigError(f"experts {', '.join(experts)}: summed LoRA rank {total} exceeds vLLM's maximum (512)")
    return value
