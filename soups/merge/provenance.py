"""What a soup records about itself: `soup.json` and a model card README (DESIGN.md "Formats")."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import soups


def expert_sha256(path: Path) -> str:
    """sha256 over an expert's adapter config and weights files (streamed)."""
    h = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "adapter_model.pt"):
        f = Path(path) / name
        if f.is_file():
            h.update(name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def soup_record(spec, base_dir: Path, base_fp: str, adapters_all, raw, norm, kept_rank, max_lora_rank, info) -> dict:
    """The content of soup.json (deterministic: no timestamps)."""
    return {
        "soups_version": soups.__version__,
        "method": spec.method,
        "format": spec.format,
        "normalize": spec.normalize,
        "dtype": info.get("dtype"),
        "rank": kept_rank,
        "max_lora_rank": max_lora_rank,
        "base": {"name": str(spec.base), "path": str(base_dir), "fingerprint": base_fp},
        "experts": [
            {
                "name": a.name,
                "path": str(a.path),
                "sha256": expert_sha256(a.path),
                "dimension": a.meta.get("dimension"),
                "weight_raw": r,
                "weight": w,
            }
            for a, r, w in zip(adapters_all, raw, norm)
        ],
        **({"svd_energy": info["svd_energy"]} if "svd_energy" in info else {}),
    }


def model_card(record: dict) -> str:
    """README.md with YAML front matter (base_model, tags, the recipe)."""
    import yaml

    recipe = {
        "base": record["base"]["name"],
        "method": record["method"],
        "normalize": record["normalize"],
        "format": record["format"],
        "experts": {e["name"]: e["weight_raw"] for e in record["experts"]},
    }
    front = {
        "base_model": record["base"]["name"],
        "library_name": "peft" if record["format"] == "adapter" else "transformers",
        "tags": ["personalized-soups", "merge"],
    }
    rows = "\n".join(
        f"| {e['name']} | {e['dimension'] or '-'} | {e['weight_raw']:g} | {e['weight']:.4g} |"
        for e in record["experts"]
    )
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# Personalized soup ({record['method']}, {record['format']})\n\n"
        f"Built by soups {record['soups_version']} from base `{record['base']['name']}` "
        f"(fingerprint `{record['base']['fingerprint']}`).\n\n"
        f"| expert | dimension | declared weight | applied weight |\n|---|---|---|---|\n{rows}\n\n"
        f"## Recipe\n\n```yaml\n{yaml.safe_dump(recipe, sort_keys=False)}```\n\n"
        f"Rebuild with `soups merge --recipe recipe.yaml --out DIR` (save the block above as recipe.yaml).\n"
        + (
            f"\nServe in vLLM with `--enable-lora --max-lora-rank {record['max_lora_rank']}`.\n"
            if record["format"] == "adapter" and record.get("max_lora_rank")
            else ""
        )
    )


def write_provenance(out: Path, record: dict) -> None:
    (Path(out) / "soup.json").write_text(json.dumps(record, indent=2) + "\n")
    (Path(out) / "README.md").write_text(model_card(record))
