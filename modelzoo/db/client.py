"""This process's connection: one cached pymongo client, and mongoengine's default alias.

The client is cached per process and per configuration (see
:func:`get_client`); a forked child, a change of environment, or an embedded
server that died since makes a new one. Old clients are closed in the
background, since closing one whose server is gone waits a full
server-selection timeout.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pymongo
import pymongo.database
import pymongo.errors
import pymongo.write_concern

from modelzoo.errors import DatabaseError

from .server import ensure_server, pid_alive, socket_uri
from .settings import (
    DEFAULT_WRITE_CONCERN,
    ENV_URI,
    WRITE_CONCERNS,
    config_key,
    database_name,
    write_concern_name,
)

__all__ = [
    "client_kwargs",
    "connect",
    "connection_lock",
    "database_uri",
    "get_client",
    "get_db",
    "mongoengine_host",
    "redact_uri",
    "reset",
    "write_concern",
]

_CLIENT_TIMEOUT_MS = 5000  # server selection and TCP connect, per client


@dataclass
class _Conn:
    """This process's cached client and where it points."""

    owner_pid: int  # os.getpid() when it was made: a forked child must not reuse it
    key: Tuple[str, str]  # ("uri", uri) or ("embedded", data_dir)
    write_concern: Optional[str]  # $MODELZOO_WRITE_CONCERN when it was made
    uri: str
    client: pymongo.MongoClient
    server_pid: Optional[int]  # embedded only


_lock = threading.RLock()
_conn: Optional[_Conn] = None
# (owner pid, uri, db name, write concern setting) registered as mongoengine's default alias, and the
# settings dict mongoengine stored for it (to notice someone else replacing it).
_me_target: Optional[Tuple[int, str, str, Optional[str]]] = None
_me_settings: Optional[dict] = None


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    # The cached client is left alone: get_client() sees the pid changed and replaces it.


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def connection_lock() -> threading.RLock:
    """The re-entrant lock around this process's connection state (a forked child gets a new one)."""
    return _lock


# --------------------------------------------------------------------------- URIs


def redact_uri(uri: str) -> str:
    """``uri`` with any password (in the user info or a ``...password=`` option) masked."""
    m = re.match(r"^([^:/?#]+://)([^/?#]*@)?(.*)$", uri, re.S)
    if m is None:
        return uri
    scheme, userinfo, rest = m.group(1), m.group(2), m.group(3)
    if userinfo and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***@"
    rest = re.sub(r"(?i)((?:^|[?&])[^=&]*password=)[^&]*", r"\1***", rest)
    return scheme + (userinfo or "") + rest


_URI_RE = re.compile(
    r"^(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?:/(?P<db>[^?#]*))?(?:\?(?P<query>[^#]*))?$",
    re.S,
)


def _uri_has_option(uri: str, option: str) -> bool:
    m = _URI_RE.match(uri)
    query = (m.group("query") if m else "") or ""
    return any(p.split("=", 1)[0].lower() == option.lower() for p in query.split("&") if p)


def mongoengine_host(uri: str, name: str) -> str:
    """``uri`` without the database in its path, which mongoengine would use instead of ``name``.

    A URI's path database doubles as the default authentication database, so when
    the URI carries credentials it becomes an explicit ``authSource``.
    """
    m = _URI_RE.match(uri)
    if m is None or not m.group("db") or m.group("db") == name:
        return uri
    query = m.group("query") or ""
    if "@" in m.group("prefix") and not _uri_has_option(uri, "authSource"):
        query = (query + "&" if query else "") + "authSource=" + m.group("db")
    return m.group("prefix") + "/" + ("?" + query if query else "")


_WRITE_CONCERN_OPTIONS = ("w", "journal", "j", "wTimeoutMS")


def client_kwargs(uri: str) -> Dict[str, Any]:
    """Options for every client we make (pymongo's and mongoengine's).

    What the URI sets itself wins over modelzoo's defaults, except that an
    explicit ``$MODELZOO_WRITE_CONCERN`` wins over the URI's write concern.

    Raises:
        DatabaseError: ``$MODELZOO_WRITE_CONCERN`` is not a known choice.
    """
    defaults: Dict[str, Any] = {
        "serverSelectionTimeoutMS": _CLIENT_TIMEOUT_MS,
        "connectTimeoutMS": _CLIENT_TIMEOUT_MS,
        "uuidRepresentation": "standard",
        "appname": "modelzoo",
    }
    kwargs = {k: v for k, v in defaults.items() if not _uri_has_option(uri, k)}
    chosen = write_concern_name()
    if chosen is not None:
        kwargs.update(WRITE_CONCERNS[chosen])
    elif not any(_uri_has_option(uri, k) for k in _WRITE_CONCERN_OPTIONS):
        kwargs.update(WRITE_CONCERNS[DEFAULT_WRITE_CONCERN])
    return kwargs


def _short_error(exc: BaseException) -> str:
    # pymongo appends a long topology description after ", Timeout: ...".
    text = str(exc).split(", Timeout:")[0].strip()
    return text if len(text) <= 300 else text[:297] + "..."

# --------------------------------------------------------------------------- the connection


def _close_in_background(client: pymongo.MongoClient) -> None:
    # close() sends endSessions first, which waits a full server-selection
    # timeout when the server is gone (killed, stopped, restarted elsewhere).
    # Nobody needs to wait for that cleanup.
    threading.Thread(target=client.close, name="modelzoo-db-close", daemon=True).start()


def _drop_client() -> None:
    global _conn
    conn, _conn = _conn, None
    # A forked child only forgets the parent's client: its sockets are the parent's.
    if conn is not None and conn.owner_pid == os.getpid():
        _close_in_background(conn.client)


def _drop_mongoengine() -> None:
    global _me_target, _me_settings
    import mongoengine
    from mongoengine import connection as me_connection

    # A client we registered before a fork belongs to the parent: only forget it.
    inherited = _me_target is not None and _me_target[0] != os.getpid()
    _me_target = _me_settings = None
    # Take the client out first so that disconnect() does not close it in the
    # foreground (see _close_in_background); it still clears mongoengine's caches.
    client = me_connection._connections.pop("default", None)
    mongoengine.disconnect("default")
    if client is not None and not inherited and all(
        client is not c for c in me_connection._connections.values()
    ):
        _close_in_background(client)


def get_client() -> pymongo.MongoClient:
    """The process's MongoDB client, connecting (and starting mongod) on first use.

    Cached per process and per configuration: a forked child, a change of
    ``MODELZOO_DATABASE_URI``/``MODELZOO_DATABASE_DIR``, or an embedded server
    that died since makes a new one.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    global _conn
    with _lock:
        key = config_key()
        wc = write_concern_name()
        conn = _conn
        if (
            conn is not None
            and conn.owner_pid == os.getpid()
            and conn.key == key
            and conn.write_concern == wc
            and (conn.server_pid is None or pid_alive(conn.server_pid))
        ):
            return conn.client
        _drop_client()

        if key[0] == "uri":
            uri = key[1]
            try:
                client: pymongo.MongoClient = pymongo.MongoClient(uri, **client_kwargs(uri))
            except pymongo.errors.PyMongoError as e:
                raise DatabaseError(
                    f"{ENV_URI}={redact_uri(uri)!r} is not a usable MongoDB URI: {_short_error(e)}. "
                    f"Fix it, or unset {ENV_URI} to use modelzoo's embedded database."
                ) from e
            try:
                client.admin.command("ping")
            except pymongo.errors.PyMongoError as e:
                client.close()
                raise DatabaseError(
                    f"Cannot reach the MongoDB server {redact_uri(uri)} (from {ENV_URI}) within "
                    f"{_CLIENT_TIMEOUT_MS / 1000:g} s: {_short_error(e)}. Start that server or "
                    f"fix the URI, or unset {ENV_URI} to use modelzoo's embedded database."
                ) from e
            _conn = _Conn(os.getpid(), key, wc, uri, client, None)
        else:
            kwargs = client_kwargs(uri="")  # checks the settings before starting anything
            info = ensure_server(Path(key[1]))  # also registers this process as a client
            uri = socket_uri(info["socket"])  # a Unix socket in a directory only this user can enter
            client = pymongo.MongoClient(uri, **kwargs)
            _conn = _Conn(os.getpid(), key, wc, uri, client, info["pid"])
        return _conn.client


def database_uri() -> str:
    """The URI of the server in use (starting the embedded one if needed).

    This is the real URI, credentials included; :func:`status` shows a redacted one.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    with _lock:
        get_client()
        assert _conn is not None
        return _conn.uri


def get_db() -> pymongo.database.Database:
    """The modelzoo database (``$MODELZOO_DATABASE_NAME``, default ``modelzoo``).

    Its write concern is :func:`write_concern`'s, so every write modelzoo makes
    through it (and through mongoengine's default alias) waits as configured.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    return get_client()[database_name()]


def connect() -> pymongo.database.Database:
    """Connects pymongo and mongoengine's ``"default"`` alias to the modelzoo database.

    Idempotent and cheap when nothing changed. If mongoengine's default alias
    points anywhere else (another server, database, or a server that has since
    been restarted on a new port), it is disconnected and re-registered.

    Returns:
        The database, as :func:`get_db` would.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    global _me_target, _me_settings
    import mongoengine
    from mongoengine import connection as me_connection

    with _lock:
        name = database_name()
        client = get_client()
        uri = database_uri()
        target = (os.getpid(), uri, name, write_concern_name())
        current = me_connection._connection_settings.get("default")
        if target == _me_target and current is not None and current is _me_settings:
            return client[name]
        _drop_mongoengine()
        mongoengine.connect(
            db=name, alias="default", host=mongoengine_host(uri, name), **client_kwargs(uri)
        )
        _me_target = target
        _me_settings = me_connection._connection_settings.get("default")
        return client[name]


def write_concern() -> pymongo.write_concern.WriteConcern:
    """The write concern of modelzoo's writes (``$MODELZOO_WRITE_CONCERN``, see docs/database.md).

    Raises:
        DatabaseError: the server cannot be started or reached, or the setting is unknown.
    """
    return get_client().write_concern


def reset() -> None:
    """Drops this process's cached client and mongoengine default connection.

    The next call reads the environment afresh. Servers keep running. Used by
    tests after changing environment variables.
    """
    with _lock:
        _drop_client()
        _drop_mongoengine()
