"""Sinks: where a run's outputs go.

The engine hands a sink one :class:`SinkBatch` per model batch, in order,
from its background writer thread (so a write overlaps the next batch's
forward), then calls :meth:`Sink.close` once. A sink holds names and plain
data only, so it pickles to other processes; each process of a sharded run
has its own.

Write your own by subclassing :class:`Sink`::

    class JsonLinesSink(Sink):
        def __init__(self, path):
            self.path = path

        def write(self, batch):
            with open(self.path, "a") as f:
                for item, label in batch.outputs:
                    f.write(json.dumps({"id": str(item.sample_id), "label": label.label}) + "\\n")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import ModelError
from ..fields import check_output_field, label_updates
from ..labels import filter_classes, filter_output
from ..loaders import WorkItem
from ..storage import bulk_set
from .embeddings import stack_rows

__all__ = ["SinkBatch", "Sink", "LabelSink", "FrameSink", "EmbeddingSink"]


@dataclass
class SinkBatch:
    """What one model batch produced.

    Attributes:
        outputs: ``(item, output)`` for each item predicted, in order.
        failures: ``(item, message)`` for each item that failed to load or predict.
    """

    outputs: List[Tuple[WorkItem, Any]] = field(default_factory=list)
    failures: List[Tuple[WorkItem, str]] = field(default_factory=list)


class Sink:
    """Base of sinks: implement :meth:`write`; :meth:`close` is optional."""

    def write(self, batch: SinkBatch) -> None:
        """Stores one batch's outputs (called in order, from one thread)."""
        raise NotImplementedError(f"{type(self).__name__} must implement write(batch)")

    def close(self) -> None:
        """Called once after the last batch (also after an error or Ctrl-C,
        once every finished batch was written)."""


class _FieldSink(Sink):
    """A sink writing fields of the samples (and, when asked, each failure's message)."""

    def __init__(self, collection: str, dataset_name: str = "", error_field: Optional[str] = None):
        self.collection = collection
        self.dataset_name = dataset_name
        self.error_field = check_output_field(error_field, "error_field") if error_field else None

    def _updates(self, batch: SinkBatch) -> Dict[Any, Dict[str, Any]]:
        if not self.error_field:
            return {}
        return {item.key: {self.error_field: message} for item, message in batch.failures}

    def _store(self, updates: Mapping[Any, Mapping[str, Any]]) -> None:
        # keys are sample ids, or (sample id, frame number) for frames: bulk_set
        # writes those to the dataset's frames collection
        if updates:
            bulk_set(self.collection, updates, self.dataset_name)


class LabelSink(_FieldSink):
    """Stores each output as labels on its sample, one bulk write per batch.

    Args:
        collection: the samples' collection.
        dataset_name: for messages.
        label_field: where a Label goes; for a dict of Labels, the prefix
            (``label_field + "_" + key``) or a ``{key: field}`` mapping (see
            :func:`modelzoo.fields.label_updates`).
        confidence_thresh: drop predictions below it (paired detections and
            keypoints are dropped together; see :func:`modelzoo.labels.filter_output`).
        error_field: also store each failure's message in this field.
        classes: keep only predictions of these classes (see
            :func:`modelzoo.labels.filter_classes`).
        mask_writer: a :class:`~modelzoo.engine.mask_files.MaskWriter`: masks
            and maps go to PNG files, the labels keep their paths.
    """

    def __init__(
        self,
        collection: str,
        dataset_name: str = "",
        label_field: Union[str, Mapping[str, str]] = "predictions",
        confidence_thresh: Optional[float] = None,
        error_field: Optional[str] = None,
        classes: Optional[Sequence[str]] = None,
        mask_writer: Any = None,
    ):
        super().__init__(collection, dataset_name, error_field)
        self.label_field = label_field
        self.confidence_thresh = confidence_thresh
        self.classes = list(classes) if classes is not None else None
        self.mask_writer = mask_writer

    def write(self, batch: SinkBatch) -> None:
        updates = self._updates(batch)
        for item, output in batch.outputs:
            output = filter_classes(_filtered(output, self.confidence_thresh), self.classes)
            if self.mask_writer is not None:  # masks and maps to PNG files, here in the writer thread
                field = self.label_field if isinstance(self.label_field, str) else "labels"
                output = self.mask_writer.externalize(output, item.sample_id, item.filepath, field, item.frame_number)
            updates[item.key] = label_updates(output, self.label_field)
        self._store(updates)


class FrameSink(LabelSink):
    """Stores frame labels: the outputs of frame items (an image model run
    over the frames of videos) go to the frames' documents, one bulk write
    per batch of frames (across videos). Takes the arguments of
    :class:`LabelSink`; ``error_field`` is set on the failed frame (or, for
    a video that could not be opened, on its sample).

    A :class:`LabelSink` writes frame labels too (the frame-keyed dicts of
    video models); this class names the intent.
    """


def _filtered(output: Any, thresh: Optional[float]) -> Any:
    if thresh is None or not isinstance(output, Mapping) or not output or not all(
        isinstance(k, int) and not isinstance(k, bool) for k in output
    ):
        return filter_output(output, thresh)
    return {n: filter_output(labels, thresh) for n, labels in output.items()}  # a video model's frames


class EmbeddingSink(_FieldSink):
    """Stores each embedding in a field, or keeps them for :meth:`array`.

    Args:
        collection: the samples' collection (needed with ``field``).
        dataset_name: for messages.
        field: store each vector (float32) in this field; None keeps them
            in memory for :meth:`array`.
        error_field: also store each failure's message in this field.
    """

    def __init__(
        self,
        collection: str = "",
        dataset_name: str = "",
        field: Optional[str] = None,
        error_field: Optional[str] = None,
    ):
        super().__init__(collection, dataset_name, error_field)
        self.field = check_output_field(field, "embeddings_field") if field else None
        self.vectors: Dict[Any, np.ndarray] = {}
        self.failed: List[Any] = []

    def write(self, batch: SinkBatch) -> None:
        updates = self._updates(batch)
        if self.field is None:
            self.failed.extend(item.key for item, _ in batch.failures)
        for item, vector in batch.outputs:
            vector = np.asarray(vector, dtype=np.float32)
            if self.field is None:
                self.vectors[item.key] = vector
            else:
                updates[item.key] = {self.field: vector}
        self._store(updates)

    def merge(self, other: "EmbeddingSink") -> "EmbeddingSink":
        """Takes the vectors another process's sink kept (for sharded runs)."""
        self.vectors.update(other.vectors)
        self.failed.extend(other.failed)
        return self

    def array(self, keys: Optional[Sequence[Any]] = None, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
        """The kept vectors as a float32 ``(len(keys), D)`` array in the order
        of ``keys`` (item keys: sample ids, or ``(sample id, frame number)``
        for frames; default: every item seen, in sample (then frame) order);
        rows without a vector (failed items) are NaN. In a run over frames, a
        video that could not be opened has no frames, so no rows. ``shape``:
        the shape of one vector, for a run where none was produced."""
        if keys is None:
            seen = set(self.vectors) | set(self.failed)
            if any(isinstance(k, tuple) for k in seen):
                seen = {k for k in seen if isinstance(k, tuple)}
            keys = sorted(seen)
        shapes = {v.shape for v in self.vectors.values()}
        if len(shapes) > 1:
            raise ModelError(f"The model returned embeddings of different shapes: {sorted(shapes)}")
        shape = shapes.pop() if shapes else (shape or (0,))
        return stack_rows(self.vectors, keys, shape)
