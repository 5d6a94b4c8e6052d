"""`soups generate`, `soups eval`, `soups sweep`: responses, held-out scores with intervals, trade-off plots."""

from __future__ import annotations

from pathlib import Path

import typer

from soups.cli import app
from soups.cli.options import MAX_BATCH, MAX_NEW_TOKENS, SEED_MAX, gen_dtype, method_help, parse_params, split_list

_PROMPTS = "A shipped prompt set (heldout, train) or a file: .jsonl with a `prompt` field, .txt one per line."
_EXPERTS = "Comma-separated expert names (under experts/) or directories; default: experts/default.yaml."
_PARAM = "A parameter of the merge method, KEY=VALUE, repeatable (e.g. --param rank=16 for svd)."
_TOKENS = "Tokens to generate per response."
_DTYPE = ("float32, bfloat16, float16 or auto. Default: bfloat16 for a bf16 checkpoint on a CPU that multiplies bf16 "
          "natively (AMX, AVX512-BF16), else float32; on a GPU the checkpoint's own.")
MAX_GRID = 21  # 231 points of three experts, each a soup per method: more is days of generation
_ENGINE = ("Generation engine: auto (vLLM when installed, else transformers), vllm (one engine on the base, each "
           "soup swapped into its weights; ~10x the tokens/s of transformers on a CPU) or transformers.")
_SCORER = "DIM=METRIC[:higher|lower]: the held-out metric of a dimension (default: its file's `heldout`)."


@app.command("generate")
def generate_cmd(
    prompts: str = typer.Option(..., "--prompts", help=_PROMPTS),
    out: Path = typer.Option(..., "--out", help="Responses file to write (JSON lines: prompt, response, settings)."),
    soup: Path | None = typer.Option(None, "--soup", help="A soup, expert or model directory (full or adapter)."),
    experts: str | None = typer.Option(None, "--experts", help=_EXPERTS),
    weights: str | None = typer.Option(None, "--weights", help="Build the soup on the fly: `1,0,1` or `concise=1`."),
    base: str = typer.Option("default", "--base", help="Base model for --weights: `default` or a directory."),
    method: str = typer.Option("exact", "--method", help=method_help()),
    param: list[str] | None = typer.Option(None, "--param", help=_PARAM),
    system: str | None = typer.Option(None, "--system", help="System prompt for every request."),
    statements: bool = typer.Option(False, "--statements", help="Append the soup's declared dimensions' preference "
                                    "statements to every user message, as the paper's eval.py does."),
    engine: str = typer.Option("transformers", "--engine", help="transformers, or vllm (when installed)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, max=MAX_NEW_TOKENS, help=_TOKENS),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH, help="Prompts per batch (transformers)."),
    sample: bool = typer.Option(False, "--sample", help="Sample instead of greedy decoding."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Random seed (sampling)."),
    dtype: str | None = typer.Option(None, "--dtype", callback=gen_dtype, help=_DTYPE),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N prompts."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Answer a prompt set with one soup and write the responses as JSON lines.

    Example: `soups generate --experts concise,friendly,expert --weights 1,0,1 --prompts heldout --out r.jsonl`

    or: `soups generate --soup my_soup/ --prompts prompts.txt --out r.jsonl`
    """
    from soups.eval.systems import generate_responses

    path = generate_responses(prompts, out, soup=soup, experts=split_list(experts), weights=weights, base=base,
                              method=method, params=parse_params(param), system=system, engine=engine,
                              max_new_tokens=max_new_tokens, batch_size=batch_size, greedy=not sample, seed=seed,
                              dtype=dtype, limit=limit, statements=statements, force=force)
    typer.echo(str(path))


def _scorer_overrides(items: list[str] | None) -> dict[str, str]:
    from soups.errors import ConfigError

    out = {}
    for item in items or []:
        dim, sep, spec = item.partition("=")
        if not sep or not dim or not spec:
            raise ConfigError(f"--scorer {item}: use DIMENSION=METRIC[:higher|lower], e.g. --scorer x=words:lower")
        out[dim.strip()] = spec.strip()
    return out


@app.command("eval")
def eval_cmd(
    weights: str = typer.Option(..., "--weights", help="The user's weights: `1,0,1` or `concise=1,expert=1`."),
    experts: str | None = typer.Option(None, "--experts", help=_EXPERTS),
    out: Path = typer.Option(Path("eval_out"), "--out", help="Output folder (results.json, CSVs, responses)."),
    base: str = typer.Option("default", "--base", help="Base model: `default` or a directory."),
    method: str = typer.Option("exact", "--method", help=method_help()),
    param: list[str] | None = typer.Option(None, "--param", help=_PARAM),
    prompts: str = typer.Option("heldout", "--prompts", help=_PROMPTS),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N prompts."),
    baselines: str = typer.Option("statements,linear,base,prompted,experts", "--baselines",
                                  help="Systems to compare the soup with: statements (the soup + its preference "
                                  "statements), linear, base, prompted (base + statements), experts (each alone)."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, max=MAX_NEW_TOKENS, help=_TOKENS),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH, help="Prompts per generation batch."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed for bootstrap resampling."),
    engine: str = typer.Option("auto", "--engine", help=_ENGINE),
    dtype: str | None = typer.Option(None, "--dtype", callback=gen_dtype, help=_DTYPE),
    scorer: list[str] | None = typer.Option(None, "--scorer", help=_SCORER),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible endpoint for pairwise judging."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="The judge model's name at --judge-url."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Regenerate instead of reusing cached responses."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Score a soup, alone and with its preference statements, against the base, the prompted base, each
    expert and the paper's averaging.

    The soup answers twice: the prompt alone, and the prompt with the declared dimensions' statements
    appended (as the paper's eval.py asks its soups; the prompted base gets the same statements). Each
    declared dimension (non-zero weight) is scored by its held-out scorer (reading grade, word counts,
    VADER sentiment), with bootstrap 95% intervals and both soups' win rates per baseline.
    `--judge-url` adds the paper's pairwise judging (one criterion at a time, A/B/TIE, both orders).

    Example: `soups eval --experts concise,friendly,expert --weights 1,0,1 --limit 32 --out eval_cfe`.
    """
    from soups.eval.evaluate import EvalConfig, evaluate
    from soups.eval.report import print_report

    cfg = EvalConfig(weights=weights, out=out, experts=split_list(experts), base=base, method=method,
                     params=parse_params(param), prompts=prompts, limit=limit,
                     baselines=tuple(split_list(baselines) or ()), max_new_tokens=max_new_tokens,
                     batch_size=batch_size, seed=seed, engine=engine, dtype=dtype, scorers=_scorer_overrides(scorer),
                     judge_url=judge_url, judge_model=judge_model, cache=None if no_cache else "default", force=force)
    print_report(evaluate(cfg))


@app.command("sweep")
def sweep_cmd(
    experts: str = typer.Option(..., "--experts", help="2 or 3 experts (names or directories), comma-separated."),
    grid: int = typer.Option(5, "--grid", min=2, max=MAX_GRID, help="Points per edge: weights step by 1/(grid-1)."),
    out: Path = typer.Option(Path("sweep_out"), "--out", help="Output folder (sweep.csv, sweep.json, sweep.png)."),
    base: str = typer.Option("default", "--base", help="Base model: `default` or a directory."),
    methods: str = typer.Option("exact,linear", "--methods", help="Merge methods to build at each point, "
                                "comma-separated: any of `--method` in `soups merge --help`."),
    param: list[str] | None = typer.Option(None, "--param", help=_PARAM),
    prompts: str = typer.Option("heldout", "--prompts", help=_PROMPTS),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N prompts."),
    max_new_tokens: int = typer.Option(128, "--max-new-tokens", min=1, max=MAX_NEW_TOKENS, help=_TOKENS),
    batch_size: int = typer.Option(8, "--batch-size", min=1, max=MAX_BATCH, help="Prompts per generation batch."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed for bootstrap resampling."),
    engine: str = typer.Option("auto", "--engine", help=_ENGINE),
    dtype: str | None = typer.Option(None, "--dtype", callback=gen_dtype, help=_DTYPE),
    scorer: list[str] | None = typer.Option(None, "--scorer", help=_SCORER),
    no_cache: bool = typer.Option(False, "--no-cache", help="Regenerate instead of reusing cached responses."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out."),
) -> None:
    """Score soups over a grid of weights and plot the trade-off (per-dimension curves, Pareto front).

    Marks where the exact soup and the paper's averaging (linear) sit. Prints the PNG path.

    Example: `soups sweep --experts concise,informative --grid 5 --limit 32 --out sweep_ci`.
    """
    from soups.eval.sweep import SweepConfig, sweep

    cfg = SweepConfig(experts=split_list(experts) or [], out=out, grid=grid, base=base,
                      methods=tuple(split_list(methods) or ()), params=parse_params(param), prompts=prompts,
                      limit=limit, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, engine=engine,
                      dtype=dtype, scorers=_scorer_overrides(scorer), cache=None if no_cache else "default",
                      force=force)
    result = sweep(cfg)
    for method, why in result["skipped"].items():
        typer.echo(f"skipped {method}: {why}", err=True)
    typer.echo(f"{result['csv']}\n{result['png']}")
