"""Chat prompting: the one place where an instruction becomes chat messages and the model's template text.

Every answer soups asks of a model (evaluation, `soups generate`, held-out checks of an expert, the
demo) and every text a reward model scores goes through here, so they all see the same template:

    messages("Why is the sky blue?", system="Be brief.")
    -> [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]
    render(tokenizer, "Why is the sky blue?")   # the template text, ending with the assistant turn's opening
"""

from __future__ import annotations

from typing import Any


def messages(prompt: str, system: str | None = None, completion: str | None = None) -> list[dict[str, str]]:
    """The chat of one request: an optional system prompt, the user's prompt, an optional assistant answer."""
    chat = [{"role": "system", "content": system}] if system else []
    chat.append({"role": "user", "content": prompt})
    if completion is not None:
        chat.append({"role": "assistant", "content": completion})
    return chat


def render(tokenizer: Any, prompt: str, system: str | None = None) -> str:
    """The prompt through the tokenizer's chat template, ending with the assistant turn's opening."""
    return tokenizer.apply_chat_template(messages(prompt, system), tokenize=False, add_generation_prompt=True)


def render_exchange(tokenizer: Any, prompt: str | None, completion: str) -> str:
    """A prompt and its answer as one text (what a reward model scores): the chat template when the
    tokenizer has one, else the two joined by a blank line."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages(prompt or "", completion=completion), tokenize=False)
    return f"{prompt or ''}\n\n{completion}"
