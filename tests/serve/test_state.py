"""The server's state and key files (soups/serve/state.py), its options, and bad `soups serve` input: one line,
exit 2, no traceback, before anything is built or started."""

from __future__ import annotations

import json
import os
import stat

import pytest

from soups.errors import ConfigError
from tests.helpers import assert_one_line_error, run_cli
from tests.serve.conftest import users_yaml


def test_the_key_file_is_owner_only_from_the_start(tmp_path, monkeypatch):
    from soups.serve.state import client_key, key_path, new_key, write_key

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOUPS_API_KEY", raising=False)
    key = new_key()
    path = write_key(key_path("127.0.0.1", 8000), key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text().strip() == key
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert key != new_key() and len(key) > 30
    state = {"key_file": str(path)}
    assert client_key(state) == key and client_key(state, "given-key") == "given-key"
    monkeypatch.setenv("SOUPS_API_KEY", "from-env-key")
    assert client_key(state) == "from-env-key" and client_key({}) == "from-env-key"
    monkeypatch.delenv("SOUPS_API_KEY")
    assert client_key({}) is None and client_key({"key_file": str(tmp_path / "gone")}) is None


def test_loopback_and_the_warning_for_an_open_server():
    from soups.serve.state import exposure_warning, is_loopback

    assert all(map(is_loopback, ("127.0.0.1", "127.1.2.3", "::1", "localhost")))
    assert not any(map(is_loopback, ("0.0.0.0", "::", "10.0.0.5", "example.com")))
    assert exposure_warning("127.0.0.1", None) is None and exposure_warning("0.0.0.0", "soups-key") is None
    assert "without an API key" in exposure_warning("0.0.0.0", None)


def test_options_are_checked_together_and_the_mode_follows_the_device():
    from soups.serve.server import ServeOptions, pick_mode
    from soups.vllm_server import on_gpu

    with pytest.raises(ConfigError) as e:
        ServeOptions(port=0, mode="gpu", max_users=0, kv_cache_gb=float("nan"), threads=0).check()
    for flag in ("--port 0", "--mode gpu", "--max-users 0", "--kv-cache-gb nan", "--threads 0"):
        assert flag in str(e.value)
    ServeOptions().check()
    assert pick_mode("auto") == ("lora" if on_gpu() else "merged") and pick_mode("lora") == "lora"


def test_cpu_threads_follow_the_request_then_the_environment(monkeypatch):
    from soups.vllm_server import cpu_threads

    monkeypatch.setenv("SOUPS_THREADS", "3")
    assert cpu_threads(2) == 2 and cpu_threads() == 3
    monkeypatch.delenv("SOUPS_THREADS")
    assert 1 <= cpu_threads() <= max(1, (os.cpu_count() or 1) // 2)


@pytest.fixture(scope="module")
def bad(world, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    (root / "loop.yaml").symlink_to("loop.yaml")
    (root / "dir.yaml").mkdir()
    users_yaml(root / "users.yaml", world["experts"], "  alice: 1,0\n")
    return {"root": root, "base": world["base"], "users": root / "users.yaml"}


SERVE_ROWS = [
    ("port-range", "serve --users {users} --base {base} --port 99999", ["--port", "99999"]),
    ("kv-nan", "serve --users {users} --base {base} --kv-cache-gb nan", ["--kv-cache-gb", "nan"]),
    ("kv-negative", "serve --users {users} --base {base} --kv-cache-gb -1", ["--kv-cache-gb", "-1"]),
    ("mode", "serve --users {users} --base {base} --mode gpu", ["--mode", "gpu"]),
    ("max-users", "serve --users {users} --base {base} --max-users 0", ["--max-users"]),
    ("threads", "serve --users {users} --base {base} --threads 0", ["--threads"]),
    ("short-key", "serve --users {users} --base {base} --api-key abc", ["--api-key"]),
    ("no-users", "serve --base {base}", ["--users"]),
    ("users-missing", "serve --users {root}/nope.yaml --base {base}", ["--users", "nope.yaml", "not found"]),
    ("users-dir", "serve --users {root}/dir.yaml --base {base}", ["--users", "dir.yaml"]),
    ("users-binary", "serve --users {root}/bin.yaml --base {base}", ["--users", "bin.yaml", "not a text file"]),
    ("users-loop", "serve --users {root}/loop.yaml --base {base}", ["--users", "loop.yaml"]),
    ("add-no-server", "serve add dave --weights 1,0 --port 1", ["--port 1", "no `soups serve` running"]),
    ("add-both", "serve add dave --weights 1,0 --recipe {root}/bin.yaml --port {port}", ["exactly one"]),
    ("add-count", "serve add dave --weights 1,2,3 --port {port}", ["dave", "3 weight(s) for 2 expert(s)"]),
    ("add-name", "serve add 'bad name!' --weights 1,0 --port {port}", ["bad name!", "not a valid user name"]),
    ("add-recipe-binary", "serve add dave --recipe {root}/bin.yaml --port {port}", ["bin.yaml"]),
    ("add-recipe-dir", "serve add dave --recipe {root}/dir.yaml --port {port}", ["dir.yaml"]),
]


@pytest.mark.parametrize("argv,words", [r[1:] for r in SERVE_ROWS], ids=[r[0] for r in SERVE_ROWS])
def test_bad_serve_input_is_one_line_and_exit_2(bad, world, tmp_path, monkeypatch, argv, words):
    """`serve add` rows run against a state file naming this (live) process, so only the input is at fault."""
    import shlex

    from soups.serve.state import state_path

    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    state = state_path("127.0.0.1", 8123)
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": os.getpid(), "experts": [
        str(e) for e in world["experts"]], "users": {}}))
    args = [a.format(**bad, port=8123) for a in shlex.split(argv)]
    assert_one_line_error(run_cli(*args), *words)
    assert sorted(p.name for p in state.parent.iterdir()) == [state.name]  # nothing built, no key written
