"""Stream chat answers token by token from one or two models at once (the base and the soup side by side).

Each model generates greedily with transformers' `generate` off the caller's thread; a streamer
hands every new token to a queue that `Answerer.stream` turns into text updates. One job runs at
a time: starting a job stops the running one within one decoding step (a stopping criterion
watches its event), so a slider moved mid-answer restarts the soup's answer at once. Two models
decoding together get half the intra-op threads each (the 2-core default would oversubscribe the CPU).

All torch work of the playground runs on one long-lived thread (`TorchThread`; the second of two
models on a short-lived one). libgomp's OpenMP helpers spin between parallel regions only while it
manages no more threads than there are CPUs; a second long-lived thread with its own team (the main
thread after loading the models, a web server's worker after a rebuild) makes every helper sleep,
and a 128-token answer of the embedded base then took 7.2 s instead of 4.3 s on 2 cores.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Update:
    """The answers so far: text, token count and done flag per model, seconds to the first token."""

    texts: dict[str, str]
    tokens: dict[str, int]
    done: dict[str, bool]
    first_token_s: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    preempted: bool = False


class TorchThread:
    """One long-lived thread that runs the callables it is given, in order (see the module's docstring)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soups-torch")
        self._ident = self._pool.submit(threading.get_ident).result()

    def submit(self, fn: Callable[[], Any]) -> Future:
        return self._pool.submit(fn)

    def call(self, fn: Callable[[], Any]) -> Any:
        """`fn()` on the torch thread (directly when already on it); its result, or its exception raised here."""
        if threading.get_ident() == self._ident:
            return fn()
        return self.submit(fn).result()


class _Job:
    def __init__(self, keys) -> None:
        self.stop = threading.Event()
        self.queue: queue.Queue = queue.Queue()
        self.waits: list[Callable[[], Any]] = []  # each worker's join (a thread's join, a future's result)
        self.keys = list(keys)
        self.t0 = time.perf_counter()


def _streamer(key: str, q: queue.Queue):
    from transformers.generation.streamers import BaseStreamer

    class TokenStreamer(BaseStreamer):
        """Pushes (key, token id) for each generated token; the first put() is the prompt and is skipped."""

        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value) -> None:
            if not self.prompt_seen:
                self.prompt_seen = True
                return
            for tok in value.reshape(-1).tolist():
                q.put((key, tok))

        def end(self) -> None:
            q.put((key, None))

    return TokenStreamer()


def _stopper(event: threading.Event):
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class OnEvent(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool)

    return StoppingCriteriaList([OnEvent()])


class Answerer:
    """Chat answers from loaded causal LMs sharing one tokenizer, streamed; a new job preempts the running one."""

    def __init__(self, tokenizer, threads: int | None = None, torch_thread: TorchThread | None = None) -> None:
        import torch

        self.tokenizer = tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.threads = threads or torch.get_num_threads()
        self.torch_thread = torch_thread or TorchThread()
        self._job: _Job | None = None
        self._start_lock = threading.Lock()

    def chat_ids(self, prompt: str, system: str | None = None):
        """input_ids and attention mask of `prompt` through the chat template (soups.chat, as every answer is)."""
        from soups.chat import render

        return self.tokenizer([render(self.tokenizer, prompt, system)], return_tensors="pt", add_special_tokens=False)

    def stop(self) -> None:
        """Stop the running job (if any) and wait for its workers."""
        with self._start_lock:
            self._stop_running()

    def _stop_running(self) -> None:
        if self._job is not None:
            self._job.stop.set()
            for wait in self._job.waits:
                wait()
            self._job = None

    def _stop_ids(self, model) -> list[int]:
        """Token ids that end an answer under min_new_tokens: the model's EOS and every special token. They are
        all held back until min_new_tokens visible tokens are out (EOS alone would let a soup that wants to stop
        write <|endoftext|> or <|im_start|> instead, tokens the text and the token count skip)."""
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return sorted(set(eos) | set(self.tokenizer.all_special_ids))

    def _start(self, models: Mapping[str, object], encs: Mapping[str, object], max_new_tokens: int,
               min_new_tokens: int) -> _Job:
        import torch

        with self._start_lock:
            self._stop_running()
            job = _Job(models)
            threads = self.threads if len(models) == 1 else max(1, self.threads // len(models))

            def work(key, model):
                try:
                    torch.set_num_threads(threads)
                    stop = {"eos_token_id": self._stop_ids(model)} if min_new_tokens else {}
                    with torch.inference_mode():
                        model.generate(
                            **encs[key], max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens or None,
                            do_sample=False, temperature=None, top_p=None, top_k=None,
                            pad_token_id=self.tokenizer.pad_token_id, streamer=_streamer(key, job.queue),
                            stopping_criteria=_stopper(job.stop), **stop,
                        )
                except Exception as e:  # noqa: BLE001 - reported to the page by the consumer
                    log.exception("generation with %s failed", key)
                    job.queue.put((key, e))

            (first, model), *others = models.items()
            extra = [threading.Thread(target=work, args=(key, m), name=f"soups-answer-{key}", daemon=True)
                     for key, m in others]
            self._job = job
            job.waits.append(self.torch_thread.submit(lambda: work(first, model)).result)
            for t in extra:
                job.waits.append(t.join)
                t.start()
            return job

    def start(self, models: Mapping[str, object], prompt: str, *, max_new_tokens: int = 128,
              min_new_tokens: int = 0, system: str | None = None, prompts: Mapping[str, str] | None = None) -> _Job:
        """Stop the running job, then start generating `prompt` with each model (or the model's own prompt in
        `prompts`, by key); read it with `updates(job)`."""
        prompts = prompts or {}
        encs = {key: self.chat_ids(prompts.get(key, prompt), system) for key in models}
        return self._start(models, encs, max_new_tokens, min_new_tokens)

    def updates(self, job: _Job) -> Iterator[Update]:
        """Yield an Update after new tokens of any model until all are done (or a newer job preempts this one)."""
        ids: dict[str, list[int]] = {k: [] for k in job.keys}
        done = dict.fromkeys(job.keys, False)
        first: dict[str, float] = {}
        special = set(self.tokenizer.all_special_ids)
        try:
            while not all(done.values()):
                key, tok = job.queue.get()
                if isinstance(tok, Exception):
                    raise tok
                if tok is None:
                    done[key] = True
                elif tok not in special:
                    ids[key].append(tok)
                    first.setdefault(key, time.perf_counter() - job.t0)
                if job.stop.is_set() and self._job is not job:
                    yield self._update(ids, done, first, job.t0, preempted=True)
                    return
                if tok is None or not job.queue.qsize():  # coalesce tokens that arrived together
                    yield self._update(ids, done, first, job.t0)
        finally:
            if self._job is job:
                job.stop.set()

    def stream(self, models: Mapping[str, object], prompt: str, **kwargs) -> Iterator[Update]:
        """`start` then `updates`: the answers of `models` to `prompt`, streamed."""
        yield from self.updates(self.start(models, prompt, **kwargs))

    def _update(self, ids, done, first, t0, preempted: bool = False) -> Update:
        texts = {k: self.tokenizer.decode(v, skip_special_tokens=True).strip() for k, v in ids.items()}
        return Update(texts, {k: len(v) for k, v in ids.items()}, dict(done), dict(first),
                      time.perf_counter() - t0, preempted)
