"""Running a loader: work items in, collated model inputs out, in worker
processes, with per-sample failures kept apart.

:class:`BatchStream` feeds a run: a torch ``DataLoader`` whose batch sampler
is the source's batches, loading and collating with the model's
:class:`~modelzoo.loaders.Loader` in worker processes (in the main process
with 0 workers). Its worker count can change mid-run (:meth:`BatchStream.resize`,
used by the CPU calibration): batches already being loaded are finished by
the old workers and the rest go to the new ones, each exactly once.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

from ..loaders import Loader, WorkItem

__all__ = ["LoadedBatch", "Collate", "Gate", "BatchStream", "Rebatch", "safe_load"]


@dataclass
class LoadedBatch:
    """A batch as the model gets it.

    Attributes:
        items: the items whose inputs loaded, in order.
        inputs: their collated inputs (None when none loaded).
        failures: ``(item, message)`` for the items that failed to load.
        raw: the inputs before collation, when the batch keeps them (frames:
            they cannot be loaded again one by one without decoding the
            video again).
        finished: the videos whose last selected frame is in this batch (or
            before it), for a run over frames.
    """

    items: List[WorkItem]
    inputs: Any
    failures: List[Tuple[WorkItem, str]] = field(default_factory=list)
    raw: Optional[List[Any]] = None
    finished: List[WorkItem] = field(default_factory=list)

    def pin_memory(self) -> "LoadedBatch":
        from torch.utils.data._utils.pin_memory import pin_memory

        if self.inputs is not None:
            self.inputs = pin_memory(self.inputs)
        return self


def safe_load(loader: Loader, item: WorkItem) -> Tuple[WorkItem, bool, Any]:
    """``(item, True, input)``, or ``(item, False, message)`` when loading failed."""
    try:
        return item, True, loader.load(item)
    except Exception as e:  # a per-sample data error: keep it with its sample
        return item, False, f"{type(e).__name__}: {e}"


class _ItemDataset:
    """A map-style dataset indexed by work items (the batch sampler yields them)."""

    def __init__(self, loader: Loader):
        self.loader = loader

    def __getitem__(self, item: WorkItem) -> Tuple[WorkItem, bool, Any]:
        return safe_load(self.loader, item)


class Collate:
    """Splits failures from loaded items and collates the latter with the
    loader. Picklable."""

    def __init__(self, loader: Loader):
        self.loader = loader

    def __call__(self, results: Sequence[Tuple[WorkItem, bool, Any]]) -> LoadedBatch:
        items = [r for r, ok, _ in results if ok]
        failures = [(r, x) for r, ok, x in results if not ok]
        inputs = self.loader.collate([x for _, ok, x in results if ok]) if items else None
        return LoadedBatch(items, inputs, failures)


class Rebatch:
    """The items of ``batches`` again, in lists of :attr:`size` items (the
    last may be shorter); :attr:`size` may change between lists (the batch-size
    search of the calibration sets it)."""

    def __init__(self, batches: Iterator[List[WorkItem]], size: int):
        self._items = (item for batch in batches for item in batch)
        self.size = size

    def __iter__(self) -> "Rebatch":
        return self

    def __next__(self) -> List[WorkItem]:
        batch = list(itertools.islice(self._items, max(1, int(self.size))))
        if not batch:
            raise StopIteration
        return batch


class Gate:
    """Passes batches through from ``batches`` until :meth:`close`; the rest
    stay in ``batches`` for whoever reads it next."""

    def __init__(self, batches: Iterator[List[WorkItem]]):
        self.batches = batches
        self.closed = False

    def __iter__(self) -> "Gate":
        return self

    def __next__(self) -> List[WorkItem]:
        if self.closed:
            raise StopIteration
        return next(self.batches)

    def close(self) -> None:
        self.closed = True


def _data_loader(batches: Any, loader: Loader, num_workers: int, pin_memory: bool) -> Iterator[LoadedBatch]:
    from torch.utils.data import DataLoader

    return iter(
        DataLoader(
            _ItemDataset(loader),  # type: ignore[arg-type]
            batch_sampler=batches,
            num_workers=num_workers,
            collate_fn=Collate(loader),
            pin_memory=pin_memory,
            prefetch_factor=2 if num_workers > 0 else None,
            persistent_workers=False,
        )
    )


class BatchStream:
    """The loaded batches of a run, from ``num_workers`` loader processes.

    Args:
        batches: the source's item batches (an iterator, read once).
        loader: the model's loader.
        num_workers: loader processes; 0 loads in the main process.
        pin_memory: pin the batches (for CUDA models).
    """

    def __init__(self, batches: Iterator[List[WorkItem]], loader: Loader, num_workers: int, pin_memory: bool = False):
        self._batches = batches
        self.loader = loader
        self.pin_memory = pin_memory
        self.num_workers = num_workers
        self._gate: Optional[Gate] = None
        self._current: Optional[Iterator[LoadedBatch]] = None
        self._draining: List[Iterator[LoadedBatch]] = []

    def load_here(self, times: Optional[List[float]] = None) -> Optional[LoadedBatch]:
        """Loads the next batch in this process (None at the end); what the
        calibration times: each item's load time (seconds) is appended to
        ``times``. Call before iterating."""
        items = next(self._batches, None)
        if items is None:
            return None
        results = []
        for item in items:
            t0 = time.perf_counter()
            results.append(safe_load(self.loader, item))
            if times is not None:
                times.append(time.perf_counter() - t0)
        return Collate(self.loader)(results)

    def _start(self) -> None:
        self._gate = Gate(self._batches)
        self._current = _data_loader(self._gate, self.loader, self.num_workers, self.pin_memory)

    def start(self) -> None:
        """Starts the workers now (they load ahead while the caller works)."""
        if self._current is None and not self._draining:
            self._start()

    def resize(self, num_workers: int) -> None:
        """Continues with ``num_workers`` workers: the batches the current
        workers already took are still yielded first, in order."""
        if num_workers == self.num_workers:
            return
        self.num_workers = num_workers
        if self._current is not None:
            assert self._gate is not None
            self._gate.close()
            self._draining.append(self._current)
            self._current = None

    def __iter__(self) -> Iterator[LoadedBatch]:
        while True:
            while self._draining:
                yield from self._draining.pop(0)
            if self._current is None:
                self._start()
            assert self._current is not None
            batch = next(self._current, None)
            if batch is None:  # the source is exhausted (a resize sets _current to None instead)
                return
            yield batch
