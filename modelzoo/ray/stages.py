"""What runs on the Ray workers: the probe, the decoding tasks, the model replicas.

* :func:`probe` runs once before any work, with a replica's resources: it
  reaches the database and builds the model from its recipe, so that a
  database the workers cannot reach or a recipe that does not build fails
  the run before anything is read or written. It returns the built model's
  loader, which the decoding tasks use. It does not ``prepare`` the model
  (with ``optimize="auto"`` on a large run, a graph built and measured
  that the replicas build and measure again): ``prepare`` may change how a
  batch is collated (an optimized graph's channels-last layout), which the
  replicas do with their own prepared model's loader, not how a sample is
  loaded.
* :func:`decode_shards` is a Ray Data task (CPU): for each shard of sample
  ids it reads the items from MongoDB and loads each one with the model's
  loader (decode + transforms), keeping each failure with its
  sample. One output row is one model batch.
* :class:`Replica` is the callable class of ``map_batches``: each Ray actor
  builds the model once and runs the engine's own loop
  (:func:`modelzoo.engine.run_model`) on each decoded batch, so batching
  fallbacks, per-sample failures and the sink's bulk write are the
  in-process ones, and the labels are written from the replica.

Nothing here imports Ray at import time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from ..engine import EmbeddingSink, RunOptions, Sink, Source, run_model
from ..loaders import Loader, WorkItem
from ..recipes import Recipe

__all__ = [
    "pack", "unpack", "probe", "decode_shards", "Replica", "LoadedSource", "Replay", "object_column",
    "replica_name", "describe_model", "with_loaded",
]

Loaded = List[Tuple[WorkItem, bool, Any]]  # (item, ok, input) or (item, False, (error type, message))


def object_column(values: List[Any]) -> np.ndarray:
    """A 1-d object array (Ray Data keeps each value as one Python object)."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


def replica_name() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def describe_model(model: Any) -> str:
    """The model's class, and how it runs when it says so (``TorchImageModel (trace)``)."""
    how = getattr(model, "optimization", None)
    return f"{type(model).__name__} ({how})" if isinstance(how, str) else type(model).__name__


def probe(recipe: Recipe) -> Dict[str, Any]:
    """Reaches the database and builds the model, as a replica will (without ``prepare``).

    Returns:
        ``{"node": host:pid, "model": class name, "loader": the model's loader,
        "seconds": the probe's own time}``.

    Raises:
        DatabaseError: the database cannot be reached from this worker (within 5 s).
        Exception: whatever building the model raised (its traceback reaches the driver).
    """
    from ..db import get_db

    start = time.perf_counter()
    get_db().command("ping")
    model = recipe.build()
    return {
        "node": replica_name(), "model": type(model).__name__, "loader": model.build_loader(),
        "seconds": time.perf_counter() - start,
    }


def pack(value: Any) -> bytes:
    """One cell of the pipeline: pickled by us, so Ray Data moves plain bytes
    (Arrow binary) instead of guessing a column type. Only ever unpacked by
    the same run's own stages."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Any:
    """A cell made by :func:`pack` in this run's own stage."""
    return pickle.loads(data)


def decode_shards(batch: Mapping[str, Any], loader: Loader, batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """Ray Data task: reads each shard's items and loads them, one row per model batch."""
    for packed in batch["source"]:
        source = unpack(packed)
        for items in source.batches(batch_size):
            loaded: Loaded = []
            for item in items:
                try:
                    loaded.append((item, True, loader.load(item)))
                except Exception as e:  # a per-sample data error: kept with its sample
                    loaded.append((item, False, (type(e).__name__, str(e))))
            yield {"loaded": object_column([pack(loaded)])}


_ERROR_TYPES: Dict[str, type] = {}


def _named_error(name: str) -> type:
    """An exception class called ``name``, so that a replayed failure reads as the original."""
    if name not in _ERROR_TYPES:
        _ERROR_TYPES[name] = type(name, (Exception,), {})
    return _ERROR_TYPES[name]


class Replay(Loader):
    """The loader a replica's model gets: hands back what a decoding task
    loaded (re-raising its failures, with the same type name and message)
    and collates with the model's own loader."""

    def __init__(self, loader: Loader):
        self.loader = loader
        self.inputs: Dict[Any, Tuple[bool, Any]] = {}

    def load(self, item: WorkItem) -> Any:
        ok, value = self.inputs[item.key]
        if ok:
            return value
        name, message = value
        raise _named_error(name)(message)

    def collate(self, inputs: Any) -> Any:
        return self.loader.collate(inputs)


@dataclass(frozen=True)
class LoadedSource(Source):
    """A source over items already read (one decoded batch): the driver
    checked the samples, so nothing here queries the database."""

    loaded: Tuple[WorkItem, ...] = ()

    def count(self) -> int:
        return len(self.loaded)

    def first_mismatch(self, field: str, value: Any) -> Optional[Dict[str, Any]]:
        return None

    def items(self) -> Iterator[WorkItem]:
        return iter(self.loaded)


class Replica:
    """A model replica: builds the model once, then runs the engine on each batch.

    Args:
        recipe: how to build the model.
        source: the run's source (its collection and names).
        sink: where outputs go (a copy per replica).
        options: the engine's options (``num_workers=0``: the batch is loaded).
        total: the run's size, for ``model.prepare``.
        keep_vectors: return the embeddings (``compute_embeddings`` without a field).
    """

    def __init__(self, recipe: Recipe, source: Source, sink: Sink, options: RunOptions, total: int, keep_vectors: bool):
        logging.getLogger("modelzoo.engine").setLevel(logging.ERROR)  # the driver logs the merged report
        start = time.perf_counter()
        self.model = recipe.build()
        self.model.prepare(total)
        self.build_s = time.perf_counter() - start  # reported once, with the first batch
        self.described = describe_model(self.model)
        self.replay = Replay(self.model.build_loader())
        self.source = source
        self.sink = sink
        self.options = dataclasses.replace(options, loader=self.replay)  # run_model loads the replay
        self.keep_vectors = keep_vectors
        self.name = replica_name()

    def _vector_sink(self) -> EmbeddingSink:
        """A fresh in-memory sink per batch (its vectors go back to the driver);
        failure messages still go to the error field, if any."""
        error_field = getattr(self.sink, "error_field", None)
        return EmbeddingSink(self.source.collection, self.source.dataset_name, None, error_field)

    def __call__(self, batch: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        rows: Dict[str, List[Any]] = {
            k: [] for k in ("processed", "failed", "failures", "replica", "vectors", "build_s", "model")
        }
        for packed in batch["loaded"]:
            loaded: Loaded = unpack(packed)
            self.replay.inputs = {item.key: (ok, value) for item, ok, value in loaded}
            items = tuple(item for item, _, _ in loaded)
            source = with_loaded(self.source, items)
            sink = self._vector_sink() if self.keep_vectors else self.sink
            report = run_model(source, self.model, sink, self.options)
            rows["processed"].append(report.processed)
            rows["failed"].append(report.failed)
            rows["failures"].append(pack(report.failures))
            rows["replica"].append(self.name)
            kept = (dict(sink.vectors), list(sink.failed)) if isinstance(sink, EmbeddingSink) and self.keep_vectors else None
            rows["vectors"].append(pack(kept))
            rows["build_s"].append(self.build_s)
            rows["model"].append(self.described)
            self.build_s = 0.0
            self.replay.inputs = {}
        return {k: object_column(v) for k, v in rows.items()}


def with_loaded(source: Source, items: Tuple[WorkItem, ...]) -> LoadedSource:
    """``source``'s names over ``items``."""
    fields = {f.name: getattr(source, f.name) for f in dataclasses.fields(Source)}
    return LoadedSource(**fields, loaded=items)
