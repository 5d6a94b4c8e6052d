"""vLLM process control (soups/vllm_server.py) without vLLM: the rank table, the server command line,
and a server that dies at start-up raising ServerError with its log path (a real subprocess)."""

from __future__ import annotations

import sys

import pytest

from soups.errors import ServerError
from soups.vllm_server import VllmServer, max_lora_rank_for, server_command
from tests.helpers import run_cli


def test_rank_table():
    assert [max_lora_rank_for(r) for r in (1, 2, 8, 9, 300, 320, 321, 512, 513)] == \
        [1, 8, 8, 16, 320, 320, 512, 512, None]


def test_server_command(tmp_path):
    cmd = server_command(tmp_path, host="127.0.0.1", port=8123, max_lora_rank=16, max_loras=2, kv_cache_gb=0.5)
    assert cmd[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"] and "--enable-lora" in cmd
    assert cmd[cmd.index("--max-lora-rank") + 1] == "16" and cmd[cmd.index("--port") + 1] == "8123"
    merged = server_command(tmp_path, host="127.0.0.1", port=8123, max_lora_rank=None, served_name="abc")
    assert "--enable-lora" not in merged and merged[merged.index("--served-model-name") + 1] == "abc"


def test_cpu_servers_get_unpinned_threads(monkeypatch):
    """A pinned OpenMP thread per core waits for busy cores on a shared machine (soups/vllm_server.py)."""
    from soups.vllm_server import cpu_thread_env, on_gpu

    if on_gpu():
        assert cpu_thread_env(2) == {}
        return
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert cpu_thread_env(2) == {"OMP_NUM_THREADS": "2", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
                                 "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-1")  # the user's own binding is kept (and its worker)
    assert cpu_thread_env(1) == {"OMP_NUM_THREADS": "1", "VLLM_CPU_OMP_THREADS_BIND": "0-1"}


def test_a_server_that_dies_raises_server_error_naming_its_log(tmp_path):
    log = tmp_path / "logs" / "vllm.log"
    dying = [sys.executable, "-c", "import sys; print('loading...'); print('CUDA out of memory', file=sys.stderr); "
             "sys.exit(3)"]
    server = VllmServer(dying, "http://127.0.0.1:9", log)
    with pytest.raises(ServerError) as e:
        server.start(timeout=60)
    msg = str(e.value)
    assert msg == f"vLLM server exited with code 3 at start-up (CUDA out of memory); see its log: {log}"
    assert "loading..." in log.read_text() and e.value.exit_code == 1


def test_an_unreachable_server_is_one_line_exit_1(tmp_path, monkeypatch, tiny_base):
    """`soups serve add` to a server that is gone (its state file left behind): ServerError, one line, exit 1."""
    import json
    import os
    import socket

    from soups.serve.server import state_path
    from tests.helpers import make_lora_expert

    with socket.socket() as s:  # a free port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    expert = make_lora_expert(tiny_base, tmp_path / "e")
    monkeypatch.setenv("SOUPS_HOME", str(tmp_path / "home"))
    path = state_path("127.0.0.1", port)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid(), "base": str(tiny_base),
                                "experts": [str(expert)], "max_lora_rank": 8, "users": {}}))
    res = run_cli("serve", "add", "dave", "--weights", "1", "--port", port)
    assert res.code == 1 and len(res.err_lines) == 1, res.err
    assert res.err_lines[0].startswith(f"error: soups serve at http://127.0.0.1:{port} unreachable")
