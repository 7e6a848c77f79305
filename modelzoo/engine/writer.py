"""The writer: a background thread that stores each batch with one bulk write,
overlapping the next batch's compute."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Optional

__all__ = ["BackgroundWriter"]

logger = logging.getLogger(__name__)

_STOP = object()


class BackgroundWriter:
    """Runs ``write_fn(updates)`` for each submitted batch, in order, off the
    main thread. The queue is bounded, so a slow database slows the run
    instead of growing memory. The first error stops the writer and is
    re-raised by :meth:`check` / :meth:`close`.
    """

    def __init__(self, write_fn: Callable[[Any], None], max_pending: int = 4):
        self._write_fn = write_fn
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max_pending)
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._loop, name="modelzoo-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            try:
                self._write_fn(item)
            except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                self._error = e

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, updates: Any) -> None:
        self.check()
        while True:
            try:
                self._queue.put(updates, timeout=0.5)
                return
            except queue.Full:
                self.check()

    def close(self, timeout: Optional[float] = None) -> None:
        """Writes what is queued, stops the thread, re-raises a write error."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.check()
