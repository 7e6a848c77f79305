"""What one request may cost the server: :class:`Limits` (bytes, pixels, threads, seconds).

Every read of a request is bounded in bytes and in time; see ``docs/serve.md``
("Limits") and ``docs/security.md`` ("The HTTP server").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

from . import defaults

__all__ = ["Limits"]


@dataclasses.dataclass(frozen=True)
class Limits:
    """The server's limits; each has a ``modelzoo serve`` option of the same name.

    Attributes:
        max_body_bytes: a larger request body is answered 413 (``--max-body-bytes``).
        max_file_bytes: a larger file named by a path input is answered 413
            (default: ``max_body_bytes``), checked before it is read.
        max_pixels: a larger image (its header's width x height) is answered
            413 before its pixels are decoded (``--max-pixels``).
        decode_workers: the threads that parse, read and decode requests; the
            event loop (``/readyz``, ``/info``, other connections) never waits for them.
        decode_timeout_s: the most a request waits for, and spends in, that
            pool; later it is answered 503.
        header_timeout_s: a connection that has not sent a whole request head
            in this long is answered 408 and closed.
        body_timeout_s: a request whose body has not arrived in this long is answered 408.
        keep_alive_timeout_s: an idle keep-alive connection is closed after this long.
    """

    max_body_bytes: int = defaults.MAX_BODY_BYTES
    max_file_bytes: Optional[int] = None
    max_pixels: int = defaults.MAX_PIXELS
    decode_workers: int = defaults.DECODE_WORKERS
    decode_timeout_s: float = defaults.DECODE_TIMEOUT_S
    header_timeout_s: float = defaults.HEADER_TIMEOUT_S
    body_timeout_s: float = defaults.BODY_TIMEOUT_S
    keep_alive_timeout_s: float = defaults.KEEP_ALIVE_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_file_bytes", "max_pixels", "decode_workers"):
            value = getattr(self, name)
            if value is None and name == "max_file_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits.{name} must be an integer >= 1, got {value!r}")
        for name in ("decode_timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < math.inf):
                raise ValueError(f"Limits.{name} must be a number of seconds > 0, got {value!r}")

    @property
    def file_bytes(self) -> int:
        """The file size limit in force (``max_file_bytes``, else ``max_body_bytes``)."""
        return self.max_file_bytes if self.max_file_bytes is not None else self.max_body_bytes
