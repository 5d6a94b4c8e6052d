"""Rewards: the registry, the rule scorers on hand-written answers (ordering, bounds, degenerate
text, gaming), the text features against hand-computed values, and the model kind on a tiny
randomly initialised reward model."""

from __future__ import annotations

import itertools
import json
import pickle
import random

import pytest
from pydantic import ValidationError

from soups.dimensions import load_dimension
from soups.errors import ConfigError, RewardError
from soups.rewards import as_text, get_reward, kinds
from soups.rewards.lexicons import FUNCTION_WORDS
from soups.rewards.rule import SCORERS, score_text
from soups.rewards.text import fk_grade, sentences, syllables, words
from tests.helpers import dimension

DIMS = ["elementary", "expert", "concise", "informative", "friendly", "unfriendly"]
P = "Why is the sky blue?"

# hand-written answers to P, one in the style of each dimension, plus a rambling and a neutral one
ANSWERS = {
    "concise": "The sky looks blue because air molecules scatter short blue wavelengths of sunlight more than red.",
    "informative": (
        "The sky looks blue because of Rayleigh scattering, first explained by Lord Rayleigh in the 1870s. Sunlight "
        "contains every visible colour, from red light with wavelengths near 700 nanometres to violet near 400. When "
        "this light enters the atmosphere it meets nitrogen and oxygen molecules, which are much smaller than the "
        "wavelength of the light. Such small particles scatter short wavelengths far more strongly: the intensity "
        "grows with the inverse fourth power of the wavelength, so blue light is scattered roughly five times more "
        "than red. This scattered blue light reaches our eyes from every direction, which makes the whole dome of "
        "the sky glow blue. Violet is scattered even more, but the Sun emits less of it, some is absorbed high in "
        "the atmosphere, and our eyes are less sensitive to it, so we perceive blue. At sunrise and sunset, for "
        "example, light travels through much more air, most blue light is scattered away before it reaches us, and "
        "the remaining reds and oranges dominate."
    ),
    "elementary": (
        "The sun sends out light in many colors. The air is full of tiny bits. These bits bounce blue light all "
        "over the sky. Red light just goes straight on by. So when you look up, you see blue everywhere. That is "
        "why the sky is blue!"
    ),
    "expert": (
        "The azure chromaticity arises from Rayleigh scattering: for particles with characteristic dimension much "
        "smaller than the incident wavelength, the differential scattering cross-section scales as the inverse "
        "fourth power of wavelength, modulated by the molecular polarizability tensor of N2 and O2. Integrating the "
        "solar spectral irradiance against this cross-section and the CIE photopic luminosity function, and "
        "accounting for ozone absorption in the Chappuis band, yields a perceptual maximum in the blue rather than "
        "the violet regime."
    ),
    "friendly": (
        "Oh, great question, my friend! Imagine the sunlight as a big box of crayons zooming toward you. When it "
        "hits the air, the tiny air molecules grab the blue crayons and toss them all over the sky like confetti at "
        "a party. Haha, the red ones just keep going! So every time you look up, you're seeing a giant blue light "
        "show put on just for you. Pretty awesome, right?"
    ),
    "unfriendly": "Obviously it's Rayleigh scattering. Air scatters blue light more than red. Look it up next time. "
    "Not rocket science.",
    "ramble": (
        "Great question! I'd be happy to help. Basically, the sky is blue, and there are many reasons why the sky is "
        "blue. The sky is blue because of the way that light works, and light is something that is very "
        "interesting. In general, when sunlight comes into the atmosphere, it is scattered. It is important to note "
        "that the blue light is scattered more. Additionally, this is why the sky is blue. Overall, the sky is blue "
        "because of scattering, and scattering is the reason the sky is blue. Furthermore, at sunset the sky can be "
        "red or orange, which is also because of scattering. In conclusion, the sky is blue because of scattering. "
        "I hope this helps! Let me know if you have any other questions"
    ),
    "neutral": (
        "The blue color of the sky is caused by the scattering of sunlight in the atmosphere. Shorter wavelengths "
        "such as blue are scattered more than longer wavelengths such as red, so more blue light reaches your eyes "
        "from all directions."
    ),
}
# a second topic, written after the scorers were tuned (a check that the orderings generalise)
P2 = "How do I boil an egg?"
ANSWERS2 = {
    "concise": "Lower the egg into boiling water, cook 7 minutes for a jammy yolk or 10 for hard, then cool it in "
    "cold water.",
    "informative": (
        "Boiling an egg is simple, but timing matters because the white sets at about 62 degrees Celsius while the "
        "yolk firms near 70. Start with eggs at room temperature, which makes them less likely to crack when they "
        "meet the heat. Bring a pot of water to a rolling boil, then lower the eggs in with a spoon and reduce the "
        "heat to a gentle simmer. For a runny yolk, cook for 6 minutes; for a jammy yolk, 7 to 8 minutes; for a "
        "fully hard yolk, 10 to 12 minutes. Overcooking causes a green ring around the yolk, which is iron sulfide "
        "formed when sulfur from the white reacts with iron in the yolk. As soon as the time is up, move the eggs "
        "to a bowl of ice water: this stops the cooking and makes peeling easier, since the membrane shrinks away "
        "from the shell. Very fresh eggs are harder to peel, so eggs that are a week old usually work best."
    ),
    "elementary": (
        "Put water in a pot and heat it until it bubbles. Then put the egg in with a big spoon. Wait about ten "
        "minutes. Ask a grown-up to help you take it out. Put it in cold water so it cools down. Now you can peel "
        "it and eat it!"
    ),
    "expert": (
        "Thermal denaturation of ovalbumin and ovotransferrin proceeds at distinct temperatures, so the "
        "coagulation profile is governed by the radial temperature gradient established during conductive heat "
        "transfer. Immersion at 100 degrees Celsius for approximately 420 seconds yields a partially gelled yolk, "
        "whereas prolonged exposure promotes hydrogen sulfide liberation from albumen proteins and subsequent "
        "ferrous sulfide precipitation at the yolk interface. Rapid quenching minimizes carryover cooking and "
        "facilitates separation of the inner shell membrane."
    ),
    "friendly": (
        "Ooh, egg time, my friend! Grab a pot of water and let it get all bubbly, like a hot tub party for your "
        "egg. Gently lower your egg in (no cannonballs, haha!). Give it about 7 minutes if you love a gooey yolk, "
        "or 10 if you're team hard-boiled. Then pop it into cold water to chill out. You've got this, and trust "
        "me, it's going to be egg-cellent!"
    ),
    "unfriendly": "Seriously? Boil water. Drop the egg in. Ten minutes. Cold water. Done. Not rocket science.",
    "neutral": (
        "Place the egg in a pot of boiling water and cook it for about eight to ten minutes. Then transfer it to "
        "cold water, let it cool, and peel off the shell."
    ),
}

DEGENERATE = {
    "empty": "",
    "space": "   \n\t ",
    "loop": "blue " * 60,
    "loop_sentence": "The sky is blue. " * 20,
    "symbols": "!!! ??? ... ### $$$ %%% &&& *** ((( )))",
    "yes": "Yes.",
    "echo": "The sky is blue.",
}


def s(dim: str, text: str, prompt: str | None = P) -> float:
    return get_reward(load_dimension(dim))([text], prompts=[prompt] if prompt is not None else None)[0]


# ----------------------------------------------------------------------------- registry
def test_registry_kinds_and_errors():
    assert kinds()[:3] == ["rule", "model", "judge"]
    with pytest.raises(ValidationError, match="kind 'oracle' is not one of rule, model, judge"):
        dimension(kind="oracle")
    with pytest.raises(ValidationError, match="urll") as e:
        dimension(kind="rule", scorer="concise", urll="http://x")
    assert e.value.errors()[0]["loc"] == ("reward", "urll") and e.value.errors()[0]["type"] == "extra_forbidden"
    with pytest.raises(ValidationError) as e:
        dimension(kind="judge")
    assert {err["loc"] for err in e.value.errors()} == {("reward", "url"), ("reward", "model")}
    with pytest.raises(RewardError, match="rule scorer 'poetic' is unknown; valid scorers: concise"):
        get_reward(dimension(kind="rule", scorer="poetic"))
    with pytest.raises(RewardError, match="bad `params`"):
        get_reward(dimension(kind="rule", scorer="concise", params={"bogus": 1}))
    with pytest.raises(ConfigError, match="unknown dimension 'verbose'"):
        load_dimension("verbose")
    with pytest.raises(TypeError, match=r"get_reward\(load_dimension\('concise'\)\)"):
        get_reward("concise")


def test_reward_fn_convention_pickle_and_chat_inputs():
    fn = get_reward(load_dimension("concise"))
    assert fn.__name__ == "rule_concise" and callable(fn)
    texts = [ANSWERS["concise"], ANSWERS["ramble"], ""]
    values = fn(texts, prompts=[P] * 3)
    assert all(isinstance(v, float) for v in values) and len(values) == 3
    assert pickle.loads(pickle.dumps(fn))(texts, prompts=[P] * 3) == values
    chat_c = [[{"role": "assistant", "content": t}] for t in texts]
    chat_p = [[{"role": "system", "content": "Be kind."}, {"role": "user", "content": P}]] * 3
    assert fn(chat_c, prompts=chat_p) == values
    chatml = f"<|im_start|>system\nYou are SmolLM.<|im_end|>\n<|im_start|>user\n{P}<|im_end|>\n<|im_start|>assistant\n"
    assert as_text(chatml, "user") == P and fn(texts, prompts=[chatml] * 3) == values
    assert fn(texts, completion_ids=[[1]] * 3) == fn(texts)  # extra TRL kwargs are ignored
    with pytest.raises(ValueError, match="2 prompts for 3 completions"):
        fn(texts, prompts=[P, P])
    longer = get_reward(dimension(kind="rule", scorer="concise", params={"n0": 30}))
    assert longer([ANSWERS["neutral"]])[0] > fn([ANSWERS["neutral"]])[0]


def test_every_shipped_dimension_has_a_working_reward():
    from soups.dimensions import list_dimensions

    for d in list_dimensions():
        fn = get_reward(d)
        assert d.reward.scorer == d.name  # each shipped dimension names its scorer
        assert fn.dimension == d.name
        assert all(0.0 <= v <= 1.0 for v in fn(list(ANSWERS.values()), prompts=[P] * len(ANSWERS)))


# ----------------------------------------------------------------------------- rule: orderings
@pytest.mark.parametrize("dim", DIMS)
def test_each_dimension_prefers_its_own_answer(dim):
    own = s(dim, ANSWERS[dim])
    others = {k: s(dim, v) for k, v in ANSWERS.items() if k != dim}
    assert own > max(others.values()) - (0.02 if dim == "concise" else 0), others  # concise ~ curt unfriendly
    assert own >= 0.75


@pytest.mark.parametrize(("better", "worse", "dim"), [
    ("concise", "ramble", "concise"), ("concise", "informative", "concise"),
    ("informative", "concise", "informative"), ("informative", "ramble", "informative"),
    ("elementary", "expert", "elementary"), ("elementary", "informative", "elementary"),
    ("expert", "elementary", "expert"), ("expert", "neutral", "expert"),
    ("friendly", "unfriendly", "friendly"), ("friendly", "neutral", "friendly"),
    ("unfriendly", "friendly", "unfriendly"), ("unfriendly", "neutral", "unfriendly"),
])
def test_pairwise_preferences(better, worse, dim):
    assert s(dim, ANSWERS[better]) > s(dim, ANSWERS[worse]) + 0.1
    if worse in ANSWERS2:  # the second topic has no rambling answer
        assert s(dim, ANSWERS2[better], P2) > s(dim, ANSWERS2[worse], P2) + 0.05


def test_concise_and_informative_move_opposite_ways_with_length():
    sents = sentences(ANSWERS["informative"])
    conc, info = [], []
    for k in (1, 2, 4, 6, 8):
        text = " ".join(sents[:k])
        conc.append(s("concise", text))
        info.append(s("informative", text))
    assert all(a > b for a, b in itertools.pairwise(conc)), conc  # shorter is more concise (past ~12 words)
    assert all(a < b for a, b in itertools.pairwise(info)), info  # each new fact adds information


def test_informative_finish_weight_scales_only_unfinished_answers():
    """`finish` is the share of the informative score that a finished last sentence earns (default 0.15)."""
    done = ANSWERS["informative"]
    cut = done.rstrip(".") + " and the"
    for text, ratio in ((done, 1.0), (cut, 1 / 0.85)):
        default, no_finish = (score_text("informative", text, P, **kw)["score"] for kw in ({}, {"finish": 0}))
        assert 0 < default < 1 and no_finish == pytest.approx(default * ratio, rel=1e-9), (text, default, no_finish)
    with pytest.raises(RewardError, match=r"finish 1\.5 must be a share in \[0, 1\]"):
        score_text("informative", done, P, finish=1.5)


def test_informative_linear_curve_pays_each_new_content_word_alike():
    """curve: linear makes depth the count of distinct content words (3+ letters, not function words) / c_max."""
    text = ANSWERS["informative"]
    content = {w for w in words(text) if len(w) >= 3 and w not in FUNCTION_WORDS}
    for c_max in (40, 1000):
        part = score_text("informative", text, P, curve="linear", c_max=c_max)["depth"]
        assert part == pytest.approx(min(1.0, len(content) / c_max))
    with pytest.raises(RewardError, match="curve 'cubic' is unknown"):
        score_text("informative", text, P, curve="cubic")


def test_friendly_min_words_scales_short_answers_by_the_substance_ramp():
    """`min_words: k` sets friendly's minimum-substance ramp, min(1, (words + 1) / k) (default 20): an answer under k
    words is scaled by its share of k, one of k words or more is not."""
    text = ANSWERS["friendly"]
    n = len(words(text))
    assert 20 <= n < 200
    default = score_text("friendly", text, P)["score"]
    assert 0 < default < 1
    for k, ratio in ((n + 1, 1.0), (2 * (n + 1), 0.5), (4 * (n + 1), 0.25)):
        assert score_text("friendly", text, P, min_words=k)["score"] == pytest.approx(default * ratio, rel=1e-9), k


def test_scores_are_graded_not_binary():
    """Smooth: neutral answers sit inside (0, 1) on every dimension, so PPO has a signal from step 0."""
    for dim in DIMS:
        v = s(dim, ANSWERS["neutral"])
        assert 0.02 < v < 0.9, (dim, v)
    lengths = [s("concise", " ".join([ANSWERS["neutral"]] + sentences(ANSWERS["informative"])[:k])) for k in range(6)]
    assert len({round(v, 4) for v in lengths}) == 6


# ----------------------------------------------------------------------------- rule: bounds, degenerate, gaming
@pytest.mark.parametrize("dim", DIMS)
def test_degenerate_text_never_wins(dim):
    best = s(dim, ANSWERS[dim])
    for name, text in DEGENERATE.items():
        v = s(dim, text)
        assert 0.0 <= v < best - 0.3, (name, v)
    for name in ("empty", "space", "symbols"):
        assert s(dim, DEGENERATE[name]) == 0.0
    for name in ("loop", "loop_sentence"):
        assert s(dim, DEGENERATE[name]) < 0.02


def test_concise_empty_one_word_and_echo_are_not_best():
    good = s("concise", ANSWERS["concise"])
    for text in ("", ".", "Blue.", "Yes", DEGENERATE["echo"], "blue blue blue"):
        assert s("concise", text) < good - 0.3, text


def test_repeating_an_answer_lowers_every_score():
    for dim in DIMS:
        once = s(dim, ANSWERS[dim])
        assert s(dim, ANSWERS[dim] + " " + ANSWERS[dim]) < once - 0.1, dim


def test_lexicon_and_punctuation_stuffing_do_not_beat_real_answers():
    salad = "Rayleigh scattering wavelength polarizability tensor chromaticity irradiance spectroscopy eigenvalue " \
            "stochastic quantum covariance manifold asymptotic hermeneutics"
    assert s("expert", salad) < s("expert", ANSWERS["expert"]) - 0.4
    dump = "awesome fun haha love great joke friend buddy cool amazing hilarious party wow yay"
    assert s("friendly", dump) < s("friendly", ANSWERS["friendly"]) - 0.4
    bangs = ANSWERS["neutral"].replace(".", "!!!!!!!!")
    assert s("friendly", bangs) < s("friendly", ANSWERS["friendly"]) - 0.2
    rude = "obviously whatever duh seriously ugh useless stupid pointless boring meh"
    assert s("unfriendly", rude) < s("unfriendly", ANSWERS["unfriendly"]) - 0.4
    off_topic = "Obviously you should look it up yourself. Not my problem."
    assert s("unfriendly", off_topic) < s("unfriendly", ANSWERS["unfriendly"])


def test_bounded_on_random_text():
    rng = random.Random(0)
    vocab = words(" ".join(ANSWERS.values())) + ["!", "?", ".", "\n", "😀", "```", "42", "é"]
    for _ in range(60):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 400)))
        for dim in DIMS:
            v = score_text(dim, text, P)["score"]
            assert 0.0 <= v <= 1.0
    for dim in DIMS:  # arbitrary unicode and huge inputs do not crash
        assert 0.0 <= s(dim, "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(3000))) <= 1.0
        assert 0.0 <= s(dim, ANSWERS["informative"] * 30) <= 1.0
    assert set(SCORERS) == set(DIMS)


# ----------------------------------------------------------------------------- text features vs hand counts
# syllables counted by hand (dictionary hyphenation)
HAND_SYLLABLES = {
    "cat": 1, "the": 1, "sky": 1, "blue": 1, "light": 1, "make": 1, "those": 1, "fire": 1, "time": 1,
    "water": 2, "table": 2, "happy": 2, "apple": 2, "people": 2, "little": 2, "running": 2, "jumped": 1,
    "wanted": 2, "decided": 3, "open": 2, "because": 2, "science": 2, "simple": 2, "rainbow": 2, "yellow": 2,
    "tomorrow": 3, "banana": 3, "computer": 3, "elephant": 3, "beautiful": 3, "dinosaur": 3, "wonderful": 3,
    "atmosphere": 3, "molecule": 3, "scattering": 3, "energy": 3, "family": 3, "animal": 3, "different": 3,
    "education": 4, "information": 4, "television": 4, "particular": 4, "everybody": 4, "photosynthesis": 5,
    "university": 5, "electricity": 5, "communication": 5, "temperature": 4, "interesting": 4, "biology": 4,
    "polarizability": 7, "chromaticity": 5, "responsibility": 6, "mitochondria": 5, "cat's": 1, "go": 1,
    "a": 1, "create": 2, "idea": 3, "radio": 3, "video": 3, "area": 3, "poem": 2, "quiet": 2,
    # a second batch, written after the heuristic was done (a check on words it was not tuned on)
    "garden": 2, "window": 2, "mountain": 2, "butterfly": 3, "hospital": 3, "adventure": 3, "library": 3,
    "calendar": 3, "umbrella": 3, "hamburger": 3, "basketball": 3, "strawberry": 3, "president": 3,
    "direction": 3, "celebrate": 3, "understand": 3, "together": 3, "question": 2, "machine": 2, "orange": 2,
    "village": 2, "minute": 2, "answer": 2, "alphabet": 3, "history": 3, "garage": 2, "engine": 2, "planet": 2,
    "museum": 3, "volcano": 3, "triangle": 3, "satellite": 3, "ocean": 2, "lion": 2, "violin": 3, "giraffe": 2,
    "potato": 3, "tornado": 3, "friend": 1, "client": 2,
}


def test_syllable_heuristic_against_hand_counts():
    errors = {w: (syllables(w), n) for w, n in HAND_SYLLABLES.items() if syllables(w) != n}
    assert len(errors) <= 0.1 * len(HAND_SYLLABLES), errors
    assert all(abs(a - b) <= 1 for a, b in errors.values()), errors
    assert syllables("") == 0 and syllables("123") == 0


def test_reading_grade_against_hand_computation():
    # "The cat sat on the mat." 6 words, 1 sentence, 6 syllables: 0.39*6 + 11.8*1 - 15.59
    assert fk_grade("The cat sat on the mat.") == pytest.approx(0.39 * 6 + 11.8 - 15.59)
    # 2 sentences, 8 words ("I" "like" "red" "apples" / "They" "taste" "very" "sweet"), 9 syllables
    assert fk_grade("I like red apples. They taste very sweet!") == pytest.approx(0.39 * 4 + 11.8 * 9 / 8 - 15.59)
    assert fk_grade("") == 0.0
    assert fk_grade(ANSWERS["expert"]) > 16
    assert fk_grade(ANSWERS["elementary"]) < 4


# ----------------------------------------------------------------------------- model kind
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(out, extra_words=()):
    """A small word-level tokenizer (vocabulary from ANSWERS) with a ChatML template, saved to `out`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    vocab_words = sorted(set(words(" ".join(ANSWERS.values()) + " " + P)) | set(extra_words))
    tokens = specials + ["user", "assistant", "system", "\n", "?", ".", "!", ","] + vocab_words
    vocab = {t: i for i, t in enumerate(tokens)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<|im_end|>",
                                  additional_special_tokens=["<|im_start|>"])
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    return tok


def make_reward_model(out, tok, dimension="concise", seed=0):
    """A tiny randomly initialised LlamaForSequenceClassification reward model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from soups.rewards.model import tokenizer_sha256

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=tok.pad_token_id)
    model = LlamaForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # visible differences between texts
    model.save_pretrained(out)
    tok.save_pretrained(out)
    meta = {"dimension": dimension, "base_fingerprint": "sha256:test", "tokenizer_sha256": tokenizer_sha256(tok)}
    (out / "reward_model.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    tok = make_tokenizer(root / "tok")
    return make_reward_model(root / "concise-rm", tok)


def reference_scores(path, prompts, completions):
    """One example at a time, no padding, text built by hand: an independent check of ModelReward."""
    import torch
    from transformers import AutoTokenizer, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(path)
    model = LlamaForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    out = []
    for p, c in zip(prompts, completions):
        text = f"<|im_start|>user\n{p}<|im_end|>\n<|im_start|>assistant\n{c}<|im_end|>\n"
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            out.append(model(input_ids=ids).logits[0, 0].item())
    return out


def model_reward(path, **fields):
    return get_reward(dimension(kind="model", path=str(path), **fields))


def test_model_reward_matches_reference(reward_dir):
    texts = [ANSWERS["concise"], ANSWERS["unfriendly"], "Blue.", ANSWERS["elementary"]]  # different lengths: padding
    prompts = [P, "Explain the sky.", P, "Why is it blue?"]
    fn = model_reward(reward_dir, batch_size=3)
    assert fn.__name__ == "model_concise"
    got = fn(texts, prompts=prompts)
    want = reference_scores(reward_dir, prompts, texts)
    assert got == pytest.approx(want, abs=1e-4)
    assert len({round(v, 4) for v in got}) == 4  # the texts get different rewards
    clone = pickle.loads(pickle.dumps(fn))  # pickles without the model, reloads on use
    assert clone._model is None and clone(texts, prompts=prompts) == pytest.approx(got, abs=1e-5)


def test_model_reward_from_a_dimension_file(reward_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "terse.yaml").write_text(
        f"name: terse\ndescription: d\nstatement: Be terse.\nreward:\n  kind: model\n  path: {reward_dir}\n"
    )
    fn = get_reward(load_dimension("terse"))
    assert fn.kind == "model" and fn.meta["dimension"] == "concise"
    assert fn(["Blue."], prompts=[P]) == pytest.approx(reference_scores(reward_dir, [P], ["Blue."]), abs=1e-4)


def test_model_reward_bad_directories(reward_dir, tmp_path):
    with pytest.raises(RewardError, match="not a directory; train one with `soups train-reward"):
        model_reward(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RewardError, match="no reward_model.json"):
        model_reward(tmp_path / "plain")
    (tmp_path / "plain" / "reward_model.json").write_text('{"dimension": "concise"}')
    with pytest.raises(RewardError, match="missing field\\(s\\) base_fingerprint, tokenizer_sha256"):
        model_reward(tmp_path / "plain")
    (tmp_path / "plain" / "reward_model.json").write_text('{"dimension": \n "concise",')
    with pytest.raises(RewardError, match="reward_model.json:2: invalid JSON"):
        model_reward(tmp_path / "plain")
    (tmp_path / "plain" / "reward_model.json").write_text(json.dumps(
        {"dimension": "concise", "base_fingerprint": "x", "tokenizer_sha256": "y"}))
    fn = model_reward(tmp_path / "plain")  # meta is fine, weights are not
    with pytest.raises(RewardError, match="cannot load"):
        fn(["hello"])


def _with_stats(reward_dir, tmp_path, mean: float, std: float):
    """A copy of the reward model whose reward_model.json records held-out score statistics."""
    import shutil

    out = tmp_path / "rm-stats"
    shutil.copytree(reward_dir, out)
    meta = json.loads((out / "reward_model.json").read_text())
    (out / "reward_model.json").write_text(json.dumps({**meta, "score_mean": mean, "score_std": std}))
    return out


def test_model_reward_normalize_centres_and_scales_by_the_recorded_spread(reward_dir, tmp_path):
    texts, prompts = [ANSWERS["concise"], "Blue."], [P, P]
    raw = reference_scores(reward_dir, prompts, texts)
    fn = model_reward(_with_stats(reward_dir, tmp_path, mean=0.25, std=2.0), normalize=True)
    assert fn(texts, prompts=prompts) == pytest.approx([(r - 0.25) / 2.0 for r in raw], abs=1e-4)
    with pytest.raises(RewardError, match="`normalize: true` needs score_mean and score_std"):
        model_reward(reward_dir, normalize=True)  # an older reward model without the statistics


def test_mix_reward_is_the_weighted_sum_of_its_squashed_parts(reward_dir, tmp_path):
    import math

    stats = _with_stats(reward_dir, tmp_path, mean=-0.5, std=0.5)
    fn = get_reward(dimension(kind="mix", parts=[
        {"weight": 0.7, "reward": {"kind": "rule", "scorer": "concise"}},
        {"weight": 0.3, "squash": "sigmoid", "reward": {"kind": "model", "path": str(stats), "normalize": True}},
        {"weight": -0.1, "reward": {"kind": "rule", "scorer": "informative"}}]))
    texts = [ANSWERS["concise"], ANSWERS["ramble"], "Blue."]
    raw = reference_scores(reward_dir, [P] * 3, texts)
    want = [0.7 * score_text("concise", t, P)["score"] + 0.3 / (1 + math.exp(-(r + 0.5) / 0.5))
            - 0.1 * score_text("informative", t, P)["score"] for t, r in zip(texts, raw)]
    got = fn(texts, prompts=[P] * 3)
    assert fn.kind == "mix" and fn.__name__ == "mix_concise"
    assert got == pytest.approx(want, abs=1e-4)
    assert pickle.loads(pickle.dumps(fn))(texts, prompts=[P] * 3) == pytest.approx(got, abs=1e-5)


def test_mix_reward_errors_name_the_part(tmp_path, monkeypatch):
    with pytest.raises(ValidationError) as e:
        dimension(kind="mix", parts=[])
    assert e.value.errors()[0]["loc"] == ("reward", "parts")
    with pytest.raises(ValidationError, match="kind 'oracle' is not one of"):
        dimension(kind="mix", parts=[{"reward": {"kind": "oracle"}}])
    with pytest.raises(ValidationError) as e:
        dimension(kind="mix", parts=[{"weight": float("nan"), "reward": {"scorer": "concise"}}])
    assert e.value.errors()[0]["loc"] == ("reward", "parts", 0, "weight")
    with pytest.raises(RewardError, match="rule scorer 'poetic' is unknown"):
        get_reward(dimension(kind="mix", parts=[{"reward": {"kind": "rule", "scorer": "poetic"}}]))
    # a part's relative path is relative to the dimension file, as at the top level
    monkeypatch.setenv("SOUPS_EXPERTS_DIR", str(tmp_path))
    (tmp_path / "terse.yaml").write_text("name: terse\ndescription: d\nstatement: Be terse.\nreward:\n  kind: mix\n"
                                         "  parts:\n    - reward: {kind: model, path: rm}\n")
    with pytest.raises(RewardError, match=f"reward model {tmp_path / 'rm'}: not a directory"):
        get_reward(load_dimension("terse"))


def test_mix_gate_multiplies_a_part_by_the_rule_rewards_shared_gates(reward_dir):
    from soups.rewards.rule import gate

    part = {"gate": True, "reward": {"kind": "model", "path": str(reward_dir)}}
    fn = get_reward(dimension(kind="mix", parts=[part]))
    texts = [ANSWERS["concise"], "No.\n\nNo.\n\nNo.\n\nNo.\n\nNo.\n\nNo.", "sky sky blue light light scatter"]
    raw = reference_scores(reward_dir, [P] * 3, texts)
    assert fn(texts, prompts=[P] * 3) == pytest.approx([r * gate(t, P) for r, t in zip(raw, texts)], abs=1e-4)
    assert gate(ANSWERS["concise"], P) > 0.5 and gate(texts[1], P) < 0.05 and gate(texts[2], P) < 0.3
