"""A bounded producer thread: computes planned tensors ahead of the shard writer, piece by piece.

A tensor's `produce()` returns its stored elements as one array, or an iterator of arrays (blocks
of rows, in order) so that a large tensor never needs a tensor-sized buffer. One thread runs the
producers in plan order and hands pieces over a queue of `depth` slots: compute overlaps writing,
and at most `depth + 2` pieces are alive at once (queued, being computed, being written), which is
what a producer that reuses output buffers must allow for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()  # closes one tensor's pieces


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Producer:
    """Run `t.produce()` for each tensor on one thread; `pieces()` yields the next tensor's pieces in order."""

    def __init__(self, tensors: Iterable, depth: int = 2) -> None:
        self._tensors = tensors
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soups-merge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for t in self._tensors:
                data = t.produce()
                for piece in [data] if hasattr(data, "dtype") else data:
                    if not self._put(piece):
                        return
                if not self._put(_END):
                    return
        except BaseException as e:  # handed to the writer, which raises it with its traceback
            self._put(_Failed(e))

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pieces(self) -> Iterator:
        """The next tensor's pieces (the whole array, or its blocks of rows)."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def close(self) -> None:
        """Stop producing and wait for the thread (it finishes the piece in hand)."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
