"""The `soups ask` session: show two responses, record the choice, pick the next pair actively, fit.

Each round: fit the Laplace posterior on the answers so far, pick the unasked pool pair with the
highest expected information gain (soups.prefs.active; a new prompt each round while any are
left), show it with A/B order randomized, and append the answer to the answer file (flushed and
fsynced, so Ctrl-C loses nothing; `resume=True` continues the same file). At the end the fitted
profile is written to user.json and printed with the `soups merge` command.
"""

from __future__ import annotations

import logging
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soups.errors import OutputExistsError
from soups.prefs.active import select_pair
from soups.prefs.answers import AnswerLog, design, has_phi, read_answers
from soups.prefs.fit import fit_bt
from soups.prefs.pool import candidate_pairs, load_pool
from soups.prefs.population import load_prior
from soups.prefs.user import DEFAULT_PRIOR_PREC, fit_profile, format_profile, write_user_json

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


def _record_phi(records: list[dict], pool_index: dict[str, int], phi: np.ndarray, std, dims) -> tuple:
    """phi_a/phi_b arrays for resumed records: pool rows when the text is in the pool, else scored now."""
    from soups.prefs.features import raw_rewards

    if has_phi(records, dims):
        return None, None
    rows = {}
    for side in ("a", "b"):
        out = np.zeros((len(records), len(dims)))
        missing = [i for i, r in enumerate(records) if r[side] not in pool_index]
        for i, r in enumerate(records):
            if r[side] in pool_index:
                out[i] = phi[pool_index[r[side]]]
        if missing:
            raw = raw_rewards([records[i][side] for i in missing], [records[i]["prompt"] for i in missing], dims)
            out[missing] = std(raw)
        rows[side] = out
    return rows["a"], rows["b"]


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
    from soups.prefs.features import default_dimensions, opposites_for, pool_phi

    _check_outputs(cfg)
    pool = load_pool(cfg.pool)
    if cfg.dims:
        dims, opposites = list(cfg.dims), opposites_for(cfg.dims)
    else:
        dims, opposites = default_dimensions()
    phi, std = pool_phi(pool, dims)
    pairs, groups = candidate_pairs(pool)
    pool_index = {r["response"]: i for i, r in enumerate(pool)}
    pair_index = {(int(i), int(j)): k for k, (i, j) in enumerate(pairs)}
    prior_mean, prior_prec = None, cfg.prior_prec
    if cfg.prior is not None:
        prior_mean, pop_prec = load_prior(cfg.prior, dims)
        prior_prec = pop_prec if pop_prec is not None else prior_prec

    existed = cfg.answers.exists()
    records = read_answers(cfg.answers, tolerate_torn_tail=True) if cfg.resume and existed else []
    phi_a, phi_b = _record_phi(records, pool_index, phi, std, dims)
    asked, used = set(), set()
    for r in records:
        i, j = pool_index.get(r["a"]), pool_index.get(r["b"])
        k = pair_index.get((min(i, j), max(i, j))) if i is not None and j is not None else None
        if k is not None:
            asked.add(k)
            used.add(int(groups[k]))
    if records:
        echo(f"Resuming {cfg.answers}: {len(records)} earlier answers.")

    def answered() -> int:
        return sum(r["choice"] != "skip" for r in records)

    with AnswerLog(cfg.answers) as out_log:
        while answered() < cfg.rounds:
            X, y = design(records, dims, phi_a, phi_b)
            post = fit_bt(X, y, prior_mean=prior_mean, prior_prec=prior_prec)
            k = select_pair(pairs, phi, post, asked, cfg.strategy, np.random.default_rng([cfg.seed, len(records)]),
                            groups, used)
            if k is None:
                echo("No more questions in the pool.")
                break
            i, j = (int(v) for v in pairs[k])
            if np.random.default_rng([cfg.seed, len(records), 1]).random() < 0.5:
                i, j = j, i
            choice = _ask_one(echo, read, answered() + 1, cfg.rounds, pool[i]["prompt"], pool[i]["response"],
                              pool[j]["response"], cfg.width)
            if choice is None:
                break
            rec = {
                "prompt": pool[i]["prompt"], "a": pool[i]["response"], "b": pool[j]["response"], "choice": choice,
                "a_source": pool[i]["source"], "b_source": pool[j]["source"], "pair": [i, j],
                "phi_a": {d: round(float(v), 6) for d, v in zip(dims, phi[i])},
                "phi_b": {d: round(float(v), 6) for d, v in zip(dims, phi[j])},
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            out_log.append(rec)
            records.append(rec)
            if phi_a is not None:
                phi_a, phi_b = np.vstack([phi_a, phi[i]]), np.vstack([phi_b, phi[j]])
            asked.add(k)
            used.add(int(groups[k]))
    if answered() == 0:
        if not existed and cfg.answers.is_file() and cfg.answers.stat().st_size == 0:
            cfg.answers.unlink()  # nothing was answered: leave nothing behind
        echo(f"No answers yet; nothing fitted. Run `soups ask --resume --answers {cfg.answers}` to continue.")
        return None
    X, y = design(records, dims, phi_a, phi_b)
    soup_out = f"{cfg.out.stem}_soup"
    _, profile = fit_profile(X, y, dims, opposites, prior_mean, prior_prec, soup_out)
    write_user_json(cfg.out, profile, force=True)
    echo("\n" + format_profile(profile))
    echo(f"Saved {cfg.out} (answers in {cfg.answers}); or run: soups merge --weights-from {cfg.out} --out {soup_out}")
    return profile
