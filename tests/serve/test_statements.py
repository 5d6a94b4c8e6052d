"""`soups serve --statements`: a chat request for a soup gets the soup's preference statements at the end of its
last user message, as the paper's eval.py asks ("{instruction} {s1} {s2}"); nothing else in it changes."""

from __future__ import annotations

import copy

from soups.serve.statements import append_statements

CONCISE = "Generate a response that is concise and to the point without being verbose."
FRIENDLY = "Generate a response that is friendly, witty, funny, and humorous, like a close friend."


def test_the_last_user_message_gets_the_statements():
    chat = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Why is the sky blue?"}]
    body = {"model": "alice", "messages": chat, "max_tokens": 8, "stream": True}
    before = copy.deepcopy(body)
    got = append_statements(body, [CONCISE, FRIENDLY])
    assert got["messages"][3]["content"] == f"Why is the sky blue? {CONCISE} {FRIENDLY}"
    assert got["messages"][:3] == chat[:3] and {k: got[k] for k in ("model", "max_tokens", "stream")} == {
        "model": "alice", "max_tokens": 8, "stream": True}
    assert body == before  # the request itself is not changed in place


def test_content_parts_and_edge_cases():
    parts = [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": "x"}},
             {"type": "text", "text": "this."}]
    got = append_statements({"messages": [{"role": "user", "content": parts}]}, [CONCISE])
    assert [p.get("text") for p in got["messages"][0]["content"]] == ["Describe", None, f"this. {CONCISE}"]
    assert append_statements({"messages": [{"role": "user", "content": "Hi"}]}, []) == {
        "messages": [{"role": "user", "content": "Hi"}]}  # no statements: as it was
    assert append_statements({"messages": [{"role": "system", "content": "x"}]}, [CONCISE]) == {
        "messages": [{"role": "system", "content": "x"}]}  # no user message: nothing to append to
