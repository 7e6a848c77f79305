"""Slow clients are timed out: uvicorn's HTTP protocol with a deadline for each request head.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but
waits forever for a request head that was begun and never finished: fifty
sockets that send half a request and stall hold fifty connections for good.
:func:`protocol_class` gives uvicorn's protocol a timer that runs whenever
no request is in progress (from the connection's start, and again after
each answer): when it fires, a connection that sent part of a head is
answered 408 (JSON) and closed, an idle one is closed. The body has its own
deadline in the app (``body_timeout_s``). uvicorn's plain-text 400 for a
malformed request is answered in JSON too.

:class:`HostCheck` refuses requests whose ``Host`` header names another host:
a server on loopback answers only ``localhost`` and its loopback addresses,
so a web page that rebinds its own name to 127.0.0.1 (DNS rebinding) cannot
use it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional, Type

__all__ = ["protocol_class", "HostCheck", "LOOPBACK_HOSTS"]


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def protocol_class(header_timeout_s: float) -> Type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``auto``: httptools, else h11) with a request-head deadline."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    class HeadTimeoutProtocol(base):  # type: ignore[misc, valid-type]
        _head_timer: Optional[asyncio.TimerHandle] = None
        _head_bytes = 0
        _served = False  # after an answer, an idle connection is uvicorn's keep-alive timer's to close

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._in_request():
                self._disarm()
            elif self._head_timer is not None:
                self._head_bytes += len(data)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._served = True
            if not self._in_request() and not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self._disarm()
            self.transport.write(_raw_response(400, "Bad Request", f"{msg} (not a valid HTTP/1.1 request)"))
            self.transport.close()

        def _in_request(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is not None and not cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self._in_request():
                return
            if not self._head_bytes and self._served:
                return
            if self._head_bytes:
                self.transport.write(_raw_response(
                    408, "Request Timeout",
                    f"the request head did not arrive within {header_timeout_s:g} s (--header-timeout-s)",
                ))
            self.transport.close()

    return HeadTimeoutProtocol


#: the names a loopback server answers to (a DNS-rebinding page sends its own name as Host)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8000`` -> ``::1``, ``localhost:8000`` -> ``localhost``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class HostCheck:
    """ASGI middleware: requests whose ``Host`` header names another host are
    answered 400 (JSON). A page that rebinds its own name to 127.0.0.1 is
    same-origin for the browser, but still sends its own name as ``Host``.

    Args:
        app: the ASGI app.
        allowed: the host names answered (any port); loopback addresses
            (``127.x.x.x``) always are.
    """

    def __init__(self, app: Any, allowed: Any = LOOPBACK_HOSTS):
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    def _ok(self, scope: Any) -> bool:
        for name, value in scope.get("headers") or ():
            if name == b"host":
                host = _host_name(value.decode("latin-1"))
                return host in self.allowed or host.startswith("127.")
        return False  # HTTP/1.1 requires Host

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self._ok(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "the Host header does not name this server (it answers only "
                           f"{', '.join(sorted(self.allowed))}, or 127.x.x.x)"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
