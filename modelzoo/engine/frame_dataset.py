"""The torch side of :class:`~modelzoo.engine.frames.FrameStream`: an
``IterableDataset`` that gives each DataLoader worker whole videos. Kept
apart so that importing the engine does not import torch."""

from __future__ import annotations

from typing import Any, Iterator, List

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..loaders import Loader
from ..video.selection import FrameSelection
from .batching import LoadedBatch
from .frames import VideoTask, frame_batches

__all__ = ["VideoFrameDataset", "data_loader"]


class VideoFrameDataset(IterableDataset):
    """Worker ``i`` of ``k`` decodes videos ``i, i + k, i + 2k, ...`` and
    yields their frames in :class:`LoadedBatch` objects. Picklable."""

    def __init__(self, tasks: List[VideoTask], loader: Loader, selection: FrameSelection, batch_size: int):
        self.tasks = tasks
        self.loader = loader
        self.selection = selection
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[LoadedBatch]:
        info = get_worker_info()
        mine = self.tasks if info is None else self.tasks[info.id :: info.num_workers]
        return frame_batches(mine, self.loader, self.selection, self.batch_size)


def _as_is(batch: Any) -> Any:
    return batch


def data_loader(
    tasks: List[VideoTask], loader: Loader, selection: FrameSelection, batch_size: int, num_workers: int
) -> Iterator[LoadedBatch]:
    """The batches of ``num_workers`` worker processes, as they come."""
    return iter(
        DataLoader(
            VideoFrameDataset(tasks, loader, selection, batch_size),
            batch_size=None,
            num_workers=num_workers,
            collate_fn=_as_is,
            prefetch_factor=2,
            persistent_workers=False,
        )
    )
