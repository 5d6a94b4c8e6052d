"""Streamed answers: the same greedy text as `soups generate`'s generator, token by token; a new job preempts."""

from __future__ import annotations

import pytest

from soups.errors import ConfigError
from soups.playground.session import Settings


def test_streamed_answers_equal_chat_generator(playground, pg_world, tmp_path):
    """Base and soup answers streamed side by side equal ChatGenerator's (PEFT on the merged adapter) text."""
    from soups.eval.generate import ChatGenerator
    from soups.merge.engine import merge

    base_dir, _ = pg_world
    settings = Settings((1.0, 2.0, 1.0))
    updates = list(playground.answer("Write a haiku about rain.", settings, fresh_base=True))
    last = updates[-1]
    assert all(last.done.values()) and not last.preempted
    assert last.tokens["soup"] == 8 and len(updates) >= 2  # streamed: more than one update
    soup_texts = [u.texts["soup"] for u in updates]
    assert all(b.startswith(a) for a, b in zip(soup_texts, soup_texts[1:]))  # each update extends the last
    assert 0 < last.first_token_s["soup"] <= last.elapsed

    merge(playground.soup_spec(settings, format="adapter"), tmp_path / "soup")
    gen = ChatGenerator(base_dir, dtype="float32")
    want_base = gen.generate(["Write a haiku about rain."], max_new_tokens=8, progress=False)[0]
    gen.set_adapter(tmp_path / "soup")
    want_soup = gen.generate(["Write a haiku about rain."], max_new_tokens=8, progress=False)[0]
    assert (last.texts["base"], last.texts["soup"]) == (want_base, want_soup)
    assert want_soup != want_base

    # the base's answer is cached per prompt: a slider change only regenerates the soup
    again = list(playground.answer("Write a haiku about rain.", Settings((0.0, 1.0, 0.0))))[-1]
    assert again.tokens["base"] == -1 and again.texts["base"] == want_base
    rows = playground.history[-2:]
    assert [r["system"] for r in rows] == ["base", "soup"] and rows[1]["weights"]["friendly"] == 1.0
    assert set(rows[1]["scores"]) == {"concise", "friendly", "expert"}


def test_a_new_answer_preempts_the_running_one(playground):
    long = playground.answerer.stream({"soup": playground.soup.model}, "Tell me a long story.", max_new_tokens=200,
                                      min_new_tokens=200)
    first = next(long)
    assert first.tokens["soup"] >= 1
    playground.answerer.stop()
    rest = list(long)
    assert rest and rest[-1].preempted and rest[-1].tokens["soup"] < 200


def test_bad_prompts(playground):
    for prompt, words in (("  ", "prompt is empty"), ("x" * 5000, "characters")):
        with pytest.raises(ConfigError, match=words):
            next(playground.answer(prompt, Settings((1.0, 0.0, 0.0))))


def test_min_new_tokens_counts_visible_tokens(pg_world):
    """A model that would rather write <|endoftext|> / <|im_start|> than EOS: min_new_tokens still gives that many
    visible tokens (every special token is held back, not only EOS), as the benchmark's 128-token answers need."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soups.playground.streaming import Answerer

    base_dir, _ = pg_world
    tok = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    others = [t for t in tok.all_special_ids if t != eos]
    assert others  # SmolLM2's tokenizer: <|endoftext|> and <|im_start|> besides EOS <|im_end|>
    bias = torch.zeros(model.config.vocab_size)
    bias[others] = 1e4  # the model always wants a special token that is not EOS
    model.lm_head.register_forward_hook(lambda m, i, out: out + bias)
    answerer = Answerer(tok, threads=1)
    forced = list(answerer.stream({"m": model}, "Hi", max_new_tokens=6, min_new_tokens=6))[-1]
    assert forced.tokens["m"] == 6 and forced.texts["m"]
    free = list(answerer.stream({"m": model}, "Hi", max_new_tokens=6))[-1]
    assert free.tokens["m"] == 0  # unforced: only special tokens, none of them visible


def test_all_torch_work_runs_on_one_long_lived_thread(playground):
    """Rebuilds and single-model answers run on the playground's torch thread, whichever thread asks; with two
    models the second runs beside it (see soups.playground.streaming: a second OpenMP team stops the spinning)."""
    import threading

    list(playground.answer("Why is the sky blue?", Settings((1.0, 0.0, 0.0))))  # the base's answer is cached
    seen: dict[str, set[int]] = {"soup": set(), "base": set(), "rebuild": set()}
    hooks = [playground.soup.model.register_forward_hook(lambda *a: seen["soup"].add(threading.get_ident())),
             playground.base.register_forward_hook(lambda *a: seen["base"].add(threading.get_ident()))]
    real = playground.soup.rebuild
    playground.soup.rebuild = lambda *a, **k: seen["rebuild"].add(threading.get_ident()) or real(*a, **k)
    try:
        def ask(weights, fresh_base):
            list(playground.answer("Why is the sky blue?", Settings(weights), fresh_base=fresh_base))

        for weights in ((1.0, 0.3, 0.0), (0.2, 1.0, 1.0)):  # from this thread and from another one
            t = threading.Thread(target=ask, args=(weights, False))
            t.start()
            t.join()
            ask(tuple(reversed(weights)), False)
        torch_thread = playground.torch_thread._ident
        assert seen["rebuild"] == {torch_thread} and seen["soup"] == {torch_thread}
        assert not seen["base"]
        ask((1.0, 1.0, 0.5), True)  # base and soup at once: the base on the torch thread, the soup beside it
        assert seen["base"] == {torch_thread} and len(seen["soup"]) == 2
    finally:
        for h in hooks:
            h.remove()
        playground.soup.rebuild = real
