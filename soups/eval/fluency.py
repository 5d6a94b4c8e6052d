"""Held-out fluency checks: is an expert still writing English, or has it found a loophole?

A reward can be gamed into word salad, invented words or loops. These measures come from tools
training never saw (wordfreq's word lists, plain n-gram counting), so a soup cannot have learned them:

| measure       | what it is                                                                        |
|---------------|-----------------------------------------------------------------------------------|
| `unknown`     | share of alphabetic words (2+ letters) that wordfreq's English list does not know |
| `distinct3`   | distinct word 3-grams / all word 3-grams of an answer (1 = no repetition)         |
| `truncated`   | share of answers that used the whole token budget (did not finish)                |

`unknown` and `distinct3` are per answer, averaged; answers too short to measure count as 0 unknown
and 1 distinct. wordfreq ships its data in the package (offline).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

_ALPHA = re.compile(r"[A-Za-z]+(?:['’][A-Za-z]+)*")
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@functools.cache
def _known(word: str) -> bool:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") > 0.0


def unknown_share(text: str) -> float:
    """Share of the answer's alphabetic words of 2+ letters that are not in wordfreq's English list."""
    ws = [w.lower().replace("’", "'") for w in _ALPHA.findall(text) if len(w) >= 2]
    if not ws:
        return 0.0
    return sum(not _known(w) for w in ws) / len(ws)


def distinct3(text: str) -> float:
    """Distinct word 3-grams over all 3-grams (punctuation counts as a token); 1.0 below 3 tokens."""
    toks = [t.lower() for t in _TOKEN.findall(text)]
    grams = list(zip(toks, toks[1:], toks[2:]))
    return len(set(grams)) / len(grams) if grams else 1.0


def fluency_report(texts: Sequence[str], truncated: Sequence[bool] | None = None) -> dict[str, float]:
    """Means of `unknown` and `distinct3` over `texts`, and the `truncated` share when known."""
    n = max(len(texts), 1)
    out = {"unknown": sum(map(unknown_share, texts)) / n, "distinct3": sum(map(distinct3, texts)) / n}
    if truncated is not None:
        out["truncated"] = sum(bool(t) for t in truncated) / max(len(truncated), 1)
    return out
