"""What an evaluation runs: prompt sets, experts and their dimensions, soups (soups/recipe.py) built on the
fly, and `soups generate` (one system's responses to a prompt set, as JSONL).

Soups for evaluation are built through the merge library as adapters (`format="adapter"`): a
few megabytes, exact (the `exact` method is lossless as an adapter), and served unmerged by PEFT
or vLLM on top of the one base.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from soups.errors import ConfigError
from soups.recipe import Soup

log = logging.getLogger(__name__)


def load_prompt_set(spec: str | Path, limit: int | None = None) -> list[str]:
    """Prompts of a shipped split (`heldout`, `train`) or a .jsonl/.txt file (soups.prompts), first `limit` only."""
    from soups.prompts import load_prompts

    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: must be >= 1")
    prompts = load_prompts(spec)
    return prompts[:limit] if limit is not None else prompts


def expert_path(spec: str | Path) -> Path:
    """An expert given by directory or by name under experts/."""
    from soups.config import experts_dir
    from soups.io.adapter import resolve_expert

    return resolve_expert(spec, experts_dir())


def expert_dimension(spec: str | Path) -> str:
    """The dimension an expert serves: `expert.json`'s `dimension`, else the expert's name."""
    from soups.errors import AdapterError
    from soups.io.files import read_json

    path = expert_path(spec)
    meta = path / "expert.json"
    if meta.exists():
        dim = read_json(meta, None, AdapterError, "fix it or delete it (it is optional)").get("dimension")
        if isinstance(dim, dict):
            dim = dim.get("name")
        if dim:
            return str(dim)
    return path.name


def check_model_dir(path: Path, flag: str = "--soup") -> Path:
    """A soup, expert or model directory that generation can load (safetensors only), checked without loading it."""
    from soups.errors import CheckpointError
    from soups.eval.generate import resolve_model
    from soups.io.adapter import CONFIG_NAME, load_adapter
    from soups.io.checkpoint import read_index
    from soups.io.files import input_dir, read_json

    path = input_dir(path, flag, CheckpointError, "give a soup, expert or model directory")
    if (path / "soup.json").exists():
        read_json(path / "soup.json", flag, CheckpointError, "re-create the soup with `soups merge`")
    if (path / CONFIG_NAME).exists():
        load_adapter(path)  # config, expert.json and weights' headers; pickled weights are refused
    elif (path / "config.json").exists():
        read_json(path / "config.json", flag, CheckpointError, "re-save the model")
        read_index(path)  # safetensors only: a pickled model is refused
    else:
        raise CheckpointError(f"{flag} {path}: neither a model (config.json) nor a LoRA adapter "
                              "(adapter_config.json); give a soup, expert or model directory")
    resolve_model(path)  # and its base resolves
    return path


def build_soup(soup: Soup, out: Path, *, force: bool = False) -> Path:
    """`soup` as an adapter at `out` (the merge library, format=adapter)."""
    from soups.merge.engine import merge

    merge(soup.model_copy(update={"format": "adapter"}), Path(out), force=force)
    return Path(out)


def generate_responses(prompts: str | Path, out: Path, *, soup: Path | None = None,
                       experts: Sequence[str] | None = None, weights: str | Sequence[float] | None = None,
                       base: str | Path = "default", method: str = "exact", params: dict | None = None,
                       system: str | None = None, engine: str = "transformers", max_new_tokens: int = 128,
                       batch_size: int = 8, greedy: bool = True, seed: int = 0, dtype: str | None = None,
                       limit: int | None = None, statements: bool = False, force: bool = False,
                       progress: bool = True) -> Path:
    """`soups generate`: answer a prompt set with a soup directory, or a soup merged from experts and weights.

    With `statements`, the declared dimensions' preference statements (soup.json's experts with weight > 0)
    are appended to every user message, as the paper's eval.py asks its soups (soups.prompts.with_statements)."""
    import tempfile

    from soups.eval.generate import generate_chat
    from soups.io.jsonl import check_file_output, write_jsonl
    from soups.merge import provenance
    from soups.prompts import with_statements

    if engine not in ("transformers", "vllm"):
        raise ConfigError(f"--engine {engine}: unknown; choose transformers or vllm")
    if (soup is None) == (weights is None) or (soup is not None and experts):
        raise ConfigError("give either --soup DIR or --weights (with --experts or the default experts), not both")
    out = Path(out)
    check_file_output(out, force)
    if soup is not None:
        check_model_dir(Path(soup))
    texts = load_prompt_set(prompts, limit)
    with tempfile.TemporaryDirectory(prefix="soups-generate-") as tmp:
        model = Path(soup) if soup is not None else None
        if model is None:
            spec = Soup.build(experts, weights, base=base, method=method, **(params or {}))
            model = build_soup(spec, Path(tmp) / "soup")
        said = provenance.statements(model) if statements else []
        asked = [with_statements(p, said) for p in texts]
        settings = dict(model=str(soup) if soup is not None else None, experts=list(experts or []) or None,
                        weights=weights if isinstance(weights, str) or weights is None else list(weights),
                        method=None if soup is not None else method, system=system, statements=said or None,
                        engine=engine, max_new_tokens=max_new_tokens, greedy=greedy, seed=seed)
        if engine == "vllm":  # the adapter swapped into the engine's weights (3.1x vLLM's LoRA path on CPU)
            from soups.eval.vllm_engine import VllmGenerator

            gen = VllmGenerator(model, dtype=dtype, seed=seed)
            try:
                responses = gen.generate(asked, system=system, max_new_tokens=max_new_tokens, greedy=greedy,
                                         seed=seed, progress=progress)
            finally:
                gen.close()
        else:
            responses = generate_chat(model, asked, system=system, max_new_tokens=max_new_tokens,
                                      batch_size=batch_size, greedy=greedy, seed=seed, dtype=dtype, progress=progress)
    rows = [{"prompt": p, "response": r, **settings} for p, r in zip(texts, responses)]
    return write_jsonl(out, rows, force=force)
