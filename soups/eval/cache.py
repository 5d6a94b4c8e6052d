"""On-disk cache of generated responses, so `soups eval` over many weight vectors generates the base,
the prompting baseline and each expert once, and a re-run of `make eval` only scores.

The key hashes what determines the responses: the model's identity (adapter files by content; a
full model directory by its weight files' names, sizes and mtimes), the system prompt, the
prompts, and the generation settings, among them the *resolved* engine and dtype (`vllm`/`bfloat16`, not
`auto`/None: soups.eval.evaluate.generate_systems), so answers of different engines or dtypes never mix.
Entries are JSON files written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

from soups.config import soups_home

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    return soups_home() / "eval-cache"


def model_identity(model: Path) -> str:
    """A content identity for a model or adapter directory (see module docstring)."""
    model = Path(model)
    h = hashlib.sha256()
    if (model / "adapter_config.json").is_file():
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            f = model / name
            if f.is_file():
                h.update(name.encode())
                with open(f, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        h.update(chunk)
        from soups.eval.generate import adapter_base

        h.update(model_identity(adapter_base(model)).encode())
        return h.hexdigest()
    h.update(str(model.resolve()).encode())
    for f in sorted(model.glob("*.safetensors")) + [model / "config.json"]:
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


class ResponseCache:
    """Responses by (model identity, system prompt, prompts, settings); `root=None` disables caching."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None

    def key(self, model: Path, system: str | None, prompts: Sequence[str], settings: dict) -> str:
        blob = json.dumps({"model": model_identity(model), "system": system, "prompts": list(prompts),
                           "settings": settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def get(self, key: str) -> list[str] | None:
        if self.root is None:
            return None
        path = self.root / f"{key}.json"
        try:
            return json.loads(path.read_text())["responses"]
        except (FileNotFoundError, ValueError, KeyError):
            return None

    def put(self, key: str, responses: Sequence[str]) -> None:
        from soups.io.atomic import atomic_write_text

        if self.root is not None:
            atomic_write_text(self.root / f"{key}.json", json.dumps({"responses": list(responses)}), force=True)
