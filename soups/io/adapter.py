"""Read and validate PEFT LoRA adapters (experts) without holding their weights.

An expert is `adapter_config.json` + `adapter_model.safetensors` (PEFT's format), plus an
optional `expert.json` naming its dimension and base fingerprint. We support plain LoRA
(incl. rsLoRA, rank_pattern, alpha_pattern, fan_in_fan_out) and reject what a linear soup
cannot represent (DoRA, trained biases, modules_to_save, other tuners) with a clear message.
Pickled weights (`adapter_model.bin`) are read only with an explicit `allow_pickle`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import AdapterError
from soups.io.checkpoint import CheckpointIndex, TensorInfo, read_file_index
from soups.io.files import read_json

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt")
KEY_RE = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass
class LoraModule:
    """One targeted module of one expert: where its A and B live, its rank and scale s = alpha/r."""

    module: str
    a: TensorInfo | None
    b: TensorInfo | None
    rank: int
    scale: float
    a_tensor: object = None  # set for pickled adapters (already in memory)
    b_tensor: object = None


@dataclass
class Adapter:
    """A validated LoRA expert."""

    name: str
    path: Path
    config: dict
    modules: dict[str, LoraModule] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # expert.json, if any

    @property
    def max_rank(self) -> int:
        return max((m.rank for m in self.modules.values()), default=0)

    @property
    def base_fingerprint(self) -> str | None:
        base = self.meta.get("base")
        return base.get("fingerprint") if isinstance(base, dict) else None

    @property
    def targets(self) -> list[str]:
        return sorted({m.rsplit(".", 1)[-1] for m in self.modules})


def pattern_value(patterns: dict, module: str, default):
    """PEFT's rank_pattern/alpha_pattern lookup: key matches `(.*\\.)?(key)$` on the module name."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def lora_scale(config: dict, module: str, rank: int) -> float:
    """s = alpha / r, or alpha / sqrt(r) with rsLoRA; alpha from alpha_pattern when it matches (DESIGN.md)."""
    alpha = pattern_value(config.get("alpha_pattern"), module, config.get("lora_alpha", 8))
    return float(alpha) / (rank**0.5 if config.get("use_rslora") else rank)


def _validate_config(cfg: dict, where: Path) -> None:
    tuner = str(cfg.get("peft_type", "")).upper()
    if tuner != "LORA":
        raise AdapterError(f"{where}: peft_type is {tuner or 'missing'}; soups merges LoRA adapters only")
    if cfg.get("use_dora"):
        raise AdapterError(f"{where}: use_dora is true; DoRA's magnitude vector is not linear, retrain without DoRA")
    if cfg.get("bias", "none") != "none":
        raise AdapterError(f"{where}: bias is {cfg['bias']!r}; train with bias='none' (LoRA bias is not supported)")
    if cfg.get("modules_to_save"):
        raise AdapterError(
            f"{where}: modules_to_save={cfg['modules_to_save']}; full-module copies cannot be merged, retrain without"
        )
    if cfg.get("fan_in_fan_out"):
        raise AdapterError(f"{where}: fan_in_fan_out (GPT-2 Conv1D layers) is not supported by soups merges yet")
    for key in ("trainable_token_indices", "layer_replication"):
        if cfg.get(key):
            raise AdapterError(f"{where}: {key} is set; not supported by soups merges")
    number = (int, float)
    for key, types, what in (("r", int, "a positive integer"), ("lora_alpha", number, "a positive number"),
                             ("rank_pattern", dict, "a mapping"), ("alpha_pattern", dict, "a mapping")):
        value = cfg.get(key)
        bad = isinstance(value, bool) or not isinstance(value, types) or (types is not dict and value <= 0)
        if value is not None and bad:
            raise AdapterError(f"{where}: `{key}` is {value!r}; it must be {what}, re-save the adapter with PEFT")
    for key, patterns in (("rank_pattern", int), ("alpha_pattern", number)):
        for k, v in (cfg.get(key) or {}).items():
            if isinstance(v, bool) or not isinstance(v, patterns) or v <= 0:
                raise AdapterError(f"{where}: `{key}.{k}` is {v!r}; it must be a positive number")


def _validate_meta(meta: dict, where: Path) -> None:
    """expert.json's fields soups reads: `dimension` a string, `base` a name or {name, fingerprint}."""
    dim = meta.get("dimension")
    named = isinstance(dim, str) or (isinstance(dim, dict) and isinstance(dim.get("name"), str))
    if dim is not None and not named:
        raise AdapterError(f"{where}: `dimension` is {dim!r}; it must be a dimension name (a string)")
    base = meta.get("base")
    if base is not None and not isinstance(base, (str, dict)):
        raise AdapterError(f"{where}: `base` is {base!r}; it must be a name or {{\"name\", \"fingerprint\"}}")
    if isinstance(base, dict) and not isinstance(base.get("fingerprint", ""), (str, type(None))):
        raise AdapterError(f"{where}: `base.fingerprint` is {base['fingerprint']!r}; it must be a string")


def resolve_expert(spec: str | Path, experts_root: Path) -> Path:
    """An expert given as a directory path or as a name under experts/."""
    path = Path(spec).expanduser()
    if os.path.lexists(path / CONFIG_NAME):  # load_adapter says what is wrong with it, if anything
        return path
    named = experts_root / str(spec)
    if os.path.lexists(named / CONFIG_NAME):
        return named
    known = (
        sorted(p.name for p in experts_root.iterdir() if (p / CONFIG_NAME).is_file()) if experts_root.is_dir() else []
    )
    if path.is_dir() or named.is_dir():
        where = path if path.is_dir() else named
        raise AdapterError(f"expert {spec}: {where} has no {CONFIG_NAME}; is it a PEFT LoRA adapter directory?")
    raise AdapterError(
        f"expert {spec}: not found (no directory {path} and no experts/{spec}); "
        f"known experts: {', '.join(known) or 'none'}"
    )


def load_adapter(path: Path, name: str | None = None, allow_pickle: bool = False) -> Adapter:
    """Read an adapter's config, index its tensors (headers only) and validate its structure."""
    path = Path(path)
    cfg_path = path / CONFIG_NAME
    if not os.path.lexists(cfg_path):
        raise AdapterError(f"{cfg_path}: missing; an expert is a PEFT LoRA adapter directory")
    config = read_json(cfg_path, None, AdapterError, "re-save the adapter with PEFT")
    _validate_config(config, cfg_path)
    meta = {}
    if os.path.lexists(path / "expert.json"):
        meta = read_json(path / "expert.json", None, AdapterError, "fix it or delete it (it is optional)")
        _validate_meta(meta, path / "expert.json")
    dim = meta.get("dimension")
    dim = dim.get("name") if isinstance(dim, dict) else dim
    adapter = Adapter(name=name or dim or path.name, path=path, config=config, meta=meta)

    weights = path / WEIGHTS_NAME
    pickled = {}
    if weights.is_file():
        entries = read_file_index(weights, CheckpointIndex(root=path)).tensors
    else:
        found = [path / n for n in PICKLE_NAMES if (path / n).is_file()]
        if not found:
            raise AdapterError(f"{weights}: missing; the adapter has no weights")
        if not allow_pickle:
            raise AdapterError(
                f"{found[0]}: pickled weights can run code when loaded; convert to safetensors, "
                "or pass --allow-pickle if you trust this file"
            )
        import torch

        pickled = torch.load(found[0], map_location="cpu", weights_only=True)
        entries = {k: None for k in pickled}

    parts: dict[str, dict[str, object]] = {}
    for key in entries:
        m = KEY_RE.match(key)
        if not m:
            if "lora_embedding" in key or "lora_magnitude" in key:
                raise AdapterError(f"{path}: tensor {key} is not supported (LoRA on embeddings / DoRA)")
            raise AdapterError(f"{path}: unexpected tensor {key}; only lora_A/lora_B weights can be merged")
        parts.setdefault(m["module"], {})[m["ab"]] = key
    for module, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"{path}: module {module} has lora_{next(iter(ab))} but not its pair")
        if pickled:
            a_t, b_t = (pickled[ab[x]].float().numpy() for x in "AB")
            a_shape, b_shape = tuple(a_t.shape), tuple(b_t.shape)
            a_info = b_info = None
        else:
            a_info, b_info = entries[ab["A"]], entries[ab["B"]]
            a_shape, b_shape, a_t, b_t = a_info.shape, b_info.shape, None, None
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise AdapterError(
                f"{path}: module {module} has lora_A {a_shape} and lora_B {b_shape}, which do not chain"
            )
        rank = a_shape[0]
        expected = pattern_value(config.get("rank_pattern"), module, config.get("r"))
        if expected is not None and int(expected) != rank:
            raise AdapterError(f"{path}: module {module} has rank {rank} but the config says r={expected}")
        adapter.modules[module] = LoraModule(module, a_info, b_info, rank, lora_scale(config, module, rank), a_t, b_t)
    if not adapter.modules:
        raise AdapterError(f"{path}: the adapter has no LoRA weights")
    return adapter
