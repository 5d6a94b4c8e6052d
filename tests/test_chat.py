"""Chat prompting (soups/chat.py) against the default base's ChatML template, written out by hand."""

from __future__ import annotations

from soups.chat import messages, render, render_exchange


def test_messages():
    assert messages("Hi?") == [{"role": "user", "content": "Hi?"}]
    assert messages("Hi?", system="Be brief.", completion="Hello.") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."}]


def test_render_through_the_chat_template(default_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_base)
    assert render(tok, "Hi?", system="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert render(tok, "Hi?").endswith("<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n")
    assert render_exchange(tok, "Hi?", "Hello.").endswith(
        "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n")


def test_render_exchange_without_a_template():
    class Plain:
        chat_template = None

    assert render_exchange(Plain(), "Q", "A") == "Q\n\nA" and render_exchange(Plain(), None, "A") == "\n\nA"
