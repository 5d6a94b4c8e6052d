"""What the tests share: tiny local models, one CLI runner, one fake OpenAI-compatible server.

Nothing comes from a hub: tiny models are random Llamas saved here, their tokenizer and chat
template copied from the prepared embedded default base (SmolLM2-135M-Instruct, see
soups/base_default.py). The fake server is a real HTTP server on 127.0.0.1 whose answers a
test decides (a function of the request), with switches for the failures a client must survive.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


# ----------------------------------------------------------------------------- tiny models
def copy_tokenizer(src: Path, dst: Path) -> None:
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)


def make_tiny_llama(
    out: Path,
    *,
    dtype: str = "float32",
    tie: bool = True,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    tokenizer_from: Path | None = None,
    vocab_size: int | None = None,
) -> Path:
    """Save a random Llama-architecture causal LM (safetensors) with a real tokenizer to `out`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if tokenizer_from is not None and vocab_size is None:
        from transformers import AutoTokenizer

        vocab_size = len(AutoTokenizer.from_pretrained(tokenizer_from))
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size or 512,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # non-trivial weights so merges are visible at bf16
        for p in model.parameters():
            p.normal_(0, 0.05)
    model = model.to(getattr(torch, dtype))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(out)
    if tokenizer_from is not None:
        copy_tokenizer(Path(tokenizer_from), out)
    return out


def make_lora_expert(
    base: Path,
    out: Path,
    *,
    r: int = 4,
    alpha: int = 8,
    targets: tuple[str, ...] = ("q_proj", "v_proj"),
    rslora: bool = False,
    seed: int = 1,
    rank_pattern: dict | None = None,
    alpha_pattern: dict | None = None,
    use_dora: bool = False,
    bias: str = "none",
    modules_to_save: list[str] | None = None,
    dimension: str | None = None,
) -> Path:
    """A PEFT LoRA adapter on `base` with random (non-zero) A and B, saved as safetensors.

    With `dimension`, an expert.json names the dimension it serves (as `soups train-expert` writes)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=list(targets),
        use_rslora=rslora,
        rank_pattern=rank_pattern or {},
        alpha_pattern=alpha_pattern or {},
        use_dora=use_dora,
        bias=bias,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
    )
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    peft_model.save_pretrained(out, safe_serialization=True)
    if dimension is not None:
        (Path(out) / "expert.json").write_text(json.dumps({"dimension": dimension}))
    return Path(out)


def sharpen(src: Path, out: Path, factor: float = 6.0) -> Path:
    """A copy of a tiny random model with larger weights, so its greedy output depends on the prompt."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(factor)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    copy_tokenizer(src, out)
    return Path(out)


def require_vllm() -> None:
    """Skip a test when vLLM is not installed, except under CI (`make test` installs it): there, fail."""
    import importlib.util
    import os

    import pytest

    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("CI"):
            raise AssertionError("vLLM is not installed; `make test` installs it (make install-vllm)")
        pytest.skip("vLLM not installed (make install-vllm)")


def set_norms(model_dir: Path, value: float = 1.0, dtype: str = "float32", only: str = "norm.weight") -> Path:
    """Set the RMSNorm weights (names ending in `only`) to `value`, in place.

    make_tiny_llama draws every weight from N(0, 0.05), which leaves the logits nearly flat; unit norms make
    greedy decoding well defined (top-2 gaps far above rounding noise); a final norm of 4 makes the
    next-token distribution peaked enough for a policy gradient to move it in a few steps."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(only):
                p.fill_(value)
    model.save_pretrained(model_dir)
    return Path(model_dir)


def dimension(name: str = "concise", statement: str = "Generate a response that is concise.", **reward):
    """A Dimension (soups.dimensions) with the given `reward:` block, built in memory (no file)."""
    from soups.dimensions import Dimension

    return Dimension(name=name, description="A test dimension.", statement=statement, reward=reward)


# ----------------------------------------------------------------------------- the CLI
@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args, input: str = "") -> CliResult:
    """Run `soups ARGS...` in this process (as the console script does); its exit code, stdout and stderr.

    `input` is what the command reads on stdin."""
    from soups.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(input)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = old_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_one_line_error(res: CliResult, *words: str) -> str:
    """Exit code 2, exactly one `error: ...` line on stderr naming every word (case-insensitive), no traceback."""
    assert res.code == 2, (res.code, res.err)
    assert len(res.err_lines) == 1 and res.err_lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    for w in words:
        assert w.lower() in res.err.lower(), (w, res.err)
    return res.err_lines[0]


# ----------------------------------------------------------------------------- a fake OpenAI-compatible server
def section(text: str, name: str) -> str:
    """The text under `[name]` in a judge prompt (soups.rewards.judge's POINTWISE / PAIRWISE layout)."""
    m = re.search(rf"\[{re.escape(name)}\]\n(.*?)(?:\n\n\[|\n\n(?:On a scale|Which response)|$)", text, re.DOTALL)
    return m.group(1) if m else ""


def brevity_score(completion: str) -> int:
    """The fake judge's pointwise rule: fewer words, higher score (10 for <= 2 words, 1 for >= 29)."""
    return max(1, min(10, 10 - (len(completion.split()) - 2) // 3))


def brevity_judge(body: dict) -> str:
    """A judge that prefers fewer words: pairwise "A" / "B" / "TIE", pointwise "Score: N/10" (brevity_score)."""
    user = body["messages"][-1]["content"]
    if "[Response A]" in user:
        a, b = len(section(user, "Response A").split()), len(section(user, "Response B").split())
        return "A" if a < b else "B" if b < a else "TIE"
    return f"Score: {brevity_score(section(user, 'Response'))}/10"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):  # noqa: N802
        srv: FakeOpenAI = self.server.owner
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            n = len(srv.requests)
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": "not found"})
        if srv.key and self.headers.get("Authorization") != f"Bearer {srv.key}":
            return self.reply(401, {"error": "bad key"})
        if n <= srv.fail_first:
            return self.reply(503, {"error": "busy"})
        if n <= srv.garbage_first:  # a 200 that is not a chat completion (a proxy's HTML page, a crash)
            return self.reply(200, {"html": "<h1>Gateway</h1>"})
        if n <= srv.drop_first:  # close the connection without answering
            self.close_connection = True
            return
        if srv.delay:
            time.sleep(srv.delay)
        content = srv.answer(body)
        self.reply(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

    def reply(self, code, payload):
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FakeOpenAI:
    """`POST /v1/chat/completions` on 127.0.0.1, answering `answer(request body) -> content`; a context manager.

    Failure switches count requests from 1: the first `fail_first` get HTTP 503, up to `garbage_first` a 200
    that is no chat completion, up to `drop_first` a closed connection; `delay` seconds before each answer;
    with `key`, requests without `Authorization: Bearer <key>` get 401. `requests` records every request."""

    def __init__(self, answer: Callable[[dict], str] = brevity_judge, *, fail_first: int = 0, garbage_first: int = 0,
                 drop_first: int = 0, delay: float = 0.0, key: str | None = None) -> None:
        self.answer, self.key, self.delay = answer, key, delay
        self.fail_first, self.garbage_first, self.drop_first = fail_first, garbage_first, drop_first
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.owner = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def bodies(self) -> list[dict]:
        return [r["body"] for r in self.requests]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------- files
def assert_png(path: Path, min_height: int = 200, min_width: int = 400) -> None:
    """`path` is a PNG image (signature and decodable) of at least the given size."""
    from matplotlib.image import imread

    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > min_height and img.shape[1] > min_width


def read_jsonl(path: Path) -> list[dict]:
    """The objects of a JSON-lines file (a plain reference reader, independent of soups.io)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
