"""`soups serve --statements`: a soup's preference statements appended to the chat requests it answers.

The paper asks its soups with the declared dimensions' statements appended to the instruction (its
eval.py, soups.prompts.with_statements). vLLM cannot change a request by the model it names, so the
server's front rewrites a chat request for a soup: the statements of the dimensions the soup declares
(its soup.json, weight > 0: soups.merge.provenance.statements) end its last user message.
"""

from __future__ import annotations


def append_statements(body: dict, said: list[str]) -> dict:
    """The chat request `body` with `said` appended to its last user message (a string, or the last text part
    of a list of content parts); every other message and field as it was."""
    from soups.prompts import with_statements

    messages = [dict(m) for m in body.get("messages") or []]
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        if isinstance(m.get("content"), str):
            m["content"] = with_statements(m["content"], said)
        elif isinstance(m.get("content"), list):
            parts = [dict(p) for p in m["content"]]
            texts = [p for p in parts if p.get("type") == "text"]
            if texts:
                texts[-1]["text"] = with_statements(str(texts[-1].get("text", "")), said)
            m["content"] = parts
        break
    return {**body, "messages": messages}
