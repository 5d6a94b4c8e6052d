"""`soups make-pairs`: preference pairs from the base itself, by contrasting statements (RLCD, Yang et al. 2023).

For each training prompt the base answers twice: once with the dimension's preference statement appended
to the user message (the paper's prompting) and once with its opposite's. The first answer is `chosen`,
the second `rejected`, and the pair is written for the *plain* prompt, so a reward model trained on them
(`soups train-reward --pairs`) scores what the statement changes in an answer, not the statement itself.
No hub, no judge, no labels: everything comes from the base. Only pairs where both answers finished (EOS
before the token limit) and differ are kept, so the model does not learn "truncated = worse"; or, with
`match_length`, both answers are cut to the shorter one's word count (finished or not), so the model learns
neither length nor truncation, only what the words say.

The answers are sampled by the warm start's engine (vLLM in a child process where installed, else
transformers) and cached beside the output (`.<out>.work/`, one JSONL row per prompt and side), so a
killed run resumes where it stopped; the pairs file itself is written atomically when complete.
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any

from soups.errors import ConfigError, SoupsError
from soups.io.atomic import atomic_write_text, check_file_target

log = logging.getLogger(__name__)


def _first_words(text: str, n: int) -> str:
    """`text` up to the end of its n-th whitespace-separated word (its own spacing and newlines kept)."""
    ends = [m.end() for m in re.finditer(r"\S+", text)]
    return text[: ends[n - 1]] if 0 < n <= len(ends) else text


def contrast(chosen_rows: list[dict], rejected_rows: list[dict], finished_only: bool = True,
             match_length: int | None = None) -> list[dict]:
    """Pairs {prompt, chosen, rejected}: answer i of a prompt's chosen row against answer i of its rejected row,
    kept when both are non-empty, differ, and (with `finished_only`) both ended with EOS.

    `match_length=K` instead cuts both answers to the shorter one's word count and keeps the pair when that is at
    least K words, finished or not: the pair then differs in what the words say, not in how many there are or in
    which one ran out of tokens."""
    rejected = {r["prompt"]: r for r in rejected_rows}
    pairs = []
    for c in chosen_rows:
        r = rejected.get(c["prompt"])
        if r is None:
            continue
        for a, fa, b, fb in zip(c["answers"], c["finished"], r["answers"], r["finished"]):
            if match_length is not None:
                n = min(len(a.split()), len(b.split()))
                if n < match_length:
                    continue
                a, b = _first_words(a, n), _first_words(b, n)
            elif finished_only and not (fa and fb):
                continue
            if a and b and a != b:
                pairs.append({"prompt": c["prompt"], "chosen": a, "rejected": b})
    return pairs


def make_pairs(dim: str, *, out: Path, base: str | Path = "default", prompts: int = 256, samples: int = 1,
               max_new_tokens: int = 256, temperature: float = 0.7, engine: str = "auto", seed: int = 0,
               prompts_file: str | Path | None = None, finished_only: bool = True,
               match_length: int | None = None, force: bool = False,
               progress: bool = True) -> dict[str, Any]:
    """Write RLCD pairs for `dim` to `out` (JSONL); returns a summary (counts, statements, engine)."""
    from soups.base import fingerprint, resolve_base
    from soups.dimensions import load_dimension
    from soups.hardware import fast_bf16
    from soups.prompts import load_prompts
    from soups.train.config import WarmStart
    from soups.train.warmstart import base_answers

    out = check_file_target(Path(out), force)
    d = load_dimension(dim)
    if d.opposite is None:
        raise ConfigError(f"--dim {d.name}: it has no `opposite` in {d.source or 'its dimension file'}; "
                          "pairs contrast a dimension's statement with its opposite's")
    opp = load_dimension(d.opposite)
    try:
        pool = list(load_prompts(prompts_file if prompts_file is not None else "train"))
    except SoupsError as e:
        raise type(e)(f"--prompts-file: {e}") from None
    random.Random(seed).shuffle(pool)
    todo = pool[:prompts]
    if len(todo) < 4:
        raise ConfigError(f"--prompts {prompts}: {len(todo)} prompts; need at least 4")
    base_dir = resolve_base(base)
    settings = WarmStart(prompts=max(2, len(todo)), samples=samples, temperature=temperature,
                         max_new_tokens=max_new_tokens, engine=engine)
    work = out.parent / f".{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    # what the cached answers were sampled with (all but the prompt count, so a larger --prompts extends them)
    spec = {"dim": d.name, "opposite": opp.name, "seed": seed, "base": fingerprint(base_dir),
            "statements": [d.statement, opp.statement],
            "settings": settings.model_dump(exclude={"prompts"})}
    spec_file = work / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) != spec:
        log.info("make-pairs: cached answers in %s were sampled with other settings; starting over", work)
        for side in ("chosen", "rejected"):
            (work / f"{side}.jsonl").unlink(missing_ok=True)
    spec_file.write_text(json.dumps(spec, indent=2))
    sides = {}
    used = ""
    for side, dimension, side_seed in (("chosen", d, seed), ("rejected", opp, seed + 1_000_003)):  # independent draws
        sides[side], used = base_answers(base_dir, todo, dimension.statement, settings, side_seed,
                                         work / f"{side}.jsonl", title=f"{d.name} pairs: {side} ({dimension.name} "
                                         "statement)", show=progress, use_bf16=fast_bf16("cpu"))
    pairs = contrast(sides["chosen"], sides["rejected"], finished_only, match_length)
    if len(pairs) < 4:
        why = (f" (both answers must have {match_length}+ words)" if match_length is not None
               else " (both answers must finish)" if finished_only else "")
        raise ConfigError(f"--dim {d.name}: only {len(pairs)} usable pairs from {len(todo)} prompts{why}; "
                          "raise --prompts or --max-new-tokens")
    atomic_write_text(out, "".join(json.dumps(p) + "\n" for p in pairs), force=force)
    return {"dimension": d.name, "opposite": opp.name, "pairs": len(pairs), "prompts": len(todo),
            "samples": samples, "finished_only": finished_only and match_length is None,
            "match_length": match_length, "max_new_tokens": max_new_tokens,
            "temperature": temperature, "engine": used,
            "chosen_statement": d.statement, "rejected_statement": opp.statement, "out": str(out)}
