"""`soups ask`, `soups fit-weights`, `soups fit-population`: infer a user's merge weights from a few choices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from soups.cli import app
from soups.cli.options import MAX_NEW_TOKENS, SEED_MAX, split_list

Pool = Annotated[Path | None, typer.Option("--pool", help="Candidate pool JSONL {prompt, response, source}.")]
Dims = Annotated[str | None, typer.Option("--dims", help="Comma-separated dimensions; default: all in experts/.")]
Prior = Annotated[Path | None, typer.Option("--prior", help="Population prior (from fit-population) or a user.json.")]
Strength = Annotated[float, typer.Option("--prior-strength", min=1e-6, max=1e6,
                                         help="L2 precision toward the prior mean.")]
Force = Annotated[bool, typer.Option("--force", help="Replace existing output files.")]


@app.command("ask")
def ask(
    rounds: Annotated[int, typer.Option("--rounds", min=1, max=1000,
                                        help="Questions to answer (skips do not count).")] = 10,
    answers: Annotated[Path, typer.Option("--answers", help="Answer file (JSONL), appended as you go.")] = Path(
        "answers.jsonl"
    ),
    out: Annotated[Path, typer.Option("--out", help="Where to write the fitted profile.")] = Path("user.json"),
    resume: Annotated[bool, typer.Option("--resume", help="Continue an earlier session's --answers file.")] = False,
    force: Force = False,
    pool: Pool = None,
    dims: Dims = None,
    prior: Prior = None,
    prior_strength: Strength = 1.0,
    random_order: Annotated[bool, typer.Option("--random", help="Random questions, not by information.")] = False,
    seed: Annotated[int, typer.Option("--seed", min=0, max=SEED_MAX,
                                      help="Seed for the A/B order (and --random).")] = 0,
) -> None:
    """Answer a few "which response do you prefer?" questions; get your weights and your `soups merge` command.

    Each question shows a prompt and two responses from the candidate pool (default: the shipped,
    hand-written pool; responses differ along the dimensions). Type a, b, t (tie), s (skip) or
    q (quit). The next pair is the one whose answer is expected to tell most about your weights.
    Answers are saved as you go: Ctrl-C loses nothing, `--resume` continues; `--force` starts over.

    Example: `soups ask --rounds 10 --answers me.jsonl --out me.json`, then
    `soups merge --weights-from me.json --out my_soup`.
    """
    from soups.prefs.ask import AskConfig, run_ask

    cfg = AskConfig(rounds=rounds, answers=answers, out=out, pool=pool, dims=split_list(dims), resume=resume,
                    force=force, prior=prior, prior_prec=prior_strength, strategy="random" if random_order else "eig",
                    seed=seed)
    try:
        profile = run_ask(cfg, read=input, echo=typer.echo)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted: your answers so far are saved in {answers}; continue with --resume", err=True)
        raise SystemExit(130) from None
    if profile is None:
        from soups.errors import DataError

        raise DataError(f"--answers {answers}: no answers yet (input ended or q before the first answer), nothing "
                        f"fitted; continue with `soups ask --resume --answers {answers}`")


@app.command("fit-weights")
def fit_weights(
    answers: Annotated[Path, typer.Argument(help="Answer file (JSONL): prompt, a, b, choice (a|b|tie|skip).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the fitted profile.")] = Path("user.json"),
    force: Force = False,
    dims: Dims = None,
    pool: Pool = None,
    prior: Prior = None,
    prior_strength: Strength = 1.0,
) -> None:
    """Fit a user's weights from an answer file (Bradley-Terry, L2 toward a prior) and write user.json.

    Answers from `soups ask` carry their features; other files are scored with the dimensions'
    rewards, standardized on `--pool`. Example: `soups fit-weights answers.jsonl --out user.json`,
    then `soups merge --weights-from user.json --out my_soup`.
    """
    from soups.io.atomic import check_file_target
    from soups.prefs.user import fit_answers_file, format_profile, write_user_json

    check_file_target(out, force)  # before the (possibly slow) reward scoring
    _, profile = fit_answers_file(answers, split_list(dims), pool, prior, prior_strength, soup_out=f"{out.stem}_soup")
    write_user_json(out, profile, force=force)
    typer.echo(format_profile(profile))
    typer.echo(f"Saved {out}")


@app.command("fit-population")
def fit_population(
    answers: Annotated[list[Path], typer.Argument(help="Answer files, one per user.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the population prior.")] = Path(
        "population.json"
    ),
    force: Force = False,
    dims: Dims = None,
    pool: Pool = None,
    prior_strength: Strength = 1.0,
) -> None:
    """Learn a population prior (mean and covariance of users' weights, EM) from many users' answer files.

    New users fitted with `--prior population.json` need fewer answers when users resemble each
    other. Example: `soups fit-population users/*.jsonl --out population.json`, then
    `soups ask --prior population.json`.
    """
    from soups.io.atomic import check_file_target
    from soups.prefs.user import fit_population_files, write_user_json

    check_file_target(out, force)
    prior = fit_population_files(answers, split_list(dims), pool, prior_strength)
    write_user_json(out, prior, force=force)
    typer.echo(f"Population prior from {prior['n_users']} users over {', '.join(prior['dimensions'])}")
    typer.echo("  mean: " + ", ".join(f"{d}={m:+.2f}" for d, m in zip(prior["dimensions"], prior["mean"])))
    typer.echo(f"Saved {out}")


@app.command("build-pool")
def build_pool_cmd(
    out: Annotated[Path, typer.Option("--out", help="Pool file to write (JSONL {prompt, response, source}).")],
    prompts: Annotated[str, typer.Option("--prompts", help="`heldout`, `train` or a prompts file.")] = "heldout",
    experts_dir: Annotated[Path | None, typer.Option("--experts-dir", help="Trained experts folder.")] = None,
    dims: Dims = None,
    base: Annotated[str, typer.Option("--base", help="Base model the experts share.")] = "default",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use only the first N prompts.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, max=MAX_NEW_TOKENS,
                                                help="Response length cap.")] = 160,
    engine: Annotated[str, typer.Option("--engine", help="Generation engine: auto (vLLM when installed, else "
                                        "transformers), vllm (each soup swapped into one engine's weights) or "
                                        "transformers.")] = "auto",
    force: Force = False,
) -> None:
    """Build a `soups ask` candidate pool: each trained expert (alone) and the base answer the prompts.

    Example: `soups build-pool --prompts heldout --limit 40 --out pool.jsonl`, then `soups ask --pool pool.jsonl`.
    """
    import tempfile

    from soups.config import experts_dir as default_experts_dir
    from soups.io.atomic import check_file_target
    from soups.prefs.pool import build_pool
    from soups.prefs.poolgen import default_soups, find_experts, soup_generator
    from soups.prompts import load_prompts

    check_file_target(out, force)
    experts = find_experts(experts_dir or default_experts_dir(), split_list(dims))
    texts = load_prompts(prompts)[:limit]
    out.absolute().parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".soups-pool-", dir=out.absolute().parent) as work:
        gen = soup_generator(experts, work, base=base, max_new_tokens=max_new_tokens, engine=engine)
        try:
            pool = build_pool(texts, gen, default_soups(experts), out=out, force=force)
        finally:
            gen.close()
    typer.echo(f"Wrote {out}: {len(pool)} responses to {len(texts)} prompts from {len(experts) + 1} soups")
