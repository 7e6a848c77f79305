"""A uvicorn server on a loopback socket, run from a thread: what the viewer
(:mod:`modelzoo.app`) and ``modelzoo serve`` (:mod:`modelzoo.serving`) share.

The socket is bound before the server starts (so the URL is known at once,
and a taken port fails in the constructor); the server runs in a daemon
thread and says when it accepts connections; stopping asks uvicorn to exit
and waits for the thread.
"""

from __future__ import annotations

import socket
import threading
from typing import List, Optional

import uvicorn

__all__ = ["listen", "StartedServer", "stop"]


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on ``host:port`` (0: a free port).

    Raises:
        OSError: it cannot bind or listen (the socket is closed).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says it is TCP (proto 0 does not), and without it every keep-alive response
    # whose headers and body go out apart waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class StartedServer(uvicorn.Server):
    """uvicorn's server, setting :attr:`started_event` once it accepts
    connections (also set by the caller when it fails to start)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.started_event = threading.Event()

    async def startup(self, sockets: Optional[List[socket.socket]] = None) -> None:
        await super().startup(sockets=sockets)
        self.started_event.set()


def stop(server: uvicorn.Server, thread: Optional[threading.Thread], sock: socket.socket, timeout: Optional[float]) -> bool:
    """Asks ``server`` to exit and waits up to ``timeout`` for its ``thread``;
    a server that never started only has its socket closed. Returns whether
    it had been started."""
    server.should_exit = True
    if thread is None:
        sock.close()
        return False
    thread.join(timeout)
    return True
