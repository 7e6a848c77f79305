"""Decoding requests off the event loop, bounded: :class:`DecodePool` and the pixel limit.

The server parses, reads and decodes every request in a :class:`DecodePool`:
a fixed number of daemon threads beside the event loop, so that a slow or
stuck decode never holds ``/readyz``, ``/info`` or another connection, and a
stuck thread never keeps the process alive at exit. The app waits for each
request's task with a timeout (then 503) and :meth:`DecodePool.close`, called
when the server stops, answers every task still waiting or running at once.

Images are checked before their pixels are decoded: :func:`open_image_bytes`
reads the header and refuses more than ``max_pixels`` (a 164 KB PNG may
declare 13000 x 13000 pixels, 507 MB once decoded).
"""

from __future__ import annotations

import io
import queue
import threading
from concurrent.futures import Future, InvalidStateError
from typing import Any, Callable, Optional, Set, Tuple

import numpy as np

from .errors import BatcherClosedError, InputError, TooLargeError

__all__ = ["DecodePool", "open_image_bytes", "check_image_bytes", "decode_array", "decode_pil"]


class DecodePool:
    """A fixed pool of daemon threads running one task per request.

    Args:
        workers: the number of threads (>= 1).
        name: the served model's name, for thread names and messages.
    """

    def __init__(self, workers: int, name: str = "model"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.name = name
        self._queue: "queue.SimpleQueue[Optional[Tuple[Future, Callable[..., Any], Tuple[Any, ...]]]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._pending: Set[Future] = set()
        self._running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"modelzoo-decode[{name}]-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def __repr__(self) -> str:
        return f"DecodePool({self.name!r}, workers={len(self._threads)}, busy={self.busy}, waiting={self.waiting})"

    @property
    def busy(self) -> int:
        """Tasks running now."""
        with self._lock:
            return self._running

    @property
    def waiting(self) -> int:
        """Tasks queued and not yet started."""
        with self._lock:
            return len(self._pending) - self._running

    def submit(self, fn: Callable[..., Any], *args: Any) -> "Future[Any]":
        """Queues ``fn(*args)``; its future holds the result or the exception
        (:class:`BatcherClosedError` once the pool is closed)."""
        future: "Future[Any]" = Future()
        with self._lock:
            if self._closed:
                future.set_exception(self._stopping())
                return future
            self._pending.add(future)
        future.add_done_callback(self._forget)
        self._queue.put((future, fn, args))
        return future

    def close(self) -> None:
        """Refuses new tasks and answers every queued or running one with
        :class:`BatcherClosedError` now; the threads end when their task
        returns (a stuck one is abandoned: it is a daemon). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            _settle(future, exception=self._stopping())
        for _ in self._threads:
            self._queue.put(None)

    def _stopping(self) -> BatcherClosedError:
        return BatcherClosedError(f"modelzoo serve {self.name}: the server is stopping; the request was not run")

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._running += 1
            try:
                result = fn(*args)
            except BaseException as e:
                _settle(future, exception=e)
            else:
                _settle(future, result=result)
            finally:
                with self._lock:
                    self._running -= 1


def _settle(future: Future, result: Any = None, exception: Optional[BaseException] = None) -> None:
    """Sets a future's outcome unless it already has one (closed, or answered at close)."""
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


def open_image_bytes(data: bytes, what: str, max_pixels: int) -> Any:
    """An encoded image, opened (header only) and checked against ``max_pixels``.

    Raises:
        InputError: not an image PIL reads.
        TooLargeError: over ``max_pixels``, or Pillow's own decompression-bomb limit.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError("image", f"{what} are not an image file of a format PIL reads (JPEG, PNG, ...)") from None
    except Image.DecompressionBombError as e:
        raise TooLargeError("image", f"{what}: {e} (--max-pixels)", 0, max_pixels) from None
    except Exception as e:
        raise InputError("image", f"{what} are not an image PIL can open ({type(e).__name__}: {e})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise TooLargeError(
            "image", f"{what} are an image of {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (--max-pixels)", width * height, max_pixels,
        )
    return img


def check_image_bytes(data: bytes, what: str, max_pixels: int) -> None:
    """For a model that decodes by itself: refuses an image over ``max_pixels``
    (read from its header); bytes PIL does not recognise pass (the model may take them)."""
    try:
        open_image_bytes(data, what, max_pixels).close()
    except TooLargeError:
        raise
    except InputError:
        pass


def decode_pil(data: bytes, what: str, max_pixels: int, exif_orientation: bool = False) -> Any:
    """Encoded bytes -> an RGB PIL image, after the pixel check (upright when
    ``exif_orientation``, as :func:`modelzoo.image_io.read_image` reads files).

    Raises:
        InputError: not an image, or it does not decode; ``TooLargeError``: over the limit.
    """
    from ..image_io import decode_rgb, upright
    from ..media import exif_orientation_of

    img = open_image_bytes(data, what, max_pixels)
    try:
        orientation = exif_orientation_of(img) if exif_orientation else 1
        rgb = decode_rgb(img, what)
        rgb = rgb if rgb is not img else img.copy()
        return upright(rgb, orientation)
    except OSError as e:
        raise InputError("image", str(e)) from None
    finally:
        img.close()


def decode_array(data: bytes, what: str, max_pixels: int, exif_orientation: bool = False) -> np.ndarray:
    """Encoded bytes -> a uint8 ``(H, W, 3)`` RGB array (see :func:`decode_pil`)."""
    return np.asarray(decode_pil(data, what, max_pixels, exif_orientation))
