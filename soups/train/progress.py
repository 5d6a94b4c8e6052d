"""Per-step training log: a rich progress bar (reward, KL, step time) and a metrics JSONL file."""

from __future__ import annotations

import json
import logging
import math
import resource
import time
from pathlib import Path

log = logging.getLogger(__name__)


def metric_lines(path: Path) -> list[tuple[str, dict]]:
    """(line, row) of each step in metrics.jsonl; a line a kill tore (the last, or any that does not parse) is
    dropped with a warning, so `--resume` never fails on it."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            log.warning("%s:%d: dropping a torn or malformed line (an interrupted write)", path, no)
            continue
        out.append((line, row))
    return out


def _start_bar(title: str, total: int, completed: int = 0):
    """A started rich progress bar (description, bar, n/N, stats, time left) and its task id."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[stats]}"), TimeRemainingColumn())
    bar.start()
    return bar, bar.add_task(title, total=total, completed=completed, stats="")


def read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.jsonl (torn lines dropped, see metric_lines)."""
    return [row for _, row in metric_lines(path)]


class StepLogger:
    """Append one JSON line per step; drive the progress bar; raise KLStop past `kl_stop`."""

    def __init__(self, path: Path, *, total: int, start: int = 0, kl_stop: float | None = None, show: bool = True,
                 title: str = "train"):
        self.path, self.total, self.start, self.kl_stop = Path(path), total, start, kl_stop
        self.show, self.title = show, title
        self.last_step, self.stopped_early, self._t, self._cpu = start, False, time.time(), 0.0
        self._progress = self._task = None

    def __enter__(self) -> StepLogger:
        from accelerate import PartialState

        self._main = PartialState().is_main_process
        if self.show and self._main:
            self._progress, self._task = _start_bar(self.title, self.total, self.start)
        self._t, self._cpu = time.time(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def log(self, step: int, metrics: dict) -> None:
        from soups.train.trl_backend import KLStop

        now = time.time()
        cpu = time.process_time()
        row = {"step": step, "step_time_s": round(now - self._t, 3), "cpu_s": round(cpu - self._cpu, 3),
               "time": round(now, 3)}
        self._t, self._cpu = now, cpu
        row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        if row.get("rollout_tokens") and row["step_time_s"] > 0:
            row["tokens_per_s"] = round(row["rollout_tokens"] / row["step_time_s"], 2)
        self.last_step = step
        if self._main:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        if self._progress is not None:
            stats = f"reward {row.get('reward', float('nan')):+.3f}  KL {row.get('kl', float('nan')):.3f}  " \
                    f"{row['step_time_s']:.1f}s/step"
            self._progress.update(self._task, completed=step, stats=stats)
        if self.kl_stop is not None and row.get("kl", 0.0) > self.kl_stop:
            self.stopped_early = True
            raise KLStop(f"KL {row['kl']:.3f} > kl_stop {self.kl_stop} at step {step}")


class StageBar:
    """A rich progress bar for one stage of a run (warm-start answers, distillation); silent when not shown."""

    def __init__(self, title: str, total: int, show: bool = True):
        self.title, self.total, self.show = title, total, show
        self._progress = self._task = None

    def __enter__(self) -> StageBar:
        from accelerate import PartialState

        if self.show and PartialState().is_main_process:
            self._progress, self._task = _start_bar(self.title, self.total)
        return self

    def update(self, done: int, total: int | None = None, stats: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=done, total=total or self.total, stats=stats)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
