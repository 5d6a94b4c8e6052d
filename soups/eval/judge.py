"""Pairwise judging in the Personalized Soups protocol: one criterion at a time, A / B / TIE, both orders.

For each prompt and each declared dimension, the judge sees the dimension's preference statement
and the two responses, and answers A, B or TIE; we ask again with the responses swapped. A win
needs both orders to agree; disagreement (position bias) or an unparseable answer is a tie. The
client (soups/rewards/judge.py) caches every answer on disk, so a re-run costs nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from soups.stats import WinRate, win_rate_from_outcomes

log = logging.getLogger(__name__)

POINTS = {"A": 1.0, "B": 0.0, "TIE": 0.5}


def make_client(url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4):
    """A cached, retrying judge client for an OpenAI-compatible endpoint."""
    from pydantic import ValidationError

    from soups.errors import ConfigError
    from soups.rewards.judge import Config, JudgeClient

    try:
        config = Config(url=url, model=model, api_key_env=api_key_env, concurrency=concurrency)
    except ValidationError as e:
        err = e.errors()[0]
        flag = {"url": "--judge-url", "model": "--judge-model"}.get(str(err["loc"][0]), str(err["loc"][0]))
        raise ConfigError(f"{flag}: {err['msg'].removeprefix('Value error, ')}") from None
    return JudgeClient(config)


def judge_outcomes(client, statement: str, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> list[float]:
    """Per prompt: 1 if the judge prefers `a` in both orders, 0 if `b` in both, 0.5 otherwise."""
    from soups.rewards.judge import judge_pair_both

    if not len(prompts) == len(a) == len(b):
        raise ValueError(f"judge: {len(prompts)} prompts but {len(a)} and {len(b)} responses")

    def one(i: int) -> float:
        return POINTS[judge_pair_both(client, statement, prompts[i], a[i], b[i]).winner]

    workers = max(1, int(getattr(client.config, "concurrency", 4)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(prompts))))


def judge_win_rate(client, statement: str, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                   **boot) -> WinRate:
    """A's judged win rate against B on one criterion, with its bootstrap interval over prompts."""
    return win_rate_from_outcomes(judge_outcomes(client, statement, prompts, a, b), **boot)
