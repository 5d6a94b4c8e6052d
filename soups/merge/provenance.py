"""What a soup records about itself: `soup.json` and a model card README (DESIGN.md "Formats").

The card's recipe block is the soup itself (`Soup.to_yaml`), so `soups merge --recipe` on it
rebuilds the same bytes. `declared_dimensions` / `statements` read back which dimensions a soup (or
an expert) declares, for answering with their preference statements as the paper does.
"""

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


def soup_record(soup, prepared, kept_rank, max_lora_rank, dtype: str, report: dict[str, dict[str, float]]) -> dict:
    """The content of soup.json (deterministic: no timestamps). `report`: what the method reported per module,
    summarised as `<method>_<key>: {min, mean}` (e.g. svd_energy), rounded to 6 decimals: an SVD's last bits
    differ between CPUs (LAPACK kernels for AVX2 and AVX-512), and the same soup must give the same soup.json."""
    p = prepared
    summaries = {f"{soup.method}_{key}": {"min": round(min(v.values()), 6), "mean": round(sum(v.values()) / len(v), 6)}
                 for key, v in report.items()}
    return {
        "soups_version": soups.__version__,
        "method": soup.method,
        "format": soup.format,
        "normalize": soup.normalize,
        "dtype": dtype,
        "rank": kept_rank,
        "max_lora_rank": max_lora_rank,
        "base": {"name": soup.base, "path": str(p.base_dir), "fingerprint": p.base_fp},
        "experts": [
            {
                "name": a.name,
                "path": str(a.path),
                "sha256": expert_sha256(a.path),
                "dimension": a.meta.get("dimension"),
                "weight_raw": r,
                "weight": w,
            }
            for a, r, w in zip(p.adapters_all, soup.weights, p.norm)
        ],
        **summaries,
    }


def model_card(record: dict, soup) -> str:
    """README.md with YAML front matter (base_model, tags) and the soup's recipe."""
    import yaml

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
        f"## Recipe\n\n```yaml\n{soup.to_yaml()}```\n\n"
        f"Rebuild with `soups merge --recipe recipe.yaml --out DIR` (save the block above as recipe.yaml).\n"
        + (
            f"\nServe in vLLM with `--enable-lora --max-lora-rank {record['max_lora_rank']}`.\n"
            if record["format"] == "adapter" and record.get("max_lora_rank")
            else ""
        )
    )


def recipe_of_card(text: str) -> str:
    """The recipe YAML block of a model card (what `model_card` wrote under "## Recipe")."""
    return text.split("## Recipe", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]


def declared_dimensions(model: Path) -> list[str]:
    """The dimensions a soup directory declares: its soup.json experts with weight > 0 (an expert's dimension,
    else its name); for an expert directory, the dimension its expert.json names (else the folder's name)."""
    from soups.errors import ConfigError

    model = Path(model)
    try:
        if (model / "soup.json").is_file():
            record = json.loads((model / "soup.json").read_text())
            return list(dict.fromkeys(e.get("dimension") or e["name"] for e in record["experts"] if e["weight"] > 0))
        if (model / "expert.json").is_file():
            dim = json.loads((model / "expert.json").read_text()).get("dimension")
            return [str(dim.get("name") if isinstance(dim, dict) else dim or model.name)]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{model}: soup.json / expert.json unreadable ({e}); rebuild it with soups merge") from None
    raise ConfigError(f"--statements: {model} declares no dimensions (no soup.json or expert.json); "
                      "give a soup built by `soups merge` or an expert")


def statements(model: Path) -> list[str]:
    """The preference statements of the dimensions `model` declares (declared_dimensions), in order."""
    from soups.dimensions import load_dimension

    return [load_dimension(d).statement for d in declared_dimensions(model)]


def write_provenance(out: Path, record: dict, soup) -> None:
    from soups.io.files import finite_json

    text = finite_json(record, "soup.json", "check the experts' weights", indent=2)
    (Path(out) / "soup.json").write_text(text + "\n")
    (Path(out) / "README.md").write_text(model_card(record, soup))
