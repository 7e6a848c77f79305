"""Running the viewer: uvicorn on a loopback socket, in a thread, stopped by ``close()``."""

from __future__ import annotations

import contextlib
import secrets
import signal
import threading
from typing import Any, Iterator, Optional

import uvicorn

from ..errors import ModelzooError
from ..loopback import StartedServer, listen, stop
from .api import create_app
from .thumbnails import ThumbnailCache
from .video_frames import FrameServer

__all__ = ["App", "AppError"]


class AppError(ModelzooError):
    """The viewer cannot start (the address is taken, the server failed)."""


class _Uvicorn(StartedServer):
    """uvicorn's server; signals are left to the caller (a thread cannot take
    them, and a notebook must keep its own)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class App:
    """A running viewer of a dataset or view: open :attr:`url` in a browser.

    Made by :func:`modelzoo.app.launch_app` (``dataset.launch_app()``); it
    serves from a background thread until :meth:`close` (or the end of a
    ``with`` block). In a notebook, the handle displays as a link.

    Args:
        samples: the dataset or view shown.
        port: the port (0: a free one).
        host: the address to bind: loopback only, so other machines cannot connect.
        cache_dir: where thumbnails are kept (default: ``$MODELZOO_HOME/app/thumbnails``).
        workers: processes making thumbnails.

    Raises:
        AppError: the address cannot be bound, or the server does not start.
    """

    def __init__(
        self, samples: Any, port: int = 0, host: str = "127.0.0.1", cache_dir: Optional[str] = None,
        workers: Optional[int] = None,
    ):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise AppError(f"The viewer binds to this machine only (127.0.0.1 or ::1), got host={host!r}")
        self.samples = samples
        self.token = secrets.token_urlsafe(24)
        try:
            sock = listen(host, port, 512)
        except OSError as e:
            raise AppError(f"modelzoo app: cannot listen on {host}:{port}: {e.strerror or e}; pick another port") from None
        self._socket = sock
        self.host, self.port = host, int(sock.getsockname()[1])
        self.thumbnails = ThumbnailCache(cache_dir, workers)
        self._frames = FrameServer()
        try:
            asgi = create_app(samples, self.token, self.thumbnails, cookie=f"modelzoo_app_{self.port}", video_frames=self._frames)
        except BaseException:
            sock.close()
            self.thumbnails.close()
            raise
        config = uvicorn.Config(asgi, log_level="warning", lifespan="off", timeout_graceful_shutdown=2)
        self._server = _Uvicorn(config)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._closed = False

    @property
    def url(self) -> str:
        """The page's address, with the token."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    def __repr__(self) -> str:
        return f"<modelzoo App of {self.samples.name!r} at {self.url}>"

    def _repr_html_(self) -> str:
        return f'<a href="{self.url}" target="_blank" rel="noopener">modelzoo viewer of {self.samples.name}</a>'

    def start(self) -> "App":
        """Serves from a background thread; returns once it accepts connections."""
        if self._thread is not None:
            return self

        def target() -> None:
            try:
                self._server.run(sockets=[self._socket])
            except BaseException as e:  # SystemExit from a failed startup too
                self._error = e
            finally:
                self._server.started_event.set()
                self._socket.close()

        self._thread = threading.Thread(target=target, name=f"modelzoo-app[{self.samples.name}]", daemon=True)
        self._thread.start()
        self._server.started_event.wait()
        if self._error is not None:
            self.close()
            raise AppError(f"modelzoo app: the server did not start: {self._error!r}")
        return self

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive() and not self._closed

    def wait(self) -> None:
        """Serves until SIGINT (Ctrl-C) or SIGTERM, then closes. Call it from the main thread."""
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while self.running and not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stops the server and the thumbnail workers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        stop(self._server, self._thread, self._socket, timeout)
        self.thumbnails.close()
        self._frames.close()

    def __enter__(self) -> "App":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
