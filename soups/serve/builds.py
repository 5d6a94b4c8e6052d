"""Each user's soup as an adapter on the server's base, built once and reused by content hash.

Cache: `$SOUPS_HOME/serve/adapters/<hash>` where the hash covers the base fingerprint, the kept
experts' sha256 with their applied weights, the method and its parameters: two users with the
same soup (e.g. weights 1,3 and 2,6) share one adapter, and a retrained expert gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
    blob = json.dumps(
        {
            "base": fingerprint(base_dir),
            "experts": sorted((d, round(w, 12)) for d, w in zip(digests, soup.applied()) if w != 0),
            "method": soup.method,
            "params": soup.params,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def build_adapter(soup: Soup, base_dir: Path, cache: Path | None = None) -> tuple[Path, int]:
    """The soup as an adapter on `base_dir` (built once, then reused from the cache) and its LoRA rank."""
    from soups.config import soups_home
    from soups.merge.engine import merge

    out = Path(cache or soups_home() / "serve" / "adapters") / soup_key(soup, base_dir)
    if (out / "soup.json").is_file() and (out / "adapter_config.json").is_file():
        log.info("cached soup %s", out)
    else:
        merge(soup.model_copy(update={"base": str(base_dir), "format": "adapter"}), out, force=True)
        log.info("built soup %s", out)
    return out, int(json.loads((out / "adapter_config.json").read_text())["r"])


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
