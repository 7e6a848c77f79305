"""Loaders: records in, model inputs out, with per-sample failures kept apart.

Two strategies share one output type, :class:`LoadedBatch`:

* :func:`torch_batches` for TorchModelMixin models: a DataLoader whose batch
  sampler is the sample source, decoding and transforming in worker
  processes, collating there with the model's ``collate_fn``;
* :func:`threaded_batches` for other models: decoding in a thread pool, one
  batch ahead of the model.
"""

from __future__ import annotations

import collections
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Sequence, Tuple

from ..image_io import DecodeImage
from .source import Record

__all__ = ["LoadedBatch", "DecodeImage", "Gate", "safe_load", "torch_batches", "threaded_batches"]


@dataclass
class LoadedBatch:
    records: List[Record]  # the samples whose inputs loaded, in order
    inputs: Any  # collated inputs for those records (None when none loaded)
    failures: List[Tuple[Record, str]] = field(default_factory=list)

    def pin_memory(self) -> "LoadedBatch":
        from torch.utils.data._utils.pin_memory import pin_memory

        if self.inputs is not None:
            self.inputs = pin_memory(self.inputs)
        return self


def safe_load(load_fn: Callable[[str], Any], record: Record) -> Tuple[Record, bool, Any]:
    try:
        return record, True, load_fn(record.filepath)
    except Exception as e:  # a per-sample data error: keep it with its sample
        return record, False, f"{type(e).__name__}: {e}"


class _RecordDataset:
    """A map-style dataset indexed by records (the batch sampler yields them)."""

    def __init__(self, load_fn: Callable[[str], Any]):
        self.load_fn = load_fn

    def __getitem__(self, record: Record) -> Tuple[Record, bool, Any]:
        return safe_load(self.load_fn, record)


class _Collate:
    """Splits failures from loaded items and collates the latter. Picklable."""

    def __init__(self, collate_fn: Callable[[Sequence[Any]], Any]):
        self.collate_fn = collate_fn

    def __call__(self, items: Sequence[Tuple[Record, bool, Any]]) -> LoadedBatch:
        records = [r for r, ok, _ in items if ok]
        failures = [(r, x) for r, ok, x in items if not ok]
        inputs = self.collate_fn([x for _, ok, x in items if ok]) if records else None
        return LoadedBatch(records, inputs, failures)


class Gate:
    """Passes batches through from ``batches`` until :meth:`close`; the
    rest stay in ``batches`` for whoever reads it next. Lets a provisional
    DataLoader start on a run's first batches and hand the remainder over
    to another one (whose batch sampler sees the same iterator)."""

    def __init__(self, batches: Iterator[List[Record]]):
        self.batches = batches
        self.closed = False

    def __iter__(self) -> "Gate":
        return self

    def __next__(self) -> List[Record]:
        if self.closed:
            raise StopIteration
        return next(self.batches)

    def close(self) -> None:
        self.closed = True


def torch_batches(
    batches: Iterable[List[Record]],
    load_fn: Callable[[str], Any],
    collate_fn: Callable[[Sequence[Any]], Any],
    num_workers: int,
    pin_memory: bool = False,
) -> Iterator[LoadedBatch]:
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _RecordDataset(load_fn),  # type: ignore[arg-type]
        batch_sampler=batches,  # type: ignore[arg-type]
        num_workers=num_workers,
        collate_fn=_Collate(collate_fn),
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers > 0 else None,
        persistent_workers=False,
    )
    return iter(loader)


def threaded_batches(
    batches: Iterable[List[Record]],
    load_fn: Callable[[str], Any],
    num_threads: int,
    prefetch: int = 2,
) -> Iterator[LoadedBatch]:
    def gather(futures: List[Any]) -> LoadedBatch:
        return _Collate(list)([f.result() for f in futures])

    with ThreadPoolExecutor(max_workers=max(1, num_threads), thread_name_prefix="modelzoo-load") as pool:
        pending: collections.deque = collections.deque()
        for batch in batches:
            pending.append([pool.submit(safe_load, load_fn, r) for r in batch])
            if len(pending) > prefetch:
                yield gather(pending.popleft())
        while pending:
            yield gather(pending.popleft())
