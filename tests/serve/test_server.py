"""`soups serve` end to end on 127.0.0.1, the real vLLM engines behind soups' front, in both modes.

Each user's answer, and the answer to a request that names its soup (`soup:kind=2,brief=1`), is checked
token for token against transformers + PEFT running the same soup built independently (PEFT's `cat`
weighted adapter). Also: the key (401 without it, owner-only file, printed once), unloading another
user without the key refused, two concurrent `soups serve add` both landing, a bad `serve add` failing
cleanly while the server keeps serving, adapters loaded only from soups' cache, the least recently used
engine stopped for a new one (merged mode, `--max-users 1`), and SIGINT leaving no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from tests.serve.conftest import users_yaml

PROMPT = "What is a good soup?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port: int, path: str, body: dict | None = None, key: str | None = None, timeout: float = 600):
    """(status, JSON answer) of one call to the server; HTTP errors are returned, not raised."""
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if resp.headers.get_content_type() == "application/json" else text
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _chat(port: int, model: str, key: str, max_tokens: int = 8) -> list[int]:
    """A greedy chat completion; the answer's token ids (vLLM's `return_tokens_as_token_ids`)."""
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "logprobs": True, "top_logprobs": 0, "return_tokens_as_token_ids": True,
            "ignore_eos": True}
    status, data = _call(port, "/v1/chat/completions", body, key)
    assert status == 200, data
    assert data["model"] == model  # the name the client asked for, whatever the engine calls it
    return [int(t["token"].split(":", 1)[1]) for t in data["choices"][0]["logprobs"]["content"]]


_REFERENCES: dict = {}


def _peft_reference(world, weights: list[float], max_tokens: int = 8) -> list[int]:
    """Independent reference: PEFT's `cat` weighted adapter = sum_i w_i s_i B_i A_i, greedy in transformers."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_key = (str(world["base"]), tuple(weights), max_tokens)
    if cache_key in _REFERENCES:
        return _REFERENCES[cache_key]
    w = [x / sum(weights) for x in weights]
    model = AutoModelForCausalLM.from_pretrained(world["base"], dtype=torch.float32)
    model = PeftModel.from_pretrained(model, world["experts"][0], adapter_name="e0")
    model.load_adapter(world["experts"][1], adapter_name="e1")
    kept = [(f"e{i}", x) for i, x in enumerate(w) if x != 0]
    model.add_weighted_adapter([n for n, _ in kept], [x for _, x in kept], "soup", combination_type="cat")
    model.set_adapter("soup")
    tok = AutoTokenizer.from_pretrained(world["base"])
    ids = tok.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True)
    ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
    out = model.generate(input_ids=ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False,
                         pad_token_id=0)
    _REFERENCES[cache_key] = out[0, ids.shape[1]:].tolist()
    return _REFERENCES[cache_key]


def _soups(*args, env, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "soups", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None or bool(os.environ.get("CI"))  # CI: fail, never skip


class Server:
    """`soups serve` as a subprocess; waits for its "serving" line; SIGINT on exit; every engine pid it had."""

    def __init__(self, world, tmp_path: Path, users: str, *flags: str):
        self.port, self.home = _free_port(), tmp_path / "home"
        self.env = dict(os.environ, SOUPS_HOME=str(self.home), HF_HUB_OFFLINE="1")
        self.env.pop("SOUPS_API_KEY", None)
        self.users = users_yaml(tmp_path / "users.yaml", world["experts"], users)
        self.log, self.pids = tmp_path / "serve.err", set()
        self.state_file = self.home / "serve" / f"127.0.0.1-{self.port}.json"
        self.cmd = [sys.executable, "-m", "soups", "serve", "--base", str(world["base"]), "--users", str(self.users),
                    "--port", str(self.port), "--dtype", "float32", "--kv-cache-gb", "0.0625", "--max-model-len",
                    "512", *flags]

    def __enter__(self) -> Server:
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 900
        while "serving" not in self.log.read_text() and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "serving" in self.log.read_text(), self.log.read_text()[-3000:]
        self.key = Path(self.state()["key_file"]).read_text().strip()
        return self

    def state(self) -> dict:
        state = json.loads(self.state_file.read_text())
        self.pids |= set(state["engines"].values())
        return state

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=300)

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.stop()


def _check_auth(s: Server) -> None:
    """The key: generated, printed once, owner-only on disk; every API path refuses a request without it."""
    key_file = Path(s.state()["key_file"])
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and s.key.startswith("soups-")
    assert s.log.read_text().count(s.key) == 1
    chat = {"model": "bob", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    for path, body in (("/v1/chat/completions", chat), ("/v1/completions", {"model": "bob", "prompt": "Hi"}),
                       ("/v1/models", None), ("/soups/v1/users", {"user": "x", "soup": {}}),
                       ("/v1/load_lora_adapter", {"lora_name": "x", "lora_path": "/tmp"})):
        for key in (None, "soups-wrong-key"):
            status, data = _call(s.port, path, body, key)
            assert status == 401 and "API key" in data["error"]["message"], (path, data)
    # unloading another user's soup without the key is refused, and the user is still served
    assert _call(s.port, "/v1/unload_lora_adapter", {"lora_name": "bob"})[0] == 401
    assert "bob" in [m["id"] for m in _call(s.port, "/v1/models", key=s.key)[1]["data"]]
    assert _call(s.port, "/health")[0] == 200  # a load balancer's probe needs no key
    # loading is limited to soups' own adapter cache, key or not
    status, data = _call(s.port, "/v1/load_lora_adapter", {"lora_name": "mallory", "lora_path": str(s.home)}, s.key)
    assert status == 403 and "only soup adapters it built" in data["error"]["message"], data


def _check_concurrent_adds(s: Server, world) -> None:
    """Two `soups serve add` at once: both land (state and models), neither update is lost."""
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda a: _soups("serve", "add", a[0], "--weights", a[1], "--port", str(s.port),
                                              env=s.env), [("carol", "0,1"), ("dave", "1,1")]))
    for r, name in zip(runs, ("carol", "dave")):
        assert r.returncode == 0 and f"added user {name}" in r.stdout, r.stderr
    assert {"carol", "dave"} <= set(s.state()["users"])
    assert {"carol", "dave"} <= {m["id"] for m in _call(s.port, "/v1/models", key=s.key)[1]["data"]}
    # a bad add: one line, exit 2, the server keeps serving
    r = _soups("serve", "add", "erin", "--weights", "1", "--port", str(s.port), env=s.env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "1 weight(s) for 2 expert(s)" in r.stderr, r.stderr
    r = _soups("serve", "add", "erin", "--weights", "1,1", "--port", str(s.port), env=s.env | {
        "SOUPS_API_KEY": "soups-wrong-key"})
    assert r.returncode == 2 and "refused the API key" in r.stderr and "erin" not in s.state()["users"], r.stderr


def _check_stopped(s: Server) -> None:
    assert s.stop() == 0, s.log.read_text()[-2000:]
    assert s.pids and not any(_group_alive(p) for p in s.pids)  # every engine's server, core and workers gone
    assert not s.state_file.exists() and not s.state_file.with_suffix(".key").exists()


@pytest.mark.slow
@pytest.mark.skipif(not _has_vllm(), reason="vLLM is not installed: run scripts/install_vllm.sh (make test does)")
def test_merged_mode_end_to_end(world, tmp_path):
    """Merged mode (the default on a CPU) with room for one soup engine at a time: every switch is an eviction."""
    users = "  alice: 1,0\n  bob: {kind: 1, brief: 3}\n  eve: 1,2,3\n"
    with Server(world, tmp_path, users, "--mode", "merged", "--max-users", "1") as s:
        text = s.log.read_text()
        assert "serving 2 user(s) (alice, bob)" in text and "in merged mode" in text, text
        assert "skipped:" in text and "user eve: weights 1,2,3: 3 weight(s) for 2 expert(s)" in text
        _check_auth(s)
        assert _chat(s.port, "alice", s.key) == _peft_reference(world, [1, 0])
        # a soup named in the request: built on first use, served by an engine that replaces alice's
        assert _chat(s.port, "soup:kind=2,brief=1", s.key) == _peft_reference(world, [2, 1])
        state = s.state()
        soup_key = next(iter(state["soups"]))
        assert state["soups"] == {soup_key: "soup:kind=2,brief=1"} and set(state["engines"]) == {"base", soup_key}
        assert _chat(s.port, "soup:2,1", s.key, max_tokens=2) == _peft_reference(world, [2, 1], max_tokens=2)
        assert len(s.state()["soups"]) == 1  # the same soup (normalised), the same build
        status, data = _call(s.port, "/v1/chat/completions", {"model": "soup:nope=1", "messages": []}, s.key)
        assert status == 400 and "unknown expert 'nope'" in data["error"]["message"], data
        status, data = _call(s.port, "/v1/chat/completions", {"model": "zed", "messages": []}, s.key)
        assert status == 404 and "soup:" in data["error"]["message"], data
        _check_concurrent_adds(s, world)  # (their answers: LoRA mode's test; here each would be one more start)
        assert set(s.state()["engines"]) == {"base", soup_key}  # no room: nothing started ahead, nothing evicted
        status, data = _call(s.port, "/v1/load_lora_adapter", {
            "lora_name": "frank", "lora_path": str(s.home / "serve" / "adapters" / "x")}, s.key)
        assert status == 403, data
    _check_stopped(s)


@pytest.mark.slow
@pytest.mark.skipif(not _has_vllm(), reason="vLLM is not installed: run scripts/install_vllm.sh (make test does)")
def test_lora_mode_end_to_end(world, tmp_path):
    """LoRA mode (the default on a GPU): one engine, each soup an exact adapter; vLLM's runtime LoRA API
    through the front, limited to soups' cache."""
    users = "  alice: 1,0\n  bob: {kind: 1, brief: 3}\n  'bad name!': 1,1\n"
    with Server(world, tmp_path, users, "--mode", "lora") as s:
        text = s.log.read_text()
        assert "serving 2 user(s) (alice, bob)" in text and "max LoRA rank 16" in text and "bad name!" in text
        assert _chat(s.port, "alice", s.key) == _peft_reference(world, [1, 0])
        assert _chat(s.port, "bob", s.key) == _peft_reference(world, [1, 3])
        assert _chat(s.port, "soup:kind=2,brief=1", s.key) == _peft_reference(world, [2, 1])
        _check_auth(s)
        _check_concurrent_adds(s, world)
        assert _chat(s.port, "carol", s.key) == _peft_reference(world, [0, 1])
        r = _soups("serve", "add", "alice", "--weights", "0,1", "--port", str(s.port), env=s.env)
        assert r.returncode == 0 and "updated user alice (soup rank 4" in r.stdout, r.stderr
        assert _chat(s.port, "alice", s.key) == _peft_reference(world, [0, 1])
        # the runtime LoRA API: a soup adapter from the cache under a new name; unload with the key
        adapter = s.state()["users"]["bob"]["path"]
        assert _call(s.port, "/v1/load_lora_adapter", {"lora_name": "frank", "lora_path": adapter}, s.key)[0] == 200
        assert _chat(s.port, "frank", s.key, max_tokens=2) == _peft_reference(world, [1, 3], max_tokens=2)
        assert _call(s.port, "/v1/unload_lora_adapter", {"lora_name": "bob"}, s.key)[0] == 200
        assert _call(s.port, "/v1/chat/completions", {"model": "bob", "messages": []}, s.key)[0] == 404
        assert _chat(s.port, "frank", s.key, max_tokens=2) == _peft_reference(world, [1, 3], max_tokens=2)
    _check_stopped(s)
