"""`soups serve`: users file, cached soup adapters, and the real vLLM server end to end on 127.0.0.1.

The end-to-end test starts `soups serve` with two users (and two bad entries, which are skipped),
checks each user's chat completion token for token against transformers + PEFT running the same
soup built independently (PEFT's `cat` weighted adapter), adds a third user and updates one at run
time with `soups serve add`, checks a bad `serve add` fails cleanly while the server keeps serving,
then stops it with SIGINT and checks that no process of it is left.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from soups.errors import ConfigError, DataError
from tests.helpers import make_lora_expert, make_tiny_llama, set_norms

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def world(tmp_path_factory, default_base):
    root = tmp_path_factory.mktemp("serve")
    base = make_tiny_llama(root / "base", dtype="float32", tie=True, hidden=128, tokenizer_from=default_base)
    set_norms(base)
    e1 = make_lora_expert(base, root / "experts" / "kind", r=8, alpha=16, targets=TARGETS, seed=1)
    e2 = make_lora_expert(base, root / "experts" / "brief", r=4, alpha=4, targets=("q_proj", "v_proj"), seed=2)
    return {"root": root, "base": base, "experts": [e1, e2]}


def _users_yaml(path: Path, experts, users: str) -> Path:
    path.write_text(f"experts: [{experts[0]}, {experts[1]}]\nusers:\n{users}")
    return path


# ---- users file and soup cache (no vLLM) -------------------------------------------------------------------


def test_users_file_collects_bad_entries_and_keeps_good_ones(world, tmp_path):
    from soups.serve.users import load_users

    f = _users_yaml(
        tmp_path / "u.yaml",
        world["experts"],
        "  alice: 1,0\n  bob: {kind: 1, brief: 3}\n  carol: [0, 2]\n  eve: 1,2,3\n"
        "  'bad name!': 1,1\n  mallory: {nope: 1}\n  base: 1,1\n",
    )
    users = load_users(f)
    assert list(users.users) == ["alice", "bob", "carol"]
    kind, brief = (str(e) for e in world["experts"])
    assert users.users["alice"].experts == {kind: 1.0, brief: 0.0}
    assert users.users["bob"].experts == {kind: 1.0, brief: 3.0}
    assert users.users["carol"].experts == {kind: 0.0, brief: 2.0}
    assert len(users.errors) == 4 and all(e.startswith(f"{f}: user ") for e in users.errors), users.errors
    eve, bad, mallory, base = users.errors
    assert "user eve: weights 1,2,3: 3 weight(s) for 2 expert(s)" in eve
    assert "'bad name!'" in bad and "unknown expert 'nope'" in mallory and "'base'" in base
    with pytest.raises(DataError, match="users"):
        load_users(_users_yaml(tmp_path / "v.yaml", world["experts"], "  - alice\n"))
    (tmp_path / "w.yaml").write_text("users: {alice: [1, 0\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_users(tmp_path / "w.yaml")
    with pytest.raises(DataError, match="not found"):
        load_users(tmp_path / "missing.yaml")


def test_soup_adapters_are_cached_by_content(world, tmp_path, monkeypatch):
    from soups.errors import WeightsError
    from soups.serve.builds import build_adapter, max_rank_for_experts
    from soups.serve.users import user_soup

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    exp = [str(e) for e in world["experts"]]
    a, ra = build_adapter(user_soup("a", "1,3", exp), world["base"])
    b, rb = build_adapter(user_soup("b", "2,6", exp), world["base"])  # same soup average
    c, rc = build_adapter(user_soup("c", {str(world["experts"][1].name): 1}, exp), world["base"])
    assert a == b and a != c and a.parent == tmp_path / "home" / "serve" / "adapters"
    assert (ra, rc) == (12, 4) and max_rank_for_experts(exp) == 16
    stamp = (a / "adapter_model.safetensors").stat().st_mtime_ns
    build_adapter(user_soup("a2", [1, 3], exp), world["base"])
    assert (a / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    with pytest.raises(WeightsError, match="user eve: weights 1,2,3: 3 weight"):
        user_soup("eve", "1,2,3", exp)


def test_serve_add_without_server_is_a_clear_error(tmp_path, monkeypatch):
    from soups.serve import add_user

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no `soups serve` running"):
        add_user("dave", "1,0", port=1)


# ---- end to end: the real server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chat(port: int, model: str, prompt: str, max_tokens: int = 8) -> list[int]:
    """A chat completion, greedy; the answer's token ids (vLLM's `return_tokens_as_token_ids`)."""
    import urllib.request

    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 0,
        "return_tokens_as_token_ids": True,
        "ignore_eos": True,
    }
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        data = json.loads(resp.read())
    return [int(t["token"].split(":", 1)[1]) for t in data["choices"][0]["logprobs"]["content"]]


def _peft_reference(world, weights: list[float], prompt: str, max_tokens: int = 8) -> list[int]:
    """Independent reference: PEFT's `cat` weighted adapter = sum_i w_i s_i B_i A_i, greedy in transformers."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    w = [x / sum(weights) for x in weights]
    model = AutoModelForCausalLM.from_pretrained(world["base"], dtype=torch.float32)
    model = PeftModel.from_pretrained(model, world["experts"][0], adapter_name="e0")
    model.load_adapter(world["experts"][1], adapter_name="e1")
    kept = [(f"e{i}", x) for i, x in enumerate(w) if x != 0]
    model.add_weighted_adapter([n for n, _ in kept], [x for _, x in kept], "soup", combination_type="cat")
    model.set_adapter("soup")
    tok = AutoTokenizer.from_pretrained(world["base"])
    ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
    ids = torch.tensor([list(ids["input_ids"] if hasattr(ids, "keys") else ids)])
    out = model.generate(
        input_ids=ids, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False, pad_token_id=0
    )
    return out[0, ids.shape[1] :].tolist()


def _soups(*args, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "soups", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _has_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None or bool(os.environ.get("CI"))  # CI: fail, never skip


@pytest.mark.slow
@pytest.mark.skipif(not _has_vllm(), reason="vLLM is not installed: run scripts/install_vllm.sh (make test does)")
def test_serve_end_to_end(world, tmp_path):
    port = _free_port()
    env = dict(os.environ, SOUPS_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", VLLM_CPU_OMP_THREADS_BIND="nobind")
    users = _users_yaml(
        tmp_path / "users.yaml",
        world["experts"],
        "  alice: 1,0\n  bob: {kind: 1, brief: 3}\n  eve: 1,2,3\n  'bad name!': 1,1\n",
    )
    log = tmp_path / "serve.err"
    cmd = [
        sys.executable,
        "-m",
        "soups",
        "serve",
        "--base",
        str(world["base"]),
        "--users",
        str(users),
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--kv-cache-gb",
        "0.0625",
        "--max-model-len",
        "512",
    ]
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    state_file = tmp_path / "home" / "serve" / f"127.0.0.1-{port}.json"
    try:
        deadline = time.monotonic() + 600
        while "serving" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        text = log.read_text()
        assert "serving 2 user(s) (alice, bob)" in text, text
        assert "user eve: weights 1,2,3: 3 weight(s) for 2 expert(s)" in text and "skipped: " in text
        assert "bad name!" in text and "max LoRA rank 16" in text
        state = json.loads(state_file.read_text())
        prompt = "What is a good soup?"
        assert _chat(port, "alice", prompt) == _peft_reference(world, [1, 0], prompt)
        assert _chat(port, "bob", prompt) == _peft_reference(world, [1, 3], prompt)
        # a third user at run time, then an update of alice's soup
        r = _soups("serve", "add", "carol", "--weights", "0,1", "--port", str(port), env=env)
        assert r.returncode == 0 and "added user carol (soup rank 4" in r.stdout, r.stderr
        carol = _peft_reference(world, [0, 1], prompt)
        assert _chat(port, "carol", prompt) == carol
        r = _soups("serve", "add", "alice", "--weights", "0,1", "--port", str(port), env=env)
        assert r.returncode == 0 and "updated user alice" in r.stdout, r.stderr
        assert _chat(port, "alice", prompt) == carol
        # bad input: a clear one-line error, exit 2, and the server keeps serving the others
        r = _soups("serve", "add", "dave", "--weights", "1", "--port", str(port), env=env)
        assert r.returncode == 2 and "1 weight(s) for 2 expert(s)" in r.stderr, r.stderr
        assert _chat(port, "bob", prompt, max_tokens=2) == _peft_reference(world, [1, 3], prompt, max_tokens=2)
        assert sorted(json.loads(state_file.read_text())["users"]) == ["alice", "bob", "carol"]
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    assert rc == 0, log.read_text()[-2000:]
    assert not _group_alive(state["server_pid"])  # vLLM's server, engine core and workers are all gone
    assert not state_file.exists()
