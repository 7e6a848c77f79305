"""Videos: probing, sequential decoding, and frame selection.

* :func:`read_video_metadata`: what a file's container says (a
  :class:`VideoInfo`), no frame decoded;
* :class:`VideoReader`: uint8 ``(H, W, 3)`` RGB frames in decode order, with
  the protocol of ETA's ``FFmpegVideoReader`` (``frame_number``,
  ``frame_size``, ``frame_rate``, ``total_frame_count``), which is what
  video models receive;
* :class:`FrameSelection`: which frames an image model runs on;
* :func:`strip_frames`: evenly spaced frames of a video sample with their
  frame labels, what a picture of the sample shows (the drawing seam).
"""

from .reader import DecodedFrame, VideoInfo, VideoReader, read_video_metadata
from .selection import FrameSelection
from .strip import StripFrame, strip_frame_numbers, strip_frames

__all__ = [
    "DecodedFrame",
    "FrameSelection",
    "StripFrame",
    "VideoInfo",
    "VideoReader",
    "read_video_metadata",
    "strip_frame_numbers",
    "strip_frames",
]
