"""Base identity: a fingerprint of a model directory (architecture config plus tensor names and shapes).

Independent of dtype and sharding, read from config.json and safetensors headers only, so a 70B
base fingerprints in milliseconds. Experts and soups record it; commands refuse to mix bases.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from soups.errors import CheckpointError

# config fields that do not change what the weights mean (keys starting with "_" are dropped too)
_VOLATILE_CONFIG_KEYS = {
    "torch_dtype",
    "dtype",
    "transformers_version",
    "architectures",
    "use_cache",
    "quantization_config",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "unk_token_id",
    "sep_token_id",
    "decoder_start_token_id",
    "max_length",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "torchscript",
    "initializer_range",
}


def tensor_shapes(model_dir: Path) -> dict[str, list[int]]:
    """Names and shapes of a model directory's safetensors tensors (headers only, no weights read)."""
    from soups.io.checkpoint import read_index

    return {name: list(info.shape) for name, info in read_index(Path(model_dir)).tensors.items()}


def _arch_config(cfg: dict) -> dict:
    """The config fields that define what the weights mean, normalized across transformers versions."""
    cfg = {k: v for k, v in cfg.items() if k not in _VOLATILE_CONFIG_KEYS and not k.startswith("_")}
    if "rope_theta" in cfg and "rope_parameters" not in cfg:  # transformers 4.x spelling of 5.x rope_parameters
        rope = dict(cfg.pop("rope_scaling", None) or {"rope_type": "default"})
        rope.setdefault("rope_type", rope.pop("type", "default"))
        cfg["rope_parameters"] = {**rope, "rope_theta": cfg.pop("rope_theta")}
    return cfg


def fingerprint(model_dir: Path) -> str:
    """Stable base identity: sha256 of the architecture config plus tensor names and shapes."""
    model_dir = Path(model_dir)
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{model_dir}: no config.json; --base must be a Hugging Face model directory")
    from soups.io.files import read_json

    cfg = _arch_config(read_json(cfg_path, None, CheckpointError, "re-save or re-download the model"))
    shapes = sorted(tensor_shapes(model_dir).items())
    blob = json.dumps({"config": cfg, "tensors": shapes}, sort_keys=True).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()[:32]
