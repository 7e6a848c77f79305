"""The outputs of video models, written as frame labels in chunks.

A video model's ``predict(reader)`` returns ``{frame_number: label or dict
of labels}`` (the Model contract), or an iterator of ``(frame_number,
labels)`` pairs. Either way the engine writes the frames in chunks of
:data:`FRAME_CHUNK`, through the run's sink, from its background writer; an
iterator is consumed as the model reads the video, so its labels are
written while the video is still being decoded and neither the frames nor
the labels of a long video are held at once. Frame numbers are checked
against the video: one outside it is a :class:`~modelzoo.ModelError`
naming the model, the sample and the frame.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Iterator, Mapping

from ..errors import ModelError, PredictionError
from ..loaders import WorkItem
from .report import ApplyReport
from .sinks import SinkBatch

__all__ = ["FRAME_CHUNK", "VideoOutputs"]

#: frames per write of a video model's labels
FRAME_CHUNK = 256


def _is_frame_number(key: Any) -> bool:
    return isinstance(key, numbers.Integral) and not isinstance(key, bool)


class VideoOutputs:
    """Writes the outputs of a video model's batches; closes their readers.

    Args:
        model: the video model (for messages).
        report: the run's report (frames and samples are counted here).
    """

    def __init__(self, model: Any, report: ApplyReport):
        self.model = model
        self.report = report
        self._readers: Dict[Any, Any] = {}

    def opened(self, item: WorkItem, reader: Any) -> None:
        """Keeps the reader the model gets for ``item`` (to check frame
        numbers against, and to close)."""
        before = self._readers.get(item.key)
        if before is not None and before is not reader:
            _close(before)
        self._readers[item.key] = reader

    def close_all(self) -> None:
        for reader in self._readers.values():
            _close(reader)
        self._readers.clear()

    def write(
        self,
        out: SinkBatch,
        submit: Callable[[SinkBatch], None],
        fail: Callable[[WorkItem, str, str, SinkBatch], None],
    ) -> None:
        """Submits ``out``'s outputs: sample labels as they are, frame labels in chunks."""
        failures = SinkBatch(failures=list(out.failures))
        try:
            for item, output in out.outputs:
                if not _is_frames(output):
                    submit(SinkBatch(outputs=[(item, output)]))
                    self.report.processed += 1
                    continue
                reader = self._readers.get(item.key)
                try:
                    for chunk in self._chunks(item, output, reader):
                        submit(SinkBatch(outputs=[(item, chunk)]))
                        self.report.frames_processed += len(chunk)
                    self.report.processed += 1
                except (ModelError, PredictionError):
                    raise
                except Exception as e:  # the model failed while reading this video
                    fail(item, f"{type(e).__name__}: {e}", "predict", failures)
                finally:
                    if reader is not None:
                        _close(reader)
                        self._readers.pop(item.key, None)
        finally:
            if failures.failures:
                submit(failures)
            self.close_all()

    def _chunks(self, item: WorkItem, output: Any, reader: Any) -> Iterator[Dict[int, Any]]:
        if isinstance(output, Mapping):
            for n in output:  # the whole dict is checked before any of it is written
                self._check(item, n, reader, written=False)
            pairs: Iterator[Any] = iter(output.items())
            checked = True
        else:
            pairs = iter(output)
            checked = False
        chunk: Dict[int, Any] = {}
        for pair in pairs:
            try:
                n, labels = pair
            except (TypeError, ValueError):
                raise ModelError(
                    f"{type(self.model).__name__} yielded {pair!r} for sample {item.sample_id} ({item.filepath}); "
                    "a video model's iterator yields (frame_number, labels) pairs"
                ) from None
            if not checked:
                self._check(item, n, reader, written=True)
            chunk[int(n)] = labels
            if len(chunk) >= FRAME_CHUNK:
                yield chunk
                chunk = {}
        if chunk:
            yield chunk

    def _check(self, item: WorkItem, n: Any, reader: Any, written: bool) -> None:
        if _is_frame_number(n) and n >= 1 and (reader is None or n <= getattr(reader, "frame_number", 0)):
            return
        total = None if reader is None else _frame_count(reader)
        if _is_frame_number(n) and n >= 1 and (total is None or n <= total):
            return
        where = "" if total is None else f", which has {total} frames (numbered 1 to {total})"
        kept = (
            " The frames before it were written."
            if written
            else " Nothing of this sample was written."
        )
        raise ModelError(
            f"{type(self.model).__name__} returned labels for frame {n!r} of sample {item.sample_id} "
            f"({item.filepath}){where}: frame numbers are the 1-based numbers of the video's frames "
            f"(reader.frame_number after reading a frame).{kept}"
        )


def _frame_count(reader: Any) -> int:
    counted = int(getattr(reader, "frame_number", 0) or 0)
    try:
        total = int(reader.total_frame_count or 0)
    except Exception:
        total = 0
    return max(counted, total)


def _is_frames(output: Any) -> bool:
    """A frame-keyed dict, or an iterator of (frame_number, labels) pairs."""
    if isinstance(output, Mapping):
        return bool(output) and all(_is_frame_number(k) for k in output)
    return isinstance(output, Iterator)


def _close(reader: Any) -> None:
    close = getattr(reader, "close", None)
    if callable(close):
        close()
