"""Dynamic batching for concurrent callers: :class:`Batcher`.

Many threads each call ``batcher(x)`` (or :meth:`Batcher.submit`) with one
input; one worker thread runs ``model.predict_all`` on batches of them,
inside ``with model:``. The algorithm:

1. Each input is converted in the caller's thread (decoded, validated: see
   :mod:`modelzoo.serving.inputs`) and queued under ``model.batch_key(input)``;
   inputs whose keys differ never share a batch (a Tungsten-style model's
   options). A conversion or key error fails that caller only.
2. A group is *ready* when it holds ``max_batch_size`` requests, or when its
   oldest request has waited ``max_wait_ms`` (the timer starts at that
   request, as Ray Serve's does). Of the ready groups, the one with the
   oldest request goes first; a batch is at most ``max_batch_size`` of its
   oldest requests. Requests whose futures were cancelled are dropped.
3. ``predict_all`` must return one output per input (else every caller of
   the batch gets :class:`~modelzoo.serving.errors.OutputCountError`, naming
   the model and both counts). **When it raises, the batch's inputs are run
   again one at a time**, so that each caller gets its own answer: the bad
   input's caller gets its exception, its batch-mates their results (Ray
   Serve, BentoML and Tungstenkit fail the whole batch).
4. :meth:`Batcher.close` (or leaving ``with batcher:``) refuses new requests,
   answers the queued ones (or, with ``cancel_pending=True``, fails them with
   :class:`~modelzoo.serving.errors.BatcherClosedError`), leaves the model's
   ``with`` block and joins the thread.

Example::

    with Batcher(model, max_batch_size=16, max_wait_ms=5) as batcher:
        with ThreadPoolExecutor(32) as pool:
            labels = list(pool.map(batcher, images))
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from typing import Any, Callable, Deque, Dict, Hashable, List, Optional, Sequence

from ..models import Model
from . import defaults
from .errors import BatcherClosedError, OutputCountError, ServingError
from .inputs import InputAdapter

__all__ = ["Batcher", "BatcherStats"]


@dataclasses.dataclass
class BatcherStats:
    """What a batcher has done so far (a snapshot: :attr:`Batcher.stats`).

    Attributes:
        requests: inputs accepted into the queue.
        rejected: inputs failed before queueing (conversion, key, closed).
        batches: ``predict_all`` calls on batches (retries not counted).
        batch_sizes: how many batches had each size.
        retried_batches: batches whose ``predict_all`` raised and whose
            inputs were run again one at a time.
        failed: requests answered with an exception.
        cancelled: requests whose futures were cancelled before they ran.
    """

    requests: int = 0
    rejected: int = 0
    batches: int = 0
    batch_sizes: Dict[int, int] = dataclasses.field(default_factory=dict)
    retried_batches: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def max_batch_size(self) -> int:
        """The largest batch run so far (0 before any)."""
        return max(self.batch_sizes, default=0)


class _Request:
    __slots__ = ("input", "future", "queued_at")

    def __init__(self, input: Any, future: Future, queued_at: float):
        self.input = input
        self.future = future
        self.queued_at = queued_at


def _count_outputs(outputs: Any) -> Optional[int]:
    try:
        return len(outputs)
    except TypeError:
        return None


class Batcher:
    """Batches one-input calls from many threads into ``predict_all`` calls.

    The worker thread starts at once, enters ``with model:`` (a model's
    setup) and then waits for requests; the constructor returns when the
    model is entered, and raises what entering it raised.

    Args:
        model: any :class:`modelzoo.Model`.
        max_batch_size: the most inputs per ``predict_all`` call (>= 1).
        max_wait_ms: the most a request waits for batch-mates before its
            batch goes, in milliseconds (>= 0; 0: whatever is queued goes at once).
        name: the model's name in messages (default: its class name).
        convert: the caller-side conversion of each input (default: an
            :class:`~modelzoo.serving.inputs.InputAdapter` of ``model``).

    Raises:
        ValueError: ``max_batch_size`` or ``max_wait_ms`` out of range.
    """

    def __init__(
        self,
        model: Model,
        max_batch_size: int = defaults.MAX_BATCH_SIZE,
        max_wait_ms: float = defaults.MAX_WAIT_MS,
        name: Optional[str] = None,
        convert: Optional[Callable[[Any], Any]] = None,
    ):
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if isinstance(max_wait_ms, bool) or not isinstance(max_wait_ms, (int, float)) or not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be a number >= 0, got {max_wait_ms!r}")
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_ms = float(max_wait_ms)
        self.name = name or type(model).__name__
        self.adapter = InputAdapter(model, self.name) if convert is None else None
        self._convert: Callable[[Any], Any] = convert if convert is not None else self.adapter  # type: ignore[assignment]
        self._groups: "collections.OrderedDict[Hashable, Deque[_Request]]" = collections.OrderedDict()
        self._cond = threading.Condition()
        self._closing = False
        self._cancel_pending = False
        self._stats = BatcherStats()
        self._entered = threading.Event()
        self._enter_error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._work, name=f"modelzoo-batcher[{self.name}]", daemon=True)
        self._thread.start()
        self._entered.wait()
        if self._enter_error is not None:
            self._thread.join()
            raise self._enter_error

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"Batcher({self.name!r}, max_batch_size={self.max_batch_size}, max_wait_ms={self.max_wait_ms:g}, {state})"

    # -- callers ---------------------------------------------------------------------------
    def submit(self, x: Any) -> "Future[Any]":
        """Queues one input; the future holds its output or its exception.

        Never raises for a bad input: the conversion's error (an
        :class:`~modelzoo.serving.errors.InputError`), a ``batch_key`` error
        or :class:`~modelzoo.serving.errors.BatcherClosedError` is set on the
        returned future.
        """
        future: "Future[Any]" = Future()
        try:
            if self._closing:
                raise self._closed_error()
            item = self._convert(x)
            key = self.model.batch_key(item)
            hash(key)
        except BaseException as e:
            if isinstance(e, TypeError) and "unhashable" in str(e):
                e = ServingError(f"Model {self.name!r}: batch_key returned an unhashable value ({e})")
            with self._cond:
                self._stats.rejected += 1
            future.set_exception(e)
            return future
        with self._cond:
            if self._closing:
                self._stats.rejected += 1
                future.set_exception(self._closed_error())
                return future
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = collections.deque()
            group.append(_Request(item, future, time.monotonic()))
            self._stats.requests += 1
            self._cond.notify()
        return future

    def predict(self, x: Any, timeout: Optional[float] = None) -> Any:
        """The model's output for one input, batched with other callers'.

        Raises:
            Exception: this input's own error (its conversion, or ``predict`` on it alone).
            concurrent.futures.TimeoutError: no answer within ``timeout`` seconds
                (the request is withdrawn if it has not started).
        """
        future = self.submit(x)
        try:
            return future.result(timeout)
        except FuturesTimeoutError:
            future.cancel()  # a queued request is dropped, not run for no one
            raise

    __call__ = predict

    @property
    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        with self._cond:
            return sum(len(g) for g in self._groups.values())

    @property
    def stats(self) -> BatcherStats:
        """A copy of the counters (see :class:`BatcherStats`)."""
        with self._cond:
            return dataclasses.replace(self._stats, batch_sizes=dict(self._stats.batch_sizes))

    @property
    def closed(self) -> bool:
        return self._closing

    # -- stopping --------------------------------------------------------------------------
    def close(self, timeout: Optional[float] = None, cancel_pending: bool = False, wait: bool = True) -> None:
        """Stops the batcher: no new requests; the queued ones are run at
        once, without waiting for batch-mates (or, with ``cancel_pending``,
        failed with :class:`BatcherClosedError`); the model's ``with`` block
        is left and the worker joined. Idempotent.

        Args:
            timeout: seconds to wait for the worker (None: until it is done).
            cancel_pending: fail the queued requests instead of running them.
            wait: False: only start stopping (the queue drains in the
                background) and return at once; a later ``close()`` joins.

        Raises:
            ServingError: the worker did not finish within ``timeout`` (a
                ``predict_all`` still running).
        """
        with self._cond:
            self._closing = True
            self._cancel_pending = self._cancel_pending or cancel_pending
            self._cond.notify_all()
        if not wait or threading.current_thread() is self._thread:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise ServingError(
                f"Batcher of {self.name!r}: the worker did not stop within {timeout:g} s "
                "(a predict_all call is still running); it stops when that call returns"
            )

    def __enter__(self) -> "Batcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _closed_error(self) -> BatcherClosedError:
        return BatcherClosedError(f"Batcher of {self.name!r} is closed: the request was not run")

    # -- the worker ------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            self.model.__enter__()
        except BaseException as e:
            self._enter_error = e
            self._closing = True
            self._entered.set()
            return
        self._entered.set()
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                try:
                    self._run(batch)
                except BaseException as e:  # not an Exception: the worker stops, its callers are told
                    for request in batch:
                        if not request.future.done():
                            request.future.set_exception(
                                ServingError(f"Batcher of {self.name!r}: the worker stopped ({e!r})")
                            )
                    raise
        finally:
            self._fail_pending()
            self.model.__exit__(None, None, None)

    def _next_batch(self) -> Optional[List[_Request]]:
        """Blocks until a group is ready; returns its batch, or None when closed and drained."""
        wait_s = self.max_wait_ms / 1000.0
        with self._cond:
            while True:
                if self._closing and (self._cancel_pending or not self._groups):
                    return None
                now = time.monotonic()
                ready_key, ready_at, next_due = None, None, None
                for key, group in self._groups.items():
                    oldest = group[0].queued_at
                    if len(group) >= self.max_batch_size or self._closing or now - oldest >= wait_s:
                        if ready_at is None or oldest < ready_at:
                            ready_key, ready_at = key, oldest
                    else:
                        due = oldest + wait_s
                        next_due = due if next_due is None else min(next_due, due)
                if ready_at is not None:
                    group = self._groups[ready_key]
                    batch: List[_Request] = []
                    while group and len(batch) < self.max_batch_size:
                        request = group.popleft()
                        if request.future.set_running_or_notify_cancel():
                            batch.append(request)
                        else:
                            self._stats.cancelled += 1
                    if not group:
                        del self._groups[ready_key]
                    if batch:
                        return batch
                    continue
                self._cond.wait(None if next_due is None else max(0.0, next_due - now))

    def _run(self, batch: List[_Request]) -> None:
        inputs = [r.input for r in batch]
        with self._cond:
            self._stats.batches += 1
            self._stats.batch_sizes[len(batch)] = self._stats.batch_sizes.get(len(batch), 0) + 1
        try:
            outputs = self._predict(inputs)
        except OutputCountError as e:  # a broken contract: no output can be matched to its caller
            self._answer(batch, [e] * len(batch), failed=True)
            return
        except Exception as e:
            if len(batch) == 1:
                self._answer(batch, [e], failed=True)
                return
            outputs = None  # retried below, outside this handler (no misleading exception context)
        if outputs is not None:
            self._answer(batch, outputs, failed=False)
            return
        with self._cond:
            self._stats.retried_batches += 1
        for request in batch:  # one bad input must not fail its batch-mates
            try:
                output = self._predict([request.input])
            except Exception as e:
                self._answer([request], [e], failed=True)
            else:
                self._answer([request], output, failed=False)

    def _predict(self, inputs: Sequence[Any]) -> List[Any]:
        outputs = self.model.predict_all(list(inputs))
        n = _count_outputs(outputs)
        if n != len(inputs):
            raise OutputCountError(self.name, len(inputs), n, type(outputs).__name__)
        return list(outputs)

    def _answer(self, batch: Sequence[_Request], values: Sequence[Any], failed: bool) -> None:
        if failed:
            with self._cond:
                self._stats.failed += len(batch)
        for request, value in zip(batch, values):
            if failed:
                request.future.set_exception(value)
            else:
                request.future.set_result(value)

    def _fail_pending(self) -> None:
        with self._cond:
            self._closing = True
            requests = [r for group in self._groups.values() for r in group]
            self._groups.clear()
            self._stats.failed += len(requests)
        for request in requests:
            if not request.future.cancelled():
                try:
                    request.future.set_exception(self._closed_error())
                except Exception:  # pragma: no cover - a future cancelled meanwhile
                    pass
