"""The `soups ask` session in a terminal: show two responses, record the choice, pick the next pair actively, fit.

The session itself (the next pair by expected information gain on a new prompt, A/B order
randomized, the Bradley-Terry + Laplace fit) is soups.prefs.session.AskSession, which the
playground's "Find my weights" drives too. This loop shows each question, reads the choice and
appends it to the answer file (flushed and fsynced, so Ctrl-C loses nothing; `resume=True`
continues the same file). At the end the fitted profile is written to user.json and printed with
the `soups merge` command.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from soups.errors import OutputExistsError
from soups.prefs.answers import AnswerLog, read_answers
from soups.prefs.pool import load_pool
from soups.prefs.population import load_prior
from soups.prefs.session import AskSession, pool_features
from soups.prefs.user import DEFAULT_PRIOR_PREC, format_profile, write_user_json

log = logging.getLogger(__name__)

KEYS = {"a": "a", "1": "a", "b": "b", "2": "b", "t": "tie", "tie": "tie", "=": "tie", "s": "skip", "skip": "skip"}
QUIT = {"q", "quit", "exit"}


@dataclass
class AskConfig:
    """Options of `soups ask` (see the command's help)."""

    rounds: int = 10
    answers: Path = Path("answers.jsonl")
    out: Path = Path("user.json")
    pool: Path | None = None
    dims: Sequence[str] | None = None
    resume: bool = False
    force: bool = False
    prior: Path | None = None
    prior_prec: float = DEFAULT_PRIOR_PREC
    strategy: str = "eig"
    seed: int = 0
    width: int = 100


def _check_outputs(cfg: AskConfig) -> None:
    from soups.io.files import check_writable

    for path, flag in ((cfg.answers, "--answers"), (cfg.out, "--out")):
        check_writable(path, flag)
        if path.is_dir():
            raise OutputExistsError(f"{flag} {path}: is a directory; give a file path")
    if cfg.answers.exists() and not cfg.resume and not cfg.force:
        raise OutputExistsError(
            f"--answers {cfg.answers}: file exists; pass --resume to continue it or --force to start over"
        )
    if cfg.out.exists() and not cfg.resume and not cfg.force:
        raise OutputExistsError(f"--out {cfg.out}: file exists; pass --force to replace it (or --resume)")
    if cfg.force and not cfg.resume:
        cfg.answers.unlink(missing_ok=True)


def _ask_one(echo: Callable[[str], None], read: Callable[[str], str], n: int, rounds: int, prompt: str,
             a: str, b: str, width: int) -> str | None:
    """Show one question and return 'a' / 'b' / 'tie' / 'skip', or None to stop (q or end of input)."""
    def wrap(text: str) -> str:
        return "\n".join(textwrap.fill(p, width) if p.strip() else "" for p in text.splitlines())

    echo(f"\n=== Question {n}/{rounds} ===\nPrompt: {wrap(prompt)}\n\n--- A ---\n{wrap(a)}\n\n--- B ---\n{wrap(b)}\n")
    while True:
        try:
            raw = read("Which response do you prefer? [a / b / t = tie / s = skip / q = quit]: ")
        except EOFError:
            return None
        key = raw.strip().lower()
        if key in QUIT:
            return None
        if key in KEYS:
            return KEYS[key]
        echo(f"  {raw.strip()!r} is not an answer: type a, b, t (tie), s (skip) or q (quit)")


def run_ask(cfg: AskConfig, read: Callable[[str], str] = input, echo: Callable[[str], None] = print) -> dict | None:
    """Run an interactive session (module docstring); returns the user profile, or None with no answers."""
    from soups.prefs.features import default_dimensions, opposites_for

    _check_outputs(cfg)
    pool = load_pool(cfg.pool)
    if cfg.dims:
        dims, opposites = list(cfg.dims), opposites_for(cfg.dims)
    else:
        dims, opposites = default_dimensions()
    features = pool_features(pool, dims)
    prior_mean, prior_prec = None, cfg.prior_prec
    if cfg.prior is not None:
        prior_mean, pop_prec = load_prior(cfg.prior, dims)
        prior_prec = pop_prec if pop_prec is not None else prior_prec

    existed = cfg.answers.exists()
    records = read_answers(cfg.answers, tolerate_torn_tail=True) if cfg.resume and existed else []
    session = AskSession(features, opposites, rounds=cfg.rounds, seed=cfg.seed, strategy=cfg.strategy,
                         prior_mean=prior_mean, prior_prec=prior_prec, records=records)
    if records:
        echo(f"Resuming {cfg.answers}: {len(records)} earlier answers.")

    with AnswerLog(cfg.answers) as out_log:
        while not session.done:
            q = session.question()
            if q is None:
                echo("No more questions in the pool.")
                break
            choice = _ask_one(echo, read, q.number, q.rounds, q.prompt, q.a, q.b, cfg.width)
            if choice is None:
                break
            out_log.append(session.answer(choice))
    if session.answered == 0:
        if not existed and cfg.answers.is_file() and cfg.answers.stat().st_size == 0:
            cfg.answers.unlink()  # nothing was answered: leave nothing behind
        echo(f"No answers yet; nothing fitted. Run `soups ask --resume --answers {cfg.answers}` to continue.")
        return None
    soup_out = f"{cfg.out.stem}_soup"
    profile = session.profile(soup_out)
    write_user_json(cfg.out, profile, force=True)
    echo("\n" + format_profile(profile))
    echo(f"Saved {cfg.out} (answers in {cfg.answers}); or run: soups merge --weights-from {cfg.out} --out {soup_out}")
    return profile
