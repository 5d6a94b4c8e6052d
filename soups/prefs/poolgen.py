"""Build a candidate pool from real soups: merge experts per weight vector, generate, collect.

`soup_generator` turns trained experts into the `generate(prompts, weights)` callable that
soups.prefs.pool.build_pool takes: each weight vector is merged into an adapter soup
(soups.merge.engine.merge, format="adapter") and answers the prompts (soups.eval.generate).
Empty weights mean the base model itself. The default soups are the single experts, the most
different responses the experts can give, plus the base.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from soups.errors import AdapterError

log = logging.getLogger(__name__)


def find_experts(root: str | Path, names: Sequence[str] | None = None) -> dict[str, Path]:
    """Expert adapters under `root` (subfolders with adapter_config.json), optionally only `names`."""
    root = Path(root)
    found = {p.parent.name: p.parent for p in sorted(root.glob("*/adapter_config.json"))}
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise AdapterError(
                f"--experts-dir {root}: no trained expert for {', '.join(missing)} (expected {root}/<name>/"
                "adapter_config.json); train them with `soups train-expert` or pass --dims"
            )
        found = {n: found[n] for n in names}
    if len(found) < 1:
        raise AdapterError(f"--experts-dir {root}: no expert adapters found; train experts (`soups train-expert`)")
    return found


def default_soups(experts: Mapping[str, Path], with_base: bool = True) -> dict[str, dict[str, float]]:
    """One soup per single expert (weight 1), plus the base model (empty weights)."""
    soups = {name: {name: 1.0} for name in experts}
    if with_base:
        soups["base"] = {}
    return soups


def soup_generator(
    experts: Mapping[str, Path],
    workdir: str | Path,
    base: str | Path = "default",
    max_new_tokens: int = 160,
    batch_size: int = 8,
    progress: bool = True,
    engine: str = "auto",
) -> Callable[[list[str], dict[str, float]], list[str]]:
    """A `generate(prompts, weights)` that merges `experts` by `weights` into an adapter soup and generates.

    One generator answers for every soup (`engine`: auto = vLLM when installed, each soup swapped into its
    weights; soups.eval.generate.GeneratorSession), loaded on the first call; `generate.close()` frees it."""
    from soups.base import resolve_base
    from soups.eval.generate import GeneratorSession, resolve_engine
    from soups.merge.engine import merge

    workdir = Path(workdir)
    engine = resolve_engine(engine)  # a missing vLLM fails here, before any merge
    sessions: list[GeneratorSession] = []  # opened on the first call

    def generate(prompts: list[str], weights: dict[str, float]) -> list[str]:
        used = {k: float(v) for k, v in weights.items() if v}
        unknown = [k for k in used if k not in experts]
        if unknown:
            raise AdapterError(f"soup weights name {', '.join(unknown)}, not among the experts {', '.join(experts)}")
        adapter = None
        if used:
            adapter = workdir / ("soup-" + "-".join(f"{k}{v:g}" for k, v in used.items()))
            merge(experts=[str(experts[k]) for k in used], weights=list(used.values()), base=base, format="adapter",
                  out=adapter, force=True)
        log.info("generating %d responses with %s (%s)", len(prompts), adapter.name if adapter else "the base", engine)
        if not sessions:
            sessions.append(GeneratorSession(resolve_base(base), engine))
        gen = sessions[0].get()
        gen.set_adapter(adapter)
        return gen.generate(list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                            label=adapter.name if adapter else "base")

    generate.close = lambda: [s.close() for s in sessions]  # type: ignore[attr-defined]
    return generate
