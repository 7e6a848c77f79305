"""Runs over the frames of videos: each video is decoded once, sequentially,
by one loader worker, and its selected frames are the work items.

The main process reads the run's videos (:func:`video_tasks`: each one's
frame count and rate from its metadata, and with ``skip_existing`` the
frames already done); :class:`FrameStream` splits them across the loader
workers by video (no seek per frame), and each worker turns its videos'
frames into model inputs with the loader's
:meth:`~modelzoo.loaders.Loader.load_frame` and cuts them into batches that
run across frames and videos. A frame that fails to decode costs that
frame; a video that cannot be opened costs its sample; frames that the
metadata promised and the file did not give (a truncated video) are
failures of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, FrozenSet, Iterator, List, Optional, Tuple

from ..loaders import Loader, WorkItem
from ..storage import FRAME_ID, FRAME_NUMBER, collection, frames_collection_name
from ..video.selection import FrameSelection
from .batching import LoadedBatch
from .source import Source

__all__ = ["VideoTask", "video_tasks", "frames_of", "frame_batches", "FrameStream"]

Result = Tuple[WorkItem, bool, Any]


@dataclass(frozen=True)
class VideoTask:
    """One video of a run over frames.

    Attributes:
        item: the video sample's item (``frame_number`` None).
        total_frame_count: its frame count from the metadata (0: unknown).
        frame_rate: its average frame rate (for ``fps`` selections).
        skip: frame numbers already done (``skip_existing``).
    """

    item: WorkItem
    total_frame_count: int = 0
    frame_rate: Optional[float] = None
    skip: FrozenSet[int] = frozenset()


def video_tasks(source: Source) -> List[VideoTask]:
    """The videos of a frame source, in sample order."""
    projection = source.projection()
    projection.update({"metadata.total_frame_count": 1, "metadata.frame_rate": 1})
    done_query = source.frames_done
    frames = collection(frames_collection_name(source.collection)) if done_query is not None else None
    tasks = []
    for doc in source.documents(projection):
        meta = doc.get("metadata") or {}
        skip: FrozenSet[int] = frozenset()
        if frames is not None:
            found = frames.find({"$and": [{FRAME_ID: doc["_id"]}, done_query]}, {FRAME_NUMBER: 1, "_id": 0})
            skip = frozenset(d[FRAME_NUMBER] for d in found)
        tasks.append(VideoTask(source.item_of(doc), int(meta.get("total_frame_count") or 0), meta.get("frame_rate"), skip))
    return tasks


def frames_of(task: VideoTask, loader: Loader, selection: FrameSelection) -> Iterator[Result]:
    """Decodes one video: ``(frame item, True, input)`` per selected frame,
    ``(frame item, False, message)`` per frame that failed, or one
    ``(video item, False, message)`` when the video cannot be opened."""
    from ..video import VideoReader

    item = task.item
    try:
        reader = VideoReader(item.filepath or "", selection)
    except Exception as e:
        yield item, False, f"{type(e).__name__}: {e}"
        return
    rate = task.frame_rate or reader.frame_rate
    with reader:
        for decoded in reader.decoded():
            n = decoded.frame_number
            if n in task.skip:
                continue
            frame_item = item._replace(frame_number=n)
            if decoded.image is None:
                yield frame_item, False, decoded.error or "failed to decode"
                continue
            try:
                yield frame_item, True, loader.load_frame(frame_item, decoded.image)
            except Exception as e:  # a per-frame data error: keep it with its frame
                yield frame_item, False, f"{type(e).__name__}: {e}"
        last = reader.frame_number
        errors = list(reader.errors)
    expected = task.total_frame_count
    end = selection.last()
    if end is not None:
        expected = min(expected, end)
    if expected > last:  # the metadata promised frames the file did not give
        why = f": {errors[-1][1]}" if errors else ""
        for n in range(last + 1, expected + 1):
            if n not in task.skip and selection.selects(n, rate):
                message = (
                    f"frame {n} of {item.filepath} was not decoded: the video stream ends after frame {last} "
                    f"of the {task.total_frame_count} its metadata lists (truncated?){why}"
                )
                yield item._replace(frame_number=n), False, message


def _batch(results: List[Result], finished: List[WorkItem]) -> LoadedBatch:
    items = [r for r, ok, _ in results if ok]
    raw = [x for _, ok, x in results if ok]
    failures = [(r, x) for r, ok, x in results if not ok]
    return LoadedBatch(items, None, failures, raw=raw, finished=finished)


def frame_batches(
    tasks: List[VideoTask], loader: Loader, selection: FrameSelection, batch_size: int
) -> Iterator[LoadedBatch]:
    """The frames of ``tasks``' videos, decoded in order, in batches of
    ``batch_size`` loaded frames (across videos), uncollated (``raw``)."""
    results: List[Result] = []
    finished: List[WorkItem] = []
    loaded = 0
    for task in tasks:
        opened = True
        for result in frames_of(task, loader, selection):
            if result[0].frame_number is None:
                opened = False
            results.append(result)
            loaded += result[1]
            if loaded >= batch_size:
                yield _batch(results, finished)
                results, finished, loaded = [], [], 0
        if opened:
            finished.append(task.item)
    if results or finished:
        yield _batch(results, finished)


class FrameStream:
    """The loaded frame batches of a run over frames, from up to
    ``num_workers`` loader processes (one video is one worker's, start to
    end; at most one worker per video). Batches are collated here, in the
    main process, from their ``raw`` inputs, which the batch keeps so that
    after a failed batch each frame can be predicted alone.

    Args:
        tasks: the videos.
        loader: the model's loader (its ``load_frame`` runs in the workers).
        selection: the frames of each video.
        batch_size: frames per batch.
        num_workers: loader processes (0: decode in the main process).
        pin_memory: pin the collated batches (CUDA models).
    """

    def __init__(
        self,
        tasks: List[VideoTask],
        loader: Loader,
        selection: FrameSelection,
        batch_size: int,
        num_workers: int,
        pin_memory: bool = False,
    ):
        self.tasks = tasks
        self.loader = loader
        self.selection = selection
        self.batch_size = batch_size
        self.num_workers = min(num_workers, len(tasks))
        self.pin_memory = pin_memory

    def _loaded(self) -> Iterator[LoadedBatch]:
        if self.num_workers == 0:
            return frame_batches(self.tasks, self.loader, self.selection, self.batch_size)
        from .frame_dataset import data_loader

        return data_loader(self.tasks, self.loader, self.selection, self.batch_size, self.num_workers)

    def __iter__(self) -> Iterator[LoadedBatch]:
        for batch in self._loaded():
            if batch.raw:
                batch.inputs = self.loader.collate(batch.raw)
                if self.pin_memory:
                    batch.pin_memory()
            yield batch
