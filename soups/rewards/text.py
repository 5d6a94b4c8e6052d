"""Offline text features for the rule rewards: words, sentences, syllables, reading grade,
repetition, function-word share, prompt relevance. Standard library only, no downloads.

The syllable count is a vowel-group heuristic (silent final e, -es/-ed endings, y as a vowel,
hiatus pairs), about 90% exact on common English words (tests/test_rewards.py has hand counts);
the reading grade is Flesch-Kincaid's `0.39 * words/sentence + 11.8 * syllables/word - 15.59`.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache

from soups.rewards.lexicons import FUNCTION_WORDS

WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*")
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
_TERMINAL = re.compile(r"[.!?][\"')\]*_`]*\s*$|```\s*$")


def words(text: str) -> list[str]:
    """Lowercased word tokens (letters and inner apostrophes)."""
    return [w.lower().replace("\u2019", "'") for w in WORD.findall(text)]


def sentences(text: str) -> list[str]:
    """Sentences (split on . ! ? and newlines), keeping only those with at least one word."""
    return [s.strip() for s in _SENT_SPLIT.split(text) if WORD.search(s)]


_HIATUS = re.compile(
    r"(?<![cts])ia|(?<![tscgx])io(?!n)|(?<![tscgx])io(?=n[aeiouy])|eo(?![pu])|(?<![qg])ua|(?<!q)uo|iu"
    r"|(?<![tc])ien[ct]|iet|oe[mt]|ea$"
)


@lru_cache(maxsize=50000)
def syllables(word: str) -> int:
    """Syllables of one English word (heuristic, see module docstring); 0 for a non-word.

    Vowel groups (y included, a leading y excluded), minus a silent final e (but not consonant + le,
    as in "ta-ble"), -es after most consonants and -ed after consonants other than t/d, plus one
    for each hiatus, two vowels sounded apart ("ra-di-o", "i-de-a", "po-em").
    """
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 0
    if len(w) <= 3:
        return 1
    if re.search(r"[^aeiouysxzhcg]es$|[^aeiouytd]ed$", w):
        w = w[:-2]
    elif w.endswith("e") and not re.search(r"[^aeiouy]le$|[aeiouy]e$", w):
        w = w[:-1]
    w = re.sub(r"^y", "", w)
    n = len(re.findall(r"[aeiouy]+", w)) + len(_HIATUS.findall(w))
    return max(1, n)


def fk_grade(text: str) -> float:
    """Flesch-Kincaid grade level of `text` (0.0 for text without words)."""
    ws = words(text)
    if not ws:
        return 0.0
    n_sent = max(1, len(sentences(text)))
    syl = sum(syllables(w) for w in ws)
    return 0.39 * len(ws) / n_sent + 11.8 * syl / len(ws) - 15.59


def repetition(ws: list[str]) -> float:
    """Repetition in [0, 1]: the share of repeated n-grams (bigrams under 20 words, else trigrams),
    or, if higher, repeated content words (short texts) or one dominating content word (long texts);
    0 for varied text, near 1 for a looped token or sentence."""
    if len(ws) < 2:
        return 0.0
    n = 2 if len(ws) < 20 else 3
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    rep = 1.0 - len(set(grams)) / len(grams) if grams else 0.0
    if len(ws) < 40:  # short: few distinct words at all ("you're you're your ...")
        rep = max(rep, (0.6 - len(set(ws)) / len(ws)) / 0.6)
    content = [w for w in ws if w not in FUNCTION_WORDS]
    if 3 <= len(content) < 20:  # short: repeated content words beyond one in five
        rep = max(rep, max(0.0, 1.0 - len(set(content)) / len(content) - 0.2) / 0.8)
    elif len(content) >= 20:  # long: one content word dominating
        top = max(content.count(w) for w in set(content)) / len(content)
        rep = max(rep, max(0.0, top - 0.2) / 0.4)
    return min(1.0, rep)


def function_share(ws: list[str]) -> float:
    """Share of function words (the, of, is, you...); natural English prose is about 0.35-0.6."""
    return sum(w in FUNCTION_WORDS for w in ws) / len(ws) if ws else 0.0


def alpha_share(text: str) -> float:
    """Share of letters among non-space characters."""
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def is_complete(text: str) -> bool:
    """Ends like a finished answer (terminal punctuation or a closed code block), not cut mid-sentence."""
    return bool(_TERMINAL.search(text.strip()))


_SUFFIX = re.compile(r"(?:ing|ed|es|s|ly|er|est|ation|ations)$")


def stem(word: str) -> str:
    """Crude stem: drop one inflectional suffix (boiling -> boil, eggs -> egg), keep 5 letters."""
    base = _SUFFIX.sub("", word)
    return (base if len(base) >= 3 else word)[:5]


def stems(ws: list[str]) -> set[str]:
    """Stems of the content words (non-function words of 3+ letters)."""
    return {stem(w) for w in ws if len(w) >= 3 and w not in FUNCTION_WORDS}


def relevance(prompt: str | None, ws: list[str]) -> float:
    """Share of the prompt's content stems that the answer mentions, in [0, 1]; 1 without a prompt."""
    if not prompt:
        return 1.0
    want = stems(words(prompt))
    if not want:
        return 1.0
    return len(want & stems(ws)) / len(want)


def novelty(prompt: str | None, ws: list[str]) -> int:
    """Number of the answer's content stems that are not in the prompt (99 without a prompt)."""
    if not prompt:
        return 99
    return len(stems(ws) - stems(words(prompt)))


def saturate(x: float, scale: float) -> float:
    """Smooth 0 -> 1 ramp: 1 - exp(-x / scale)."""
    return 1.0 - math.exp(-max(0.0, x) / scale)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return max(lo, min(hi, x))


_CODE = re.compile(r"```.*?(?:```|$)", re.S)
_CHUNK = re.compile(r"[,;:.!?()\[\]\"\n]+")


def content_runs(text: str) -> float:
    """Share of words in runs of 8+ content words with no function word or punctuation between
    them (code blocks ignored): ~0 in prose, high in word salad ("hypothesis boson compiler ...")."""
    prose = _CODE.sub(" ", text)
    total = in_runs = 0
    for chunk in _CHUNK.split(prose):
        run = 0
        for w in words(chunk):
            total += 1
            if w in FUNCTION_WORDS:
                in_runs += run if run >= 8 else 0
                run = 0
            else:
                run += 1
        in_runs += run if run >= 8 else 0
    return in_runs / total if total else 0.0


def capitalized(text: str) -> float:
    """Share of sentences (outside code blocks) that start with a capital or a number ("200g rice");
    1 without sentences."""
    firsts = [next((c for c in s if c.isalnum()), "") for s in sentences(_CODE.sub("\n", text))]
    firsts = [c for c in firsts if c]
    return sum(c.isupper() or c.isdigit() for c in firsts) / len(firsts) if firsts else 1.0


def quality(text: str, ws: list[str]) -> float:
    """Degeneracy gate in [0, 1]: 0 for empty text; falls with repetition, symbol soup, run-on text
    without sentence breaks, sentences not starting with a capital, and (from 8 words) word salad:
    few function words or long runs of content words."""
    if not ws:
        return 0.0
    q = (1.0 - repetition(ws)) ** 2
    q *= clamp((alpha_share(text) - 0.3) / 0.4)
    per_sentence = len(ws) / max(1, len(sentences(text)))
    q *= clamp(1.0 - (per_sentence - 45.0) / 60.0, 0.2, 1.0)
    q *= 0.6 + 0.4 * capitalized(text)
    if len(ws) >= 8:
        q *= clamp(0.25 + 0.75 * function_share(ws) / 0.25, 0.25, 1.0)
        q *= clamp(1.0 - 1.5 * content_runs(text), 0.3, 1.0)
    return clamp(q)
