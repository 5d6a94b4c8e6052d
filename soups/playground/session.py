"""The playground's state, without any UI: the base, the live soup, streamed answers and their held-out scores.

The web page (soups/playground/app.py) and the benchmark (bench/playground.py) drive this one
object: `answer(prompt, Settings)` rebuilds the soup in memory when the settings changed, then
streams the soup's answer, and the base's too when it has none cached for that prompt.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from soups.errors import ConfigError

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 4000
MAX_HISTORY = 200
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class Settings:
    """The sliders: one weight per expert slot, normalize, method, and the method's parameters (svd's rank);
    `statements`: the soup answers with its preference statements appended to the prompt (the paper's inference)."""

    weights: tuple[float, ...]
    normalize: bool = True
    method: str = "exact"
    rank: int | None = None
    statements: bool = False

    def params(self) -> dict:
        """The method's parameters the page offers (a rank, for methods that take one)."""
        from soups.merge.methods import get_method

        fields = get_method(self.method).params.model_fields
        return {"rank": self.rank} if "rank" in fields and self.rank is not None else {}

    def key(self) -> tuple:
        """What the soup's weights depend on (not `statements`: that changes the prompt, not the soup)."""
        return (self.weights, self.normalize, self.method, tuple(sorted(self.params().items())))


class Playground:
    """Load the base and the experts once; answer prompts with the base and the current soup.

    `dtype`: what both models run in, float32 by default: one answer at a time decodes no faster in bfloat16,
    even on a CPU with native bf16 (measured here: 128 tokens of the embedded base in 4.4 s float32, 5.0 s
    bfloat16, 2 threads; bf16 pays off for batches, soups.eval.generate.default_dtype). In bfloat16 the soup's
    weights are merged in float32 and rounded once, as `soups merge` does."""

    def __init__(self, experts: Sequence[str] | None = None, base: str | Path = "default", *,
                 max_new_tokens: int = 128, threads: int | None = None, dtype: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from soups.base import fingerprint, resolve_base
        from soups.eval.generate import _fit_cpu_threads
        from soups.playground.soup import LiveSoup
        from soups.playground.streaming import Answerer, TorchThread
        from soups.recipe import default_expert_names

        if max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens {max_new_tokens}: must be >= 1")
        self.dtype = dtype or "float32"
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {dtype}: use one of {', '.join(DTYPES)}")
        self.base_spec = str(base)
        self.base_dir = resolve_base(base)
        self.expert_specs = list(experts) if experts else default_expert_names()
        self.max_new_tokens = max_new_tokens
        if threads:
            torch.set_num_threads(threads)
        else:
            _fit_cpu_threads()
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        if self.tokenizer.chat_template is None:
            raise ConfigError(f"--base {base}: its tokenizer has no chat template; use an instruction-tuned base")
        self.torch_thread = TorchThread()  # every torch op of the playground runs there (soups.playground.streaming)
        self.base = self.torch_thread.call(lambda: AutoModelForCausalLM.from_pretrained(
            self.base_dir, dtype=getattr(torch, self.dtype)).eval())
        self.soup = self.torch_thread.call(lambda: LiveSoup(self.base, self.expert_specs, fingerprint(self.base_dir)))
        self.answerer = Answerer(self.tokenizer, torch_thread=self.torch_thread)
        self._built: tuple | None = None
        self._base_cache: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self.min_new_tokens = 0  # the benchmark sets max_new_tokens here: answers of exactly that length
        self.history: list[dict] = []

    # -- experts and dimensions --------------------------------------------------------------
    @property
    def slots(self):
        return self.soup.slots

    def dimensions(self) -> list[str]:
        """The loaded experts' dimensions, in slider order (each once)."""
        return list(dict.fromkeys(s.dimension for s in self.soup.loaded))

    def describe(self, dimension: str | None) -> str:
        """The dimension's one-line description (its YAML file), or its name."""
        from soups.dimensions import load_dimension

        try:
            return load_dimension(dimension).description
        except (ConfigError, TypeError):
            return f"dimension: {dimension}"

    def scores(self, text: str) -> dict[str, float]:
        """Held-out score of `text` on each loaded expert's dimension that has a held-out scorer."""
        from soups.eval.scorers import scorer_for

        out = {}
        for dim in self.dimensions():
            try:
                out[dim] = scorer_for(dim)([text])[0]
            except ConfigError:
                continue
        return out

    def statements(self, settings: Settings) -> list[str]:
        """The preference statements of the dimensions with a weight > 0, in slider order (each dimension once), as
        `soups generate --statements` reads them from the soup's soup.json (soups.merge.provenance.statements)."""
        from soups.dimensions import load_dimension

        dims = dict.fromkeys(s.dimension for s, w in zip(self.slots, settings.weights) if s.ok and w > 0)
        try:
            return [load_dimension(d).statement for d in dims]
        except ConfigError as e:
            raise ConfigError(f"statements: {e}; untick “statements” to answer without them") from None

    # -- the soup ----------------------------------------------------------------------------
    def soup_spec(self, settings: Settings, format: str = "full"):
        """The settings as a soup (soups.recipe.Soup) over the loaded experts: what `soups merge` would build."""
        from soups.errors import WeightsError
        from soups.recipe import Soup

        if len(settings.weights) != len(self.slots):
            raise WeightsError(f"{len(settings.weights)} weight(s) for {len(self.slots)} expert(s)")
        pairs = [(s, float(w)) for s, w in zip(self.slots, settings.weights) if s.ok]
        if not pairs:
            raise ConfigError("no expert loaded; fix the experts named above and restart the playground")
        values = [w for _, w in pairs]
        if all(v == 0 for v in values):
            raise WeightsError("all weights are zero: move at least one expert's slider above 0")
        if settings.normalize and sum(values) <= 0:
            raise WeightsError("the weights sum to 0 or less: a soup average needs a positive sum (untick normalize)")
        return Soup.build([s.spec for s, _ in pairs], values, base=self.base_spec, method=settings.method,
                          normalize=settings.normalize, format=format, **settings.params())

    def rebuild(self, settings: Settings):
        """Re-merge the soup in memory if the settings changed (raises SoupsError on bad settings)."""
        return self.torch_thread.call(lambda: self._rebuild(settings))

    def _rebuild(self, settings: Settings):
        changed = self.soup.refresh()
        key = (settings.key(), tuple(s.ok for s in self.slots))
        if self._built != key or changed:
            self._built = None
            state = self.soup.rebuild(self.soup_spec(settings))
            self._built = key
            return state
        return self.soup.state

    def answer(self, prompt: str, settings: Settings, *, fresh_base: bool = False,
               min_new_tokens: int | None = None) -> Iterator:
        """Rebuild the soup for `settings` and stream answers (soups.playground.streaming.Update).

        With `settings.statements` the soup is asked `with_statements(prompt, self.statements(settings))` (the
        base, the plain prompt). The base's answer to a prompt is cached; it is generated again only when missing
        or `fresh_base`.
        """
        from soups.prompts import with_statements

        prompt = (prompt or "").strip()
        if not prompt:
            raise ConfigError("the prompt is empty: type a question first")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise ConfigError(f"the prompt has {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
        min_new_tokens = self.min_new_tokens if min_new_tokens is None else min_new_tokens
        said = self.statements(settings) if settings.statements else []
        asked = {"base": prompt, "soup": with_statements(prompt, said)}
        with self._lock:  # one soup at a time: stop the running answer before the weights change under it
            self.answerer.stop()
            state = self.rebuild(settings)
            base_key = (prompt, self.max_new_tokens, min_new_tokens)
            cached = None if fresh_base else self._base_cache.get(base_key)
            models = {"soup": self.soup.model} if cached is not None else {"base": self.base, "soup": self.soup.model}
            job = self.answerer.start(models, prompt, prompts=asked, max_new_tokens=self.max_new_tokens,
                                      min_new_tokens=min_new_tokens)
        update = None
        for update in self.answerer.updates(job):
            if cached is not None:
                update.texts["base"], update.done["base"], update.tokens["base"] = cached, True, -1
            yield update
        if update is not None and not update.preempted:
            self._base_cache[base_key] = update.texts["base"]
            self._record(prompt, asked, said, settings, state, update.texts)

    def _record(self, prompt: str, asked: dict[str, str], said: list[str], settings: Settings, state,
                texts: dict[str, str]) -> None:
        """Keep the finished answers for the JSONL export (the most recent MAX_HISTORY); `user_message`: what each
        system was asked (the soup's ends with its `statements` when the box is ticked)."""
        common = {"weights": dict(state.weights), "weights_raw": dict(zip((s.name for s in self.slots),
                                                                          settings.weights)),
                  "method": settings.method, "normalize": settings.normalize, **settings.params(),
                  "max_new_tokens": self.max_new_tokens, "base": self.base_spec, "dtype": self.dtype}
        for system in ("base", "soup"):
            self.history.append({"prompt": prompt, "system": system, "user_message": asked[system],
                                 "statements": said if system == "soup" else [], "response": texts[system],
                                 "scores": self.scores(texts[system]), **common})
        del self.history[:-MAX_HISTORY]
