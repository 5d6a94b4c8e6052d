"""`soups eval`: does a soup deliver each declared dimension, compared with the baselines?

Systems, all answering the same prompts with the same decoding:
- `soup`: the experts merged by the user's weights (method `exact` by default), answering the prompt alone;
- `soup+statements`: the same soup with the declared dimensions' preference statements appended to the
  user message, as the paper's eval.py asks its soups (soups.prompts.with_statements);
- `linear`: the paper's parameter averaging of the same experts (method `linear`), when it applies;
- `base`: the base model alone;
- `prompted`: the base with the same statements appended to the user message (the paper's prompting
  baseline);
- `expert:<name>`: each declared expert alone.
The statements come from the dimensions the built soup declares (its soup.json, weight > 0). Each
declared dimension is scored by its held-out scorer (soups.eval.scorers) and, with a judge, pairwise
in the paper's protocol (soups.eval.judge). Reported: mean score per system with a bootstrap 95%
interval, and the win rates, with their intervals, of the soup (`win_rates`) and of the soup with
statements (`win_rates_with_statements`) against every other system, as JSON, CSV and tables.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from soups.errors import ConfigError, SoupsError
from soups.eval.cache import ResponseCache, default_cache_dir
from soups.eval.generate import GeneratorSession, generation_dtype, resolve_engine
from soups.eval.report import WIN_TABLES  # report key -> whose win rates: the soup, the soup with statements
from soups.eval.scorers import scorer_for
from soups.recipe import Soup
from soups.stats import bootstrap_ci, win_rate

log = logging.getLogger(__name__)

BASELINES = ("statements", "linear", "base", "prompted", "experts")


@dataclass
class EvalConfig:
    """Everything `soups eval` needs (the CLI builds it from flags)."""

    weights: str | list[float]
    out: Path
    experts: list[str] | None = None
    base: str | Path = "default"
    method: str = "exact"
    params: dict = field(default_factory=dict)  # the method's parameters, e.g. {"rank": 16} for svd
    prompts: str | Path = "heldout"
    limit: int | None = None
    baselines: tuple[str, ...] = BASELINES
    max_new_tokens: int = 128
    batch_size: int = 8
    seed: int = 0
    engine: str = "auto"  # auto (vLLM when installed), vllm or transformers (soups.eval.generate.resolve_engine)
    dtype: str | None = None
    scorers: dict[str, str] = field(default_factory=dict)
    judge_url: str | None = None
    judge_model: str | None = None
    cache: Path | None | str = "default"
    force: bool = False
    progress: bool = True


@dataclass
class System:
    name: str
    label: str
    adapter: Path | None = None  # None: the base alone
    system_prompt: str | None = None
    statements: tuple[str, ...] = ()  # appended to every user message (soups.prompts.with_statements)


def _declared(cfg: EvalConfig) -> tuple[Soup, list[tuple[str, str]]]:
    """The soup and its declared (expert, dimension) pairs (non-zero weight)."""
    from soups.eval.systems import expert_dimension

    soup = Soup.build(cfg.experts, cfg.weights, base=cfg.base, method=cfg.method, **cfg.params)
    return soup, [(n, expert_dimension(n)) for n in soup.declared()]


def _systems(cfg: EvalConfig, soup: Soup, declared, soups_dir: Path, skipped: dict) -> list[System]:
    """Build the soup, the baselines' adapters (merge library, adapter format) and list every system."""
    from soups.eval.systems import build_soup
    from soups.merge.provenance import statements

    built = build_soup(soup, soups_dir / "soup")
    said = tuple(statements(built))  # the dimensions the soup declares, from its soup.json
    systems = [System("soup", f"soup ({soup.method})", built)]
    if "statements" in cfg.baselines:
        systems.append(System("soup+statements", f"soup ({soup.method}) + preference statements", built,
                              statements=said))
    if "linear" in cfg.baselines and soup.method != "linear" and len(declared) > 1:
        try:
            linear = soup.model_copy(update={"method": "linear", "params": {}})
            systems.append(System("linear", "paper averaging (linear)", build_soup(linear, soups_dir / "linear")))
        except SoupsError as e:
            skipped["linear"] = str(e)
            log.warning("linear baseline skipped: %s", e)
    if "base" in cfg.baselines:
        systems.append(System("base", "base model"))
    if "prompted" in cfg.baselines:
        systems.append(System("prompted", "base + preference statements", None, statements=said))
    if "experts" in cfg.baselines:
        for n, d in declared:
            alone = Soup.build(list(soup.experts), [1.0 if m == n else 0.0 for m in soup.experts], base=soup.base)
            systems.append(System(f"expert:{d}", f"expert {n} alone", build_soup(alone, soups_dir / f"expert-{d}")))
    return systems


def generate_systems(cfg, systems: list[System], base_dir: Path, prompts: list[str],
                     session: GeneratorSession | None = None) -> dict[str, list[str]]:
    """Responses of every system (one loaded base, adapters swapped; cached on disk by resolved engine and dtype).

    `session`: a generator shared with other evaluations (soups.eval.paper); else one opened here for `cfg.engine`."""
    from soups.prompts import with_statements

    root = default_cache_dir() if cfg.cache == "default" else (Path(cfg.cache) if cfg.cache else None)
    cache = ResponseCache(root)
    own = session is None
    session = session or GeneratorSession(base_dir, cfg.engine, cfg.dtype)
    if session.base_dir.resolve() != Path(base_dir).resolve():
        raise ConfigError(f"--base {base_dir}: the shared generator runs {session.base_dir}; use one base per session")
    settings = {"max_new_tokens": cfg.max_new_tokens, "greedy": True, "seed": cfg.seed,
                "engine": session.engine, "dtype": session.dtype}
    out = {}
    try:
        for s in systems:
            asked = [with_statements(p, s.statements) for p in prompts]
            key = cache.key(s.adapter or base_dir, s.system_prompt, asked, settings)
            hit = cache.get(key)
            if hit is not None:
                out[s.name] = hit
                continue
            gen = session.get()
            gen.set_adapter(s.adapter)
            out[s.name] = gen.generate(asked, system=s.system_prompt, max_new_tokens=cfg.max_new_tokens,
                                       batch_size=cfg.batch_size, seed=cfg.seed, progress=cfg.progress, label=s.name)
            cache.put(key, out[s.name])
    finally:
        if own:
            session.close()
    return out


def _opponents(systems: list[System], ours: str) -> list[System]:
    """Whom `ours` is compared with: every other system (the plain soup is not compared with itself + statements;
    the soup with statements is compared with the plain soup)."""
    return [s for s in systems if s.name != ours and not (ours == "soup" and s.name == "soup+statements")]


def evaluate(cfg: EvalConfig, session: GeneratorSession | None = None) -> dict:
    """Run `soups eval` (module docstring); write results.json, scores.csv, win_rates.csv, responses.jsonl.

    `session`: a generator on the same base shared with other evaluations (else one is opened for the run)."""
    from soups.base import resolve_base
    from soups.dimensions import load_dimension
    from soups.eval.report import write_report
    from soups.eval.systems import load_prompt_set
    from soups.io.atomic import atomic_dir, check_output

    check_output(Path(cfg.out), cfg.force)
    unknown = [b for b in cfg.baselines if b not in BASELINES]
    if unknown:
        raise ConfigError(
            f"--baselines {','.join(cfg.baselines)}: unknown {unknown[0]!r}; choose from {','.join(BASELINES)}"
        )
    engine = resolve_engine(cfg.engine)
    if bool(cfg.judge_url) != bool(cfg.judge_model):
        raise ConfigError("--judge-url and --judge-model go together; give both (or neither)")
    if cfg.judge_url:
        from soups.eval.judge import make_client

        make_client(cfg.judge_url, cfg.judge_model)  # a bad URL or key setup fails here, before any generation
    soup, declared = _declared(cfg)
    dims = list(dict.fromkeys(d for _, d in declared))
    scorers = {d: scorer_for(d, cfg.scorers.get(d)) for d in dims}
    statements = {d: load_dimension(d).statement for d in dims}
    prompts = load_prompt_set(cfg.prompts, cfg.limit)
    base_dir = resolve_base(cfg.base)
    skipped: dict[str, str] = {}
    with atomic_dir(Path(cfg.out), force=cfg.force) as tmp:
        systems = _systems(cfg, soup, declared, tmp / "soups", skipped)
        responses = generate_systems(cfg, systems, base_dir, prompts, session)
        scores = {s.name: {d: scorers[d](responses[s.name]) for d in dims} for s in systems}
        report = {
            "experts": list(soup.experts), "weights": soup.weights, "method": soup.method,
            "params": soup.params, "base": str(base_dir),
            "prompts": {"source": str(cfg.prompts), "n": len(prompts)},
            "generation": {"max_new_tokens": cfg.max_new_tokens, "greedy": True, "seed": cfg.seed,
                           "engine": session.engine if session else engine,
                           "dtype": session.dtype if session else generation_dtype(cfg.dtype, base_dir)},
            "dimensions": [{"name": d, "metric": scorers[d].metric.name, "label": scorers[d].metric.label,
                            "wants": scorers[d].wants, "statement": statements[d]} for d in dims],
            "systems": [{"name": s.name, "label": s.label, "system_prompt": s.system_prompt,
                         "statements": list(s.statements),
                         "adapter": str(s.adapter.relative_to(tmp)) if s.adapter else None} for s in systems],
            "scores": {s: {d: bootstrap_ci(v, seed=cfg.seed).to_dict() for d, v in per.items()}
                       for s, per in scores.items()},
            "skipped": skipped,
        }
        for key, ours in WIN_TABLES.items():
            if ours in scores:
                report[key] = {s.name: {d: win_rate(scores[ours][d], scores[s.name][d], seed=cfg.seed,
                                                    direction=scorers[d].direction).to_dict() for d in dims}
                               for s in _opponents(systems, ours)}
        if cfg.judge_url:
            from soups.eval.judge import judge_win_rate, make_client

            client = make_client(cfg.judge_url, cfg.judge_model)
            report["judge"] = {"url": cfg.judge_url, "model": cfg.judge_model}
            for key, ours in WIN_TABLES.items():
                if ours in responses:
                    report["judge"][key] = {s.name: {d: judge_win_rate(client, statements[d], prompts, responses[ours],
                                                                       responses[s.name], seed=cfg.seed).to_dict()
                                                     for d in dims} for s in _opponents(systems, ours)}
        write_report(tmp, report, prompts, responses, scores)
    report["out"] = str(Path(cfg.out).absolute())
    return report
