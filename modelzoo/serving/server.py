"""Running the app: :class:`ModelServer`, uvicorn on a loopback socket, stopped gracefully.

``ModelServer(model).run()`` serves in the calling thread until SIGINT
(Ctrl-C) or SIGTERM; ``with ModelServer(model) as server:`` serves from a
background thread for the block. Stopping is graceful either way: the socket
stops accepting, requests in flight are answered (their batches run), then
the batcher is closed (the model's ``with`` block left, its thread joined).

The socket is bound when the server is made, so ``server.url`` holds the
real port even for ``port=0`` (the OS picks a free one);
``modelzoo serve`` prints that address when it starts, for a parent process
to read.

What a request may cost is bounded (:class:`~modelzoo.serving.limits.Limits`):
bytes, pixels, the decoding pool's threads, and seconds for the head, the
body and the decode (slow clients are timed out, see
:mod:`modelzoo.serving.connections`). Stopping answers requests still
decoding with 503 at once, so SIGTERM stops the server within a second
even with a decode stuck in flight (its thread is abandoned: a daemon).
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import math
import os
import signal
import socket
import threading
from typing import Any, Callable, Iterable, Iterator, List, Optional, Union

import uvicorn

from ..loopback import StartedServer, listen, stop
from ..models import Model
from . import defaults
from .app import create_app
from .batcher import Batcher
from .connections import LOOPBACK_HOSTS, HostCheck, protocol_class
from .decoding import DecodePool
from .errors import ServingError
from .limits import Limits
from .paths import resolve_roots

__all__ = ["ModelServer", "is_loopback", "DEFAULT_PORT"]

DEFAULT_PORT = defaults.PORT

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Uvicorn(StartedServer):
    """uvicorn's server, stopping on a signal without raising it again
    afterwards (uvicorn re-raises it, which would turn a graceful stop into a
    KeyboardInterrupt or a kill)."""

    def __init__(self, config: uvicorn.Config, on_stopping: Callable[[], None]):
        super().__init__(config)
        self.stop_signal: Optional[int] = None
        self.on_stopping = on_stopping

    async def shutdown(self, sockets: Optional[List[socket.socket]] = None) -> None:
        # Requests in flight may be queued for batch-mates that will never
        # come: run them now, so that uvicorn's wait for them ends.
        self.on_stopping()
        await super().shutdown(sockets=sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: Any) -> None:
        self.stop_signal = sig
        self.handle_exit(sig, frame)  # a second Ctrl-C forces the exit


class ModelServer:
    """Serves one model over HTTP: ``POST /predict``, ``GET /readyz`` (see :mod:`modelzoo.serving.app`).

    Args:
        model: any :class:`modelzoo.Model`; entered (``with model``) by the batcher.
        name: its name in the docs, answers and messages.
        host: the address to bind; loopback unless told otherwise.
        port: the port (0: a free one, picked by the OS).
        max_batch_size / max_wait_ms: the :class:`~modelzoo.serving.Batcher`'s.
        max_body_bytes: a larger request body is answered 413 (default: ``limits.max_body_bytes``).
        allow_paths: the folders whose files image requests may name
            (``{"path": ...}``): regular files under them only, symlinks
            resolved (see :mod:`modelzoo.serving.paths`). Default: none, path
            inputs are refused.
        limits: bytes, pixels, threads and seconds a request may take
            (default: :class:`~modelzoo.serving.limits.Limits`).
        graceful_timeout_s: how long requests in flight may take to finish once stopping.
        log_level: uvicorn's log level (``"warning"``: no line per request).

    Raises:
        ServingError: the address cannot be bound.
        ConfigError: an ``allow_paths`` entry is not a folder (or is a bool).
    """

    def __init__(
        self,
        model: Model,
        name: Optional[str] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch_size: int = defaults.MAX_BATCH_SIZE,
        max_wait_ms: float = defaults.MAX_WAIT_MS,
        max_body_bytes: Optional[int] = None,
        allow_paths: Optional[Iterable[Union[str, "os.PathLike[str]"]]] = None,
        limits: Optional[Limits] = None,
        graceful_timeout_s: float = 30.0,
        log_level: str = "warning",
    ):
        limits = limits or Limits()
        if max_body_bytes is not None:
            if max_body_bytes < 1:
                raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
            limits = dataclasses.replace(limits, max_body_bytes=max_body_bytes)
        self.limits = limits
        self.allow_paths = resolve_roots(allow_paths)  # before anything is bound or started
        self.name = name or type(model).__name__
        self.host = host
        try:
            sock = listen(host, port, 2048)  # TCP_NODELAY on accepted sockets (see modelzoo.loopback)
        except OSError as e:
            raise ServingError(f"modelzoo serve {self.name}: cannot listen on {host}:{port}: {e.strerror or e}") from None
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        try:
            self.batcher = Batcher(model, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, name=self.name)
        except BaseException:
            sock.close()
            raise
        self.decode_pool = DecodePool(limits.decode_workers, self.name)
        self.app = create_app(self.batcher, self.name, allow_paths=self.allow_paths, limits=limits, pool=self.decode_pool)
        if is_loopback(host):  # answers only to its own names: no DNS rebinding
            self.app.add_middleware(HostCheck, allowed=LOOPBACK_HOSTS)
        config = uvicorn.Config(
            self.app, log_level=log_level, timeout_graceful_shutdown=max(1, math.ceil(graceful_timeout_s)), lifespan="on",
            http=protocol_class(limits.header_timeout_s), timeout_keep_alive=limits.keep_alive_timeout_s,  # type: ignore[arg-type]
        )
        self._server = _Uvicorn(config, on_stopping=self._on_stopping)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def _on_stopping(self) -> None:
        self.decode_pool.close()  # requests still decoding: 503 now, not after the graceful timeout
        self.batcher.close(wait=False)

    @property
    def url(self) -> str:
        """``http://host:port`` of the bound socket."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def stop_signal(self) -> Optional[int]:
        """The signal that stopped :meth:`run` (None: stopped otherwise, or running)."""
        return self._server.stop_signal

    def __repr__(self) -> str:
        return f"ModelServer({self.name!r}, {self.url})"

    def run(self) -> None:
        """Serves until SIGINT/SIGTERM (in the main thread) or :meth:`stop`,
        then shuts down gracefully and closes the batcher."""
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()
            self.decode_pool.close()
            self.batcher.close()

    def start(self) -> "ModelServer":
        """Serves from a background thread; returns once the server accepts requests.

        Raises:
            ServingError: the server stopped before it started.
        """
        if self._thread is not None:
            return self

        def target() -> None:
            try:
                self.run()
            except BaseException as e:  # SystemExit from a failed uvicorn startup too
                self._error = e
                self._server.started_event.set()

        self._thread = threading.Thread(target=target, name=f"modelzoo-serve[{self.name}]", daemon=True)
        self._thread.start()
        self._server.started_event.wait()
        if self._error is not None:
            raise ServingError(f"modelzoo serve {self.name}: the server did not start: {self._error!r}")
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stops a server run by :meth:`start`: requests in flight are answered,
        then the batcher is closed and the thread joined. Idempotent."""
        if not stop(self._server, self._thread, self._socket, timeout):  # never started: run() closes nothing
            self.decode_pool.close()
            self.batcher.close()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
