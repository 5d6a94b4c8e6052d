"""Prompt sets: the shipped training and held-out instructions, or any user file.

`load_prompts("train")` / `load_prompts("heldout")` read the sets shipped in
`soups/data/prompts/` (written for this project: ~300 training and ~100 held-out instructions,
disjoint, across science, history, cooking, technology, health, advice, how-to and creative
tasks). Any other value is a path:
- `.jsonl`: one JSON object a line, `{"prompt": "..."}`; Alpaca-style `{"instruction", "input"}`
  and chat-style `{"prompt": [{"role": "user", "content": ...}]}` lines are accepted too;
- `.txt`: one prompt a line.
Blank lines are skipped; a malformed line raises DataError naming the file and line.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from soups.errors import DataError

log = logging.getLogger(__name__)

PROMPTS_DIR = Path(__file__).resolve().parent / "data" / "prompts"
SPLITS = ("train", "heldout")


def prompts_path(split: str) -> Path:
    """The shipped file of a split (`train` or `heldout`)."""
    return PROMPTS_DIR / f"{split}.jsonl"


def _prompt_of(obj: Any, where: str) -> str:
    if isinstance(obj, str):
        text = obj
    elif isinstance(obj, dict) and "prompt" in obj:
        text = obj["prompt"]
        if isinstance(text, list):  # chat messages: the last user turn
            users = [m.get("content") for m in text if isinstance(m, dict) and m.get("role") == "user"]
            text = users[-1] if users else None
    elif isinstance(obj, dict) and "instruction" in obj:
        text = obj["instruction"]
        if isinstance(text, str) and obj.get("input"):
            text = f"{text}\n\n{obj['input']}"
    else:
        raise DataError(f'{where}: expected an object with a "prompt" field, like {{"prompt": "Explain tides."}}')
    if not isinstance(text, str):
        raise DataError(f'{where}: "prompt" must be a string, got {type(text).__name__}')
    if not text.strip():
        raise DataError(f'{where}: empty "prompt"; remove the line or write the instruction')
    return text.strip()


def load_prompts(source: str | Path = "train") -> list[str]:
    """Prompts of a shipped split (`train`, `heldout`) or a `.jsonl` / `.txt` file (see module docstring)."""
    from soups.io.jsonl import read_jsonl

    path = prompts_path(str(source)) if str(source) in SPLITS else Path(source).expanduser()
    if not path.is_file():
        raise DataError(f'prompts {source}: no such file; give train, heldout or a .jsonl file of {{"prompt": ...}}')
    if path.suffix == ".txt":
        try:
            prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    else:
        prompts = [_prompt_of(obj, f"{path}:{no}") for no, obj in read_jsonl(path, "prompts", objects=False)]
    if not prompts:
        raise DataError(f"{path}: no prompts; add lines like {{\"prompt\": \"Explain tides.\"}}")
    log.debug("loaded %d prompts from %s", len(prompts), path)
    return prompts


def with_statements(prompt: str, statements: list[str] | tuple[str, ...]) -> str:
    """The user message with preference statements appended, as the paper's eval.py does
    (`"{instruction} {statement 1} {statement 2}"`); the prompt itself when there are none."""
    extra = " ".join(s.strip() for s in statements if s and s.strip())
    return f"{prompt.rstrip()} {extra}" if extra else prompt
