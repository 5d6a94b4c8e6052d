"""Rule rewards: offline scorers for the paper's six dimensions, all in [0, 1].

Every scorer multiplies its dimension's signal by shared gates, so degenerate output never wins:
- `quality` (soups/rewards/text.py): 0 for empty text, falls with repeated n-grams (a looped
  token scores near 0), symbol soup, run-on text, sentences not starting with a capital, and word
  salad (few function words, long runs of content words);
- `relevance`: 0.75 + 0.25 * min(1, 2 * share of the prompt's content stems the answer mentions)
  (1 when no prompt is given), so a stock answer that ignores the prompt loses a quarter;
- `novelty`: 0.5 + 0.5 * min(1, content words not in the prompt / 3), so echoing the prompt
  ("The sky is blue.") is not an answer;
- a minimum-substance ramp, min(1, (words + 1) / k), so a few words are not the best answer
  (k: concise 4, unfriendly 10, elementary, friendly and informative 20, expert 25;
  friendly's `params: {min_words: k}` sets its k).

Signals (smooth in length and densities, so a small policy gets gradient everywhere):
- `concise`: log-length decay, 1 at <= 12 words, 0 at 300 (0.75 weight), a finished last sentence
  (0.25), divided by 1 + 0.5 * filler phrases ("I hope this helps", "basically", ...).
- `informative`: log count of distinct content words, saturating at 150 (0.6), explanation markers
  ("because", "for example", "known as", years and numbers) (0.2), sentence count (0.2);
  x (0.85 + 0.15 * finished); `params: {finish: W}` sets that finished share (0: no bonus for stopping),
  `curve: linear` makes depth linear in distinct content words up to `c_max` (each new word earns as much).
- `elementary`: Flesch-Kincaid grade via a syllable heuristic, linear from 1 at grade 2 to 0 at
  grade 22 (0.6), short sentences, 1 at 8 words to 0 at 35 (0.25), few words of 3+ syllables
  (0.15); gently penalises answers over 150 words.
- `expert`: jargon density (a technical lexicon, Latinate suffixes on long words, acronyms,
  numbers and symbols) (0.4), syllables per word, linear from 0 at 1.1 to 1 at 2.0 (0.3), grade,
  linear from 0 at 2 to 1 at 20 (0.3).
- `friendly`: warm and humour lexicon per 100 words (0.35), second person (0.2), sentences ending
  in "!" (0.15, counted per sentence, so "!!!!" adds nothing), contractions (0.1), a question back
  to the reader (0.1), casual register, sigmoid((10 - grade) / 2) (0.1); divided by 1 + dismissive
  phrases.
- `unfriendly`: dismissive lexicon per 100 words (0.5), curt sentences and answer (0.25), coldness:
  1 / (1 + 0.5 * (polite/warm phrases + exclamations)) (0.25).
Lexicon phrases count at most twice each, so repeating one stock phrase earns nothing more.

These are proxies: an unconstrained search over word sequences still finds salads that score
high. Under PPO the KL penalty to the base keeps the policy fluent; check samples and the
perplexity figure in expert.json. `score_text(name, text, prompt)` returns every part, for
debugging; `@scorer("name")` registers a new scorer (use it as `reward: {kind: rule, scorer: name}`),
and `scorer:` may also name a function by dotted path (`mypkg.rhymes:score`), with no registration:
`fn(text, prompt=None, **params)` returning a float in [0, 1] or a dict with "score".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, Literal

from pydantic import Field

from soups.errors import RewardError, SoupsError
from soups.rewards import RewardConfig, RewardFn
from soups.rewards import lexicons as lx
from soups.rewards.text import (
    clamp,
    fk_grade,
    is_complete,
    novelty,
    quality,
    relevance,
    saturate,
    sentences,
    sigmoid,
    syllables,
    words,
)

Scorer = Callable[..., dict[str, float]]
SCORERS: dict[str, Scorer] = {}


def scorer(name: str) -> Callable[[Scorer], Scorer]:
    """Register a rule scorer: `fn(text, prompt=None, **params) -> {"score": s in [0, 1], parts...}`."""

    def deco(fn: Scorer) -> Scorer:
        SCORERS[name] = fn
        return fn

    return deco


@cache
def _phrase_re(phrases: tuple[str, ...]) -> re.Pattern[str]:
    alts = []
    for p in sorted(phrases, key=len, reverse=True):
        esc = re.escape(p)
        alts.append(rf"(?<![\w']){esc}(?![\w'])" if re.fullmatch(r"[\w' -]+", p) else esc)
    return re.compile("|".join(alts))


def count(text: str, phrases: tuple[str, ...] | frozenset[str], cap: int = 2) -> int:
    """Occurrences of `phrases` in `text` (case-insensitive, whole words), each phrase counted at
    most `cap` times, so repeating one stock phrase ("haha haha haha") earns nothing more."""
    found = _phrase_re(tuple(sorted(phrases))).findall(text.lower().replace("\u2019", "'"))
    return sum(min(cap, found.count(p)) for p in set(found))


def _gates(text: str, prompt: str | None, ws: list[str], min_words: int) -> dict[str, float]:
    q = quality(text, ws)
    rel = 0.75 + 0.25 * min(1.0, 2.0 * relevance(prompt, ws))
    new = 0.5 + 0.5 * min(1.0, novelty(prompt, ws) / 3.0)
    ramp = min(1.0, (len(ws) + 1) / min_words)
    return {"quality": q, "relevance": rel, "novelty": new, "substance": ramp, "gate": q * rel * new * ramp}


def gate(text: str, prompt: str | None = None, min_words: int = 10) -> float:
    """The shared gates every rule scorer multiplies by (quality x relevance x novelty x minimum substance), in
    [0, 1]: what a `mix` part with `gate: true` is multiplied by, so a learned reward cannot be won by loops,
    salad or an answer that ignores the prompt."""
    return _gates(text, prompt, words(text), min_words)["gate"]


def _log_decay(n: float, n0: float, n_max: float) -> float:
    """1 up to n0 words, falling linearly in log(n) to 0 at n_max."""
    return clamp(1.0 - math.log(max(n, n0) / n0) / math.log(n_max / n0))


@scorer("concise")
def concise(text: str, prompt: str | None = None, n0: float = 12, n_max: float = 300) -> dict[str, float]:
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=4)
    length = _log_decay(len(ws), n0, n_max)
    done = float(is_complete(text))
    filler = count(text, lx.FILLER_PHRASES)
    s = g["gate"] * (0.75 * length + 0.25 * done) / (1.0 + 0.5 * filler)
    return {**g, "length": length, "complete": done, "filler": filler, "score": clamp(s)}


_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")


@scorer("informative")
def informative(text: str, prompt: str | None = None, c_max: float = 150, finish: float = 0.15,
                curve: Literal["log", "linear"] = "log") -> dict[str, float]:
    if not 0.0 <= finish <= 1.0:
        raise RewardError(f"informative: finish {finish!r} must be a share in [0, 1] (default 0.15)")
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=20)
    content = {w for w in ws if w not in lx.FUNCTION_WORDS and len(w) >= 3}
    if curve == "linear":
        depth = clamp(len(content) / c_max)
    elif curve == "log":
        depth = clamp(math.log1p(len(content)) / math.log1p(c_max))
    else:
        raise RewardError(f"informative: curve {curve!r} is unknown; use log or linear")
    markers = count(text, lx.EXPLANATION_MARKERS) + min(5, len(_NUMBER.findall(text)))
    n_sent = len(sentences(text))
    expl = saturate(markers, 3.0)
    structure = saturate(n_sent, 5.0)
    done = float(is_complete(text))
    s = g["gate"] * (0.6 * depth + 0.2 * expl + 0.2 * structure) * (1.0 - finish + finish * done)
    return {**g, "depth": depth, "explanation": expl, "structure": structure, "complete": done, "score": clamp(s)}


@scorer("elementary")
def elementary(
    text: str, prompt: str | None = None, min_grade: float = 2.0, max_grade: float = 22.0
) -> dict[str, float]:
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=20)
    if not ws:
        return {**g, "score": 0.0}
    grade = fk_grade(text)
    # linear, not a sigmoid: a base model writes at grade 12-24, and the slope must reach there
    read = clamp((max_grade - grade) / (max_grade - min_grade))
    per_sentence = len(ws) / max(1, len(sentences(text)))
    short = clamp((35.0 - per_sentence) / 27.0)
    hard = sum(syllables(w) >= 3 for w in ws) / len(ws)
    easy = clamp(1.0 - hard / 0.4)
    length = clamp(1.0 - 0.5 * math.log(max(len(ws), 150) / 150) / math.log(4), 0.5, 1.0)
    s = g["gate"] * (0.6 * read + 0.25 * short + 0.15 * easy) * length
    return {**g, "grade": grade, "readability": read, "short_sentences": short, "easy_words": easy, "score": clamp(s)}


_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9]{1,6}s?\b")
_SYMBOLIC = re.compile(r"[=<>^~\u00b1\u00d7\u2248\u2264\u2265\u2211\u222b\u03b1-\u03c9]|\b\d+(?:\.\d+)?(?:e-?\d+)?\b")


def _is_jargon(w: str) -> bool:
    return w in lx.JARGON or (len(w) >= 7 and w.endswith(lx.JARGON_SUFFIXES)) or syllables(w) >= 4


@scorer("expert")
def expert(text: str, prompt: str | None = None) -> dict[str, float]:
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=25)
    if not ws:
        return {**g, "score": 0.0}
    acronyms = len({a for a in _ACRONYM.findall(text) if a not in {"I", "OK", "AM", "PM"}})
    technical = sum(_is_jargon(w) for w in ws) + acronyms + min(5, len(_SYMBOLIC.findall(text)))
    density = technical / len(ws)
    jargon = saturate(density, 0.12)
    syl = sum(syllables(w) for w in ws) / len(ws)
    long_words = clamp((syl - 1.1) / 0.9)
    grade = fk_grade(text)
    s = g["gate"] * (0.4 * jargon + 0.3 * long_words + 0.3 * clamp((grade - 2.0) / 18.0))
    return {**g, "jargon": jargon, "long_words": long_words, "grade": grade, "score": clamp(s)}


_SECOND = frozenset({"you", "your", "you're", "yours", "yourself", "you've", "you'll", "you'd", "ya", "y'all"})


@scorer("friendly")
def friendly(text: str, prompt: str | None = None, min_words: int = 20) -> dict[str, float]:
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=min_words)
    if not ws:
        return {**g, "score": 0.0}
    sents = sentences(text)
    n = max(len(ws), 20)
    lex = saturate(100.0 * (count(text, lx.WARM) + 1.5 * count(text, lx.HUMOUR)) / n, 4.0)
    second = saturate(sum(w in _SECOND for w in ws) / len(ws), 0.04)
    excl = saturate(sum(s.rstrip("\"')").endswith("!") for s in sents) / max(1, len(sents)), 0.25)
    contractions = saturate(sum("'" in w for w in ws) / len(ws), 0.03)
    question = float(any(s.rstrip("\"')").endswith("?") for s in sents))
    casual = sigmoid((10.0 - fk_grade(text)) / 2.0)
    rude = count(text, lx.DISMISSIVE)
    s = 0.35 * lex + 0.2 * second + 0.15 * excl + 0.1 * contractions + 0.1 * question + 0.1 * casual
    s = g["gate"] * s / (1.0 + rude)
    return {**g, "warmth": lex, "second_person": second, "exclamation": excl, "score": clamp(s)}


@scorer("unfriendly")
def unfriendly(text: str, prompt: str | None = None) -> dict[str, float]:
    ws = words(text)
    g = _gates(text, prompt, ws, min_words=10)
    if not ws:
        return {**g, "score": 0.0}
    sents = sentences(text)
    dismissive = saturate(100.0 * count(text, lx.DISMISSIVE) / max(len(ws), 15), 5.0)
    per_sentence = len(ws) / max(1, len(sents))
    curt = 0.5 * sigmoid((12.0 - per_sentence) / 3.0) + 0.5 * _log_decay(len(ws), 30, 400)
    warm = count(text, lx.POLITE) + count(text, lx.WARM) + sum(s.endswith("!") for s in sents)
    cold = 1.0 / (1.0 + 0.5 * warm)
    s = g["gate"] * (0.5 * dismissive + 0.25 * curt + 0.25 * cold)
    return {**g, "dismissive": dismissive, "curt": curt, "cold": cold, "score": clamp(s)}


class Config(RewardConfig):
    """`reward: {kind: rule, scorer: NAME, params: {...}}`."""

    kind: Literal["rule"] = "rule"
    scorer: str = Field(description="a registered rule scorer (concise, informative, elementary, expert, friendly, "
                        "unfriendly) or a function by dotted path, package.module:function")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the scorer")


def _scorer(name: str) -> Scorer:
    from soups.plugins import is_dotted, load_object

    if name in SCORERS:
        return SCORERS[name]
    if is_dotted(name):
        return load_object(name, "reward.scorer")
    raise RewardError(f"rule scorer {name!r} is unknown; valid scorers: {', '.join(SCORERS)} "
                      "(or a function by dotted path, package.module:function)")


def score_text(name: str, text: str, prompt: str | None = None, **params: Any) -> dict[str, float]:
    """All parts of a rule score (for debugging and docs); `["score"]` is the reward."""
    fn = _scorer(name)
    try:
        out = fn(text, prompt, **params)
    except TypeError as e:
        raise RewardError(f"rule scorer {name!r}: bad `params` ({e})") from None
    return out if isinstance(out, dict) else {"score": float(out)}


class RuleReward(RewardFn):
    """A rule scorer as a reward function (picklable: holds only names and params)."""

    kind = "rule"

    def score(self, completions: list[str], prompts: list[str] | None) -> list[float]:
        ps = prompts or [None] * len(completions)
        params = self.config.params
        return [score_text(self.config.scorer, c, p, **params)["score"] for c, p in zip(completions, ps)]


def build(config: Config, dim: Any) -> RuleReward:
    """Registry builder for kind `rule`: the scorer `config.scorer` names, its params checked now."""
    try:
        _scorer(config.scorer)
    except SoupsError as e:
        raise RewardError(f"{dim.source or dim.name}: {e}") from None
    fn = RuleReward(dim.name, config)
    fn([""])  # validates `params` now, not mid-training
    return fn
