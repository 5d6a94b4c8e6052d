"""The base model: resolve `--base`, fingerprint it.

`--base` accepts `default` (the embedded SmolLM2-135M-Instruct, prepared on first use),
a local Hugging Face model directory, or an expert/soup directory whose metadata names
its base. A fingerprint (hash of the config's architecture fields plus tensor names and
shapes, independent of dtype) ties experts and soups to the base they were built on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from soups.errors import CheckpointError

# config fields that do not change what the weights mean
_VOLATILE_CONFIG_KEYS = {
    "_name_or_path", "torch_dtype", "dtype", "transformers_version", "architectures", "use_cache",
    "quantization_config", "_attn_implementation_autoset", "_commit_hash", "pad_token_id", "bos_token_id",
    "eos_token_id", "max_length", "output_attentions", "output_hidden_states", "return_dict", "torchscript",
}


def tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Names and shapes of a model directory's safetensors tensors (headers only, no weights read)."""
    from soups.io.checkpoint import read_index

    return {name: list(info.shape) for name, info in read_index(Path(model_dir)).tensors.items()}


def fingerprint(model_dir: Path) -> str:
    """Stable base identity: sha256 of the architecture config plus tensor names and shapes."""
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{model_dir}: no config.json; --base must be a Hugging Face model directory")
    cfg = json.loads(cfg_path.read_text())
    cfg = {k: v for k, v in sorted(cfg.items()) if k not in _VOLATILE_CONFIG_KEYS}
    shapes = sorted(tensor_shapes(model_dir).items())
    blob = json.dumps({"config": cfg, "tensors": shapes}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:32]


def resolve_base(spec: str | Path | None) -> Path:
    """Turn a `--base` value into a model directory (see module docstring)."""
    if spec is None or str(spec) == "default":
        from soups.base_default import prepare_default

        return prepare_default()
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path
    for meta in ("expert.json", "soup.json"):
        if (path / meta).is_file():
            named = json.loads((path / meta).read_text()).get("base", {})
            ref = named.get("path") or named.get("name")
            if ref and str(ref) != str(spec):
                return resolve_base(ref)
    raise CheckpointError(
        f"--base {spec}: not `default`, a model directory with config.json, or an expert/soup naming its base"
    )
