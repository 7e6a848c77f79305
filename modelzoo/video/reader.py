"""Reading videos with PyAV (FFmpeg's libraries, in a wheel).

:func:`read_video_metadata` probes a file (no frame is decoded);
:class:`VideoReader` decodes it sequentially into uint8 ``(H, W, 3)`` RGB
frames, with the protocol of ETA's ``FFmpegVideoReader`` (what FiftyOne
passes to video models): iterate it, and read ``frame_number``,
``frame_size``, ``frame_rate`` and ``total_frame_count``.

Frame numbers start at 1 and follow decode (presentation) order; for
variable frame rate videos they are that order, not timestamps times a rate.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from ..errors import VideoError
from .selection import FrameSelection

__all__ = ["VideoInfo", "VideoReader", "read_video_metadata", "DecodedFrame"]


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container says, read without decoding a frame.

    Attributes:
        width, height: frame size in pixels.
        frame_rate: average frames per second.
        total_frame_count: frames in the video stream (counted from its
            packets when the container does not say).
        duration: seconds.
        codec: the video codec (``"h264"``, ``"mpeg4"``, ``"mjpeg"``...).
        container: the container format as FFmpeg names it.
        size_bytes: the file's size.
        mime_type: from the file's extension.
    """

    width: int
    height: int
    frame_rate: float
    total_frame_count: int
    duration: float
    codec: str
    container: str
    size_bytes: int
    mime_type: str


def _open(path: str) -> Tuple[Any, Any]:
    """The container and its first video stream, or VideoError naming the file."""
    import av

    if not os.path.isfile(path):
        raise VideoError(f"Video file not found: {path}")
    if os.path.getsize(path) == 0:
        raise VideoError(f"Cannot open video {path}: the file is empty (0 bytes)")
    try:
        container = av.open(path, "r")
    except Exception as e:
        raise VideoError(f"Cannot open video {path}: {type(e).__name__}: {e}") from None
    if not container.streams.video:
        kinds: list = sorted({str(s.type) for s in container.streams}) or ["no streams"]
        container.close()
        raise VideoError(f"Cannot open video {path}: it has no video stream (found {', '.join(kinds)})")
    stream = container.streams.video[0]
    if not stream.codec_context.width:
        container.close()
        raise VideoError(f"Cannot open video {path}: its video stream has no frame size (corrupt header?)")
    return container, stream


def _rate(stream: Any) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _rgb(frame: Any) -> np.ndarray:
    """A decoded frame as an ``(H, W, 3)`` uint8 RGB array, converted on this
    thread alone. PyAV converts each frame with a scaler of its own, which by
    default (PyAV >= 17) starts and joins a slice thread per frame. That is
    slower (decode plus conversion, medians of 5 rounds in one process:
    0.66 against 0.93 ms/frame at 640x480, 1.23 against 1.41 at 1280x720)
    and it is where the forked loader workers of a test run once hung for
    good (each worker and its slice threads all waiting, its main thread in
    ``avpriv_slicethread_execute``)."""
    return frame.to_ndarray(format="rgb24", threads=1)


def _count_packets(container: Any, stream: Any) -> int:
    n = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
    except Exception:  # a truncated file: count what is there
        pass
    return n


def read_video_metadata(path: str) -> VideoInfo:
    """Probes ``path``: size, frame rate, frame count, duration, codec.

    Raises:
        VideoError: the file is missing, empty, not a video, or has no video stream.
    """
    container, stream = _open(path)
    try:
        rate = _rate(stream)
        frames = int(stream.frames or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        if frames <= 0:
            frames = _count_packets(container, stream)
            # The header's duration says how many frames there should be: a
            # file cut short (a truncated download) has fewer packets, and the
            # frames it lacks are reported as failed when a model runs on it.
            promised = int(round(duration * rate)) if duration and rate else 0
            if promised > frames + max(2, frames // 100):
                frames = promised
        if not duration and rate:
            duration = frames / rate
        return VideoInfo(
            width=int(stream.codec_context.width),
            height=int(stream.codec_context.height),
            frame_rate=rate,
            total_frame_count=frames,
            duration=duration,
            codec=str(stream.codec_context.name),
            container=str(container.format.name),
            size_bytes=os.path.getsize(path),
            mime_type=mimetypes.guess_type(path)[0] or "video/unknown",
        )
    finally:
        container.close()


@dataclass
class DecodedFrame:
    """One frame as :meth:`VideoReader.decoded` yields it.

    Attributes:
        frame_number: 1-based, decode order.
        image: uint8 ``(H, W, 3)`` RGB, or None when the frame failed to decode.
        error: why it failed (None when it decoded).
    """

    frame_number: int
    image: Optional[np.ndarray]
    error: Optional[str] = None


class VideoReader:
    """Decodes a video sequentially into uint8 ``(H, W, 3)`` RGB frames.

    The protocol of ETA's ``FFmpegVideoReader``: iterating yields frames;
    :attr:`frame_number` is the number of the frame last read (1-based, 0
    before the first); :attr:`frame_size` is ``(width, height)``. A context
    manager; the container is closed at the end of iteration, by
    :meth:`close`, or on exit. Frames that fail to decode are skipped (their
    numbers are used up) and listed in :attr:`errors`.

    Args:
        path: the video file.
        frames: only yield these frames (every frame is still decoded,
            sequentially; the others are not converted to RGB).

    Raises:
        VideoError: the file cannot be opened as a video.
    """

    def __init__(self, path: str, frames: Optional[FrameSelection] = None):
        self.inpath = os.fspath(path)
        self.frames = frames or FrameSelection()
        self._container, self._stream = _open(self.inpath)
        self._rate = _rate(self._stream)
        count = int(self._stream.frames or 0)
        self._total = count if count > 0 else None
        self.frame_number = 0
        self.errors: list = []
        self._iter: Optional[Iterator[DecodedFrame]] = None

    # -- the protocol ----------------------------------------------------------------
    @property
    def frame_size(self) -> Tuple[int, int]:
        """``(width, height)``."""
        cc = self._stream.codec_context
        return int(cc.width), int(cc.height)

    @property
    def frame_rate(self) -> float:
        """Average frames per second."""
        return self._rate

    @property
    def total_frame_count(self) -> int:
        """Frames in the video (from the container, else counted from packets
        once, with a second pass over the file's packets, no decoding)."""
        if self._total is None:
            container, stream = _open(self.inpath)
            try:
                self._total = _count_packets(container, stream)
            finally:
                container.close()
        return self._total

    @property
    def encoding_str(self) -> str:
        return str(self._stream.codec_context.name)

    def __iter__(self) -> "VideoReader":
        return self

    def __next__(self) -> np.ndarray:
        if self._iter is None:
            self._iter = self.decoded()
        for decoded in self._iter:
            if decoded.image is not None:
                return decoded.image
        raise StopIteration

    def read(self) -> np.ndarray:
        """The next frame (StopIteration at the end)."""
        return next(self)

    # -- decoding --------------------------------------------------------------------
    def decoded(self) -> Iterator[DecodedFrame]:
        """Every selected frame, decoded or failed, in order; stops after the
        last selected frame and closes the container at the end."""
        import av

        last = self.frames.last()
        select = self.frames.selects
        rate = self._rate
        container, stream = self._container, self._stream
        n = 0
        try:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError as e:  # unreadable past here: a truncated file
                    self.errors.append((n + 1, f"{type(e).__name__}: {e}"))
                    break
                try:
                    frames = packet.decode()
                except av.error.FFmpegError as e:
                    if not packet.size:
                        break
                    n += 1  # one packet is one video frame: this one is lost
                    self.frame_number = n
                    message = f"frame {n} of {self.inpath} failed to decode: {type(e).__name__}: {e}"
                    self.errors.append((n, message))
                    if select(n, rate):
                        yield DecodedFrame(n, None, message)
                    continue
                for frame in frames:
                    n += 1
                    self.frame_number = n
                    if select(n, rate):
                        yield DecodedFrame(n, _rgb(frame))
                    if last is not None and n >= last:
                        return
        finally:
            self.close()

    def close(self) -> None:
        """Closes the container (idempotent)."""
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({self.inpath!r}, frame {self.frame_number})"
