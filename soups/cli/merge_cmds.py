"""`soups merge`, `soups scale-expert`, `soups experts`, `soups inspect`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from soups.cli import app
from soups.cli.options import method_help, parse_params, split_list


@app.command("merge")
def merge_cmd(
    weights: Optional[str] = typer.Option(
        None, "--weights", "-w", help="`1,0,1` (over the expert order) or `concise=1,expert=1`."
    ),
    experts: Optional[str] = typer.Option(
        None,
        "--experts",
        "-e",
        help="Expert dirs or names under experts/, comma-separated. Default: experts/default.yaml.",
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="Output directory (built beside it, renamed when complete)."
    ),
    base: Optional[str] = typer.Option(
        None, "--base", help="`default` (embedded SmolLM2-135M-Instruct) or a model directory."
    ),
    recipe: Optional[Path] = typer.Option(
        None, "--recipe", "-r", help="merge_recipes/NAME.yaml; flags override its fields."
    ),
    weights_from: Optional[Path] = typer.Option(
        None, "--weights-from", help="user.json from `soups fit-weights` / `soups ask`."
    ),
    method: Optional[str] = typer.Option(None, "--method", "-m", help=method_help()),
    param: Optional[list[str]] = typer.Option(
        None, "--param", "-P", help="A parameter of the method, KEY=VALUE, repeatable (e.g. --param rank=16)."
    ),
    rank: Optional[int] = typer.Option(None, "--rank", min=1, max=1 << 20,
                                       help="Shorthand for --param rank=K (method svd; K <= the exact rank)."),
    format: Optional[str] = typer.Option(
        None, "--format", "-f", help="full (a merged checkpoint, default) | adapter (one PEFT LoRA adapter)."
    ),
    no_normalize: bool = typer.Option(
        False, "--no-normalize", help="Keep weights as given (task arithmetic) instead of w = v / sum(v)."
    ),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="Output dtype: bfloat16 | float16 | float32 (default: the base's; float32 for adapters)."
    ),
    shard_size: str = typer.Option("5GB", "--shard-size", help="Largest output shard, e.g. 5GB, 500MB."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
    allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="Read pickled .bin/.pt adapters (they can run code: only files you trust)."
    ),
) -> None:
    """Merge experts into a personalized soup: a full checkpoint or one LoRA adapter.

    Examples:

        soups merge --weights 1,0,1 --out model/              # default experts: concise, friendly, expert

        soups merge --experts concise,expert --weights concise=2,expert=1 --format adapter --out soup/

        soups merge --recipe merge_recipes/concise_expert.yaml --out model/ --force
    """
    from soups.errors import ConfigError
    from soups.merge.engine import merge
    from soups.recipe import soup_from_flags

    if out is None:
        raise ConfigError("--out is required: the directory to write the soup to")
    params = parse_params(param) | ({"rank": rank} if rank is not None else {})
    soup = soup_from_flags(recipe, experts=split_list(experts), weights=weights, weights_from=weights_from, base=base,
                           method=method, params=params, format=format, no_normalize=no_normalize, dtype=dtype)
    result = merge(soup, out, progress=True, shard_size=shard_size, force=force, allow_pickle=allow_pickle)
    mix = ", ".join(f"{n}={w:.3g}" for n, w in result.weights.items())
    typer.echo(f"wrote {soup.format} soup ({soup.method}: {mix}) to {result.out}")
    for key, per_module in result.report.items():
        vals = list(per_module.values())
        typer.echo(f"{soup.method} {key} per module: min {min(vals):.4f}, mean {sum(vals) / len(vals):.4f}")
    if soup.format == "adapter":
        if result.max_lora_rank:
            typer.echo(
                f"LoRA rank {result.rank}; serve with vLLM: --enable-lora --max-lora-rank {result.max_lora_rank}"
            )
        else:
            typer.echo(
                f"LoRA rank {result.rank} exceeds vLLM's largest --max-lora-rank (512); use --method svd --rank K"
            )


@app.command("scale-expert")
def scale_expert_cmd(
    expert: str = typer.Argument(..., help="The expert: a directory or a name under experts/."),
    alpha: float = typer.Option(..., "--alpha", "-a", help="Factor on the expert's delta: > 1 pushes it further, "
                                "< 1 pulls it toward the base (1 keeps it)."),
    out: Path = typer.Option(..., "--out", "-o", help="The scaled expert's directory (built beside it, renamed "
                             "when complete)."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out."),
) -> None:
    """Scale one expert's LoRA delta by --alpha (task-vector scaling) and write it as an expert again.

    Only lora_B changes; ranks, alphas and targets stay, so the scaled expert merges with the others as before.
    expert.json keeps the source's history and adds a `scale` stage.

    Example:

        soups scale-expert unfriendly --alpha 1.3 --out runs/out/unfriendly-x1.3
        soups eval --experts runs/out/unfriendly-x1.3 --weights 1 --baselines base,prompted
    """
    from soups.config import experts_dir
    from soups.io.adapter import resolve_expert
    from soups.merge.scale import scale_expert

    meta = scale_expert(resolve_expert(expert, experts_dir()), alpha, out, force=force)
    typer.echo(f"wrote {out}: {meta.get('dimension') or expert} with its delta x {alpha:g}")


@app.command("methods")
def methods_cmd() -> None:
    """List the merge methods (the registry in soups/merge/methods.py): name, parameters, what it does.

    Example: soups methods
    """
    from rich.console import Console
    from rich.table import Table

    from soups.merge.methods import METHODS

    table = Table("method", "parameters (--param KEY=VALUE)", "what it does")
    for m in METHODS.values():
        params = "\n".join(f"{k}: {f.description or ''}" for k, f in m.params.model_fields.items()) or "-"
        table.add_row(m.name, params, m.help)
    Console(width=160).print(table)


@app.command("experts")
def experts_cmd() -> None:
    """List the known experts under experts/ (name, dimension, rank, targets, base); `*` marks the default set.

    Example: soups experts
    """
    from rich.console import Console
    from rich.table import Table

    from soups.config import experts_dir
    from soups.errors import SoupsError
    from soups.io.adapter import CONFIG_NAME, load_adapter
    from soups.recipe import default_expert_names

    try:
        default = default_expert_names()
    except SoupsError:
        default = []
    table = Table("name", "default", "dimension", "rank", "targets", "base", "algorithm")
    root = experts_dir()
    for path in sorted(p for p in root.iterdir() if (p / CONFIG_NAME).is_file()) if root.is_dir() else []:
        a = load_adapter(path, name=path.name)
        pos = f"* {default.index(a.name) + 1}" if a.name in default else ""
        base = (a.meta.get("base") or {}).get("name") or a.config.get("base_model_name_or_path") or "?"
        table.add_row(
            a.name,
            pos,
            a.meta.get("dimension") or "-",
            str(a.max_rank),
            ",".join(a.targets),
            str(base),
            str(a.meta.get("algorithm", "-")),
        )
    Console().print(table)
    if default:
        typer.echo(f"default set (order of positional --weights): {', '.join(default)}")
    if table.row_count == 0:
        typer.echo(f"no experts under {root}; train one with `soups train-expert --dim concise`")


@app.command("inspect")
def inspect_cmd(path: Path = typer.Argument(..., help="An expert adapter directory or a soup.")) -> None:
    """Describe an expert adapter or a soup (full checkpoint or adapter).

    Example: soups inspect experts/concise
    """
    from soups.errors import CheckpointError
    from soups.io.adapter import CONFIG_NAME, load_adapter
    from soups.io.checkpoint import read_index
    from soups.io.files import input_dir, read_json

    path = input_dir(path, "PATH", CheckpointError, "give an expert, soup or model directory")
    if (path / "soup.json").exists():
        rec = read_json(path / "soup.json", None, CheckpointError, "re-create the soup with `soups merge`")
        try:
            base, experts = rec["base"], rec["experts"]
            typer.echo(f"soup: {rec['format']} ({rec['method']}), base {base['name']} {base['fingerprint']}")
            for e in experts:
                typer.echo(f"  {e['name']:<14} weight {e['weight_raw']:g} -> {e['weight']:.4g}  "
                           f"sha256 {e['sha256'][:12]}")
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path / 'soup.json'}: not a soup record (bad or missing field {e}); "
                                  "re-create the soup with `soups merge`") from None
        if rec.get("rank"):
            typer.echo(f"  LoRA rank {rec['rank']}, vLLM --max-lora-rank {rec.get('max_lora_rank')}")
        if rec["format"] == "full":
            idx = read_index(path)
            typer.echo(f"  {len(idx.tensors)} tensors, {idx.total_size / 1e6:.1f} MB, dtype {rec.get('dtype')}")
    elif (path / CONFIG_NAME).exists():
        a = load_adapter(path, name=path.name)
        typer.echo(
            f"expert: {a.name}  dimension {a.meta.get('dimension', '-')}  rank {a.max_rank}  "
            f"targets {','.join(a.targets)}  rsLoRA {bool(a.config.get('use_rslora'))}"
        )
        typer.echo(f"  {len(a.modules)} modules; base {a.base_fingerprint or a.config.get('base_model_name_or_path')}")
        for key in ("algorithm", "reward", "wall_time_s"):
            if key in a.meta:
                typer.echo(f"  {key}: {json.dumps(a.meta[key])}")
        stages = [st for st in a.meta.get("stages") or [] if isinstance(st, dict)]
        if stages:  # reward above is the trained expert's: a later scale stage changed it after
            def label(st: dict) -> str:
                scaled = st.get("stage") == "scale" and isinstance(st.get("alpha"), (int, float))
                return f"scale x{st['alpha']:g}" if scaled else str(st.get("stage"))

            typer.echo("  stages: " + " -> ".join(map(label, stages)))
    elif (path / "config.json").exists():
        read_json(path / "config.json", None, CheckpointError, "re-save or re-download the model")
        idx = read_index(path)
        typer.echo(f"model: {len(idx.tensors)} tensors, {idx.total_size / 1e6:.1f} MB")
    else:
        raise CheckpointError(f"{path}: not an expert (adapter_config.json) or a soup (soup.json)")
