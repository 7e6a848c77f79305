"""The frames a picture of a video sample shows: evenly spaced frames,
decoded in one sequential pass, with their frame labels.

This is the seam for drawing: the drawing library draws each
:class:`StripFrame`'s image with its labels, as it draws an image sample,
and lays them out as a strip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from .reader import VideoReader
from .selection import FrameSelection

__all__ = ["StripFrame", "strip_frame_numbers", "strip_frames"]


@dataclass
class StripFrame:
    """One frame of a strip.

    Attributes:
        frame_number: 1-based.
        image: uint8 ``(H, W, 3)`` RGB.
        labels: the frame's fields (those asked for), by name.
    """

    frame_number: int
    image: np.ndarray
    labels: Dict[str, Any] = field(default_factory=dict)


def strip_frame_numbers(total_frames: int, count: int) -> List[int]:
    """``count`` frame numbers spread evenly over ``1..total_frames``, first
    and last included (fewer when the video is shorter)."""
    if not isinstance(count, int) or count < 1:
        raise ConfigError(f"count must be a positive integer, got {count!r}")
    total = max(0, int(total_frames))
    if total <= count:
        return list(range(1, total + 1))
    if count == 1:
        return [1]
    return sorted({1 + round(i * (total - 1) / (count - 1)) for i in range(count)})


def strip_frames(
    sample: Any,
    count: int = 8,
    fields: Optional[Sequence[str]] = None,
    frame_numbers: Optional[Sequence[int]] = None,
) -> List[StripFrame]:
    """The frames to draw for a video sample, with their frame labels.

    Args:
        sample: a stored video :class:`~modelzoo.Sample`.
        count: how many frames, spread over the video (ignored with ``frame_numbers``).
        fields: the frame fields to include (default: every field of each frame).
        frame_numbers: exactly these frames.

    Raises:
        VideoError: the video cannot be opened.
    """
    with VideoReader(sample.filepath) as reader:
        total = (getattr(sample.metadata, "total_frame_count", None) or reader.total_frame_count)
        numbers = list(frame_numbers) if frame_numbers is not None else strip_frame_numbers(total, count)
        reader.frames = FrameSelection(numbers=tuple(numbers))
        decoded = [(d.frame_number, d.image) for d in reader.decoded() if d.image is not None]
    frames = sample.frames
    out = []
    for number, image in decoded:
        stored = frames[number]
        names = stored.keys() if fields is None else [f for f in fields if f in stored]
        out.append(StripFrame(number, image, {name: stored[name] for name in names}))
    return out
