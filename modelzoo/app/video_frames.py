"""Video frames as images, for videos the browser cannot play itself
(MPEG-4 part 2, MJPEG, ...): the page then shows frame after frame as JPEGs.

Frames are decoded in order by :class:`~modelzoo.video.VideoReader` (the
numbering every frame label uses: 1-based, decode order); a reader is kept
per video, so playing forward decodes each frame once; a step back reopens
the file.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Any, Iterator, Optional, Tuple

from PIL import Image

from ..video import VideoReader

__all__ = ["FrameServer"]


class _Cursor:
    """One open video, decoding forward."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.Lock()
        self._open()

    def _open(self) -> None:
        self.reader = VideoReader(self.path)
        self.frames: Iterator[Any] = self.reader.decoded()
        self.last: Optional[Tuple[int, Any]] = None

    def frame(self, n: int) -> Any:
        """The decoded frame ``n`` (uint8 HWC RGB), or None past the end."""
        if self.last is not None and self.last[0] == n:
            return self.last[1]
        if self.last is not None and self.last[0] > n:
            self.reader.close()
            self._open()
        for decoded in self.frames:
            if decoded.image is not None:
                self.last = (decoded.frame_number, decoded.image)
            if decoded.frame_number >= n:
                return self.last[1] if self.last is not None else None
        return None

    def close(self) -> None:
        self.reader.close()


class FrameServer:
    """JPEGs of video frames, from up to ``max_open`` videos kept open."""

    def __init__(self, max_open: int = 4):
        self.max_open = max_open
        self._cursors: "OrderedDict[str, _Cursor]" = OrderedDict()
        self._lock = threading.Lock()

    def jpeg(self, path: str, n: int, quality: int = 90) -> Optional[bytes]:
        """Frame ``n`` (1-based) of the video at ``path`` as JPEG bytes; None past its end."""
        with self._lock:
            cursor = self._cursors.pop(path, None) or _Cursor(path)
            self._cursors[path] = cursor
            while len(self._cursors) > self.max_open:
                evicted = self._cursors.popitem(last=False)[1]
                with evicted.lock:  # not while another request decodes from it
                    evicted.close()
        with cursor.lock:
            image = cursor.frame(n)
        if image is None:
            return None
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors.values():
                cursor.close()
            self._cursors.clear()
