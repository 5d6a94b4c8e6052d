"""The base model: resolve `--base`, fingerprint it, refuse mixing bases.

`--base` accepts `default` (the embedded SmolLM2-135M-Instruct, prepared on first use),
a local Hugging Face model directory, or an expert/soup directory whose metadata names
its base (`expert.json` / `soup.json`: `"base": {"name": "default" | path, "fingerprint": ...}`).
A fingerprint (hash of the config's architecture fields plus tensor names and shapes,
independent of dtype) ties experts and soups to the base they were built on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from soups.errors import BaseMismatchError, CheckpointError
from soups.io.files import read_json
from soups.io.fingerprint import fingerprint, tensor_shapes  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

DEFAULT = "default"
META_FILES = ("expert.json", "soup.json")

def recorded_base(artifact_dir: Path) -> dict | None:
    """The `base` record ({"name", "fingerprint"}) an expert.json / soup.json holds, or None."""
    for meta in META_FILES:
        path = Path(artifact_dir) / meta
        if path.is_file():
            base = read_json(path, None, CheckpointError, "fix or re-create the file").get("base")
            if isinstance(base, str):
                base = {"name": base}
            if isinstance(base, dict) and (base.get("name") or base.get("path")):
                return {**base, "_file": str(path)}
    return None


def _record_ref(record: dict, artifact_dir: Path) -> str:
    """Which base a record names: `default`, else its `path` if it still exists, else its `name`.

    A relative path is relative to the expert/soup directory."""
    if record.get("name") == DEFAULT:
        return DEFAULT
    refs = [str(r) for r in (record.get("path"), record.get("name")) if r]
    refs = [r if Path(r).expanduser().is_absolute() else str(artifact_dir / r) for r in refs]
    return next((r for r in refs if Path(r).expanduser().exists()), refs[0])


def _adapter_base(path: Path) -> Path | None:
    """A plain PEFT adapter's `base_model_name_or_path`, when it is a local directory."""
    cfg = path / "adapter_config.json"
    if cfg.is_file():
        ref = read_json(cfg, None, CheckpointError, "re-save the adapter with PEFT").get("base_model_name_or_path")
        if isinstance(ref, str) and ref and (Path(ref).expanduser() / "config.json").is_file():
            return Path(ref).expanduser()
    return None


def resolve_base(spec: str | Path | None, _depth: int = 0) -> Path:
    """Turn a `--base` value into a model directory (see module docstring)."""
    if spec is None or str(spec) == DEFAULT:
        from soups.base_default import prepare_default

        return prepare_default()
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path
    if _depth > 8:
        raise CheckpointError(f"--base {spec}: expert/soup metadata names bases in a loop; fix its `base` field")
    record = recorded_base(path)
    if record is not None:
        ref = _record_ref(record, path)
        base = resolve_base(ref, _depth + 1)
        want = record.get("fingerprint")
        if want and fingerprint(base) != want:
            raise BaseMismatchError(
                f"{record['_file']}: built on base fingerprint {want}, but its base {ref} now has "
                f"{fingerprint(base)}; pass --base with the model it was trained on"
            )
        return base
    adapter_base = _adapter_base(path)
    if adapter_base is not None:
        return adapter_base
    raise CheckpointError(
        f"--base {spec}: not `default`, a model directory with config.json, or an expert/soup whose "
        "expert.json/soup.json names its base; pass one of those"
    )


def base_record(spec: str | Path | None) -> dict:
    """The `base` entry to write into expert.json / soup.json for `--base spec`."""
    model_dir = resolve_base(spec)
    name = DEFAULT if spec is None or str(spec) == DEFAULT else str(model_dir.resolve())
    return {"name": name, "fingerprint": fingerprint(model_dir)}


def check_same_base(items: Mapping[str, str | None], base_fp: str, base_name: str = "--base") -> None:
    """Refuse experts/soups built on another base: `items` maps a name or path to its recorded fingerprint.

    A None fingerprint (e.g. a plain PEFT adapter without expert.json) is accepted with a warning;
    the shape checks downstream still apply. All offenders are named in one message.
    """
    bad = [name for name, fp in items.items() if fp is not None and fp != base_fp]
    if bad:
        detail = ", ".join(f"{name} ({items[name]})" for name in bad)
        raise BaseMismatchError(
            f"{detail}: built on a different base than {base_name} ({base_fp}); "
            f"pass the base they were trained on with {base_name}, or retrain them on this one"
        )
    for name, fp in items.items():
        if fp is None:
            log.warning("%s records no base fingerprint; cannot check it was built on %s", name, base_name)
