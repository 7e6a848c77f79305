"""Where the database is, read from the environment at call time.

The environment variables are described in :mod:`modelzoo.db`. Nothing here
opens a connection or starts a process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple

from modelzoo.errors import DatabaseError, did_you_mean

__all__ = [
    "ENV_URI",
    "ENV_DIR",
    "ENV_MONGOD",
    "ENV_NAME",
    "ENV_IDLE",
    "ENV_KEEP",
    "ENV_WRITE_CONCERN",
    "DEFAULT_DIR",
    "DEFAULT_NAME",
    "DEFAULT_IDLE_S",
    "DEFAULT_WRITE_CONCERN",
    "WRITE_CONCERNS",
    "WriteConcernName",
    "env_value",
    "config_key",
    "database_name",
    "idle_seconds",
    "keep_requested",
    "write_concern_name",
]

ENV_URI = "MODELZOO_DATABASE_URI"
ENV_DIR = "MODELZOO_DATABASE_DIR"
ENV_MONGOD = "MODELZOO_MONGOD"
ENV_NAME = "MODELZOO_DATABASE_NAME"
ENV_IDLE = "MODELZOO_DATABASE_IDLE_S"
ENV_KEEP = "MODELZOO_DATABASE_KEEP"
ENV_WRITE_CONCERN = "MODELZOO_WRITE_CONCERN"

DEFAULT_DIR = "~/.modelzoo/db"
DEFAULT_NAME = "modelzoo"
# Long enough that a shell script's sequence of short commands reuses one server,
# short enough that nothing is left running for long.
DEFAULT_IDLE_S = 5.0

WriteConcernName = Literal["journaled", "acknowledged", "majority"]
# The pymongo client options of each choice. What each guarantees is in docs/database.md.
WRITE_CONCERNS: Dict[str, Dict[str, Any]] = {
    # Acknowledged once the write is in mongod's on-disk journal: survives a crash
    # of mongod or of the machine.
    "journaled": {"w": 1, "journal": True},
    # Acknowledged once applied in mongod's memory; the journal reaches the disk
    # within ~100 ms, so a crash of mongod or the machine can lose the last writes.
    "acknowledged": {"w": 1, "journal": False},
    # Replica sets: acknowledged once journaled on a majority of the members.
    "majority": {"w": "majority", "journal": True},
}
# Chosen from benchmarks/bench_db.py: a journal flush per bulk write makes the bare
# write path 1.5-1.8x slower at batch 32, but apply_model writes in a background
# thread and its end-to-end time is the same within noise (0.97x). See docs/database.md.
DEFAULT_WRITE_CONCERN: WriteConcernName = "journaled"

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_value(name: str) -> Optional[str]:
    """The environment variable ``name``, stripped; None when unset or blank."""
    value = os.environ.get(name, "").strip()
    return value or None


def database_name() -> str:
    """The database modelzoo uses: ``$MODELZOO_DATABASE_NAME``, default ``"modelzoo"``.

    Raises:
        DatabaseError: the name is not a valid MongoDB database name.
    """
    name = env_value(ENV_NAME) or DEFAULT_NAME
    bad = set('/\\. "$*<>:|?') & set(name)
    if bad or len(name) > 63:
        raise DatabaseError(
            f"{ENV_NAME}={name!r} is not a valid MongoDB database name: it must be at most "
            f"63 characters without any of / \\ . \" $ * < > : | ? or space."
        )
    return name


def _data_dir() -> Path:
    raw = env_value(ENV_DIR) or DEFAULT_DIR
    # realpath: every process must spell the directory the same way, since the
    # running mongod is recognised by the --dbpath on its command line.
    return Path(os.path.realpath(os.path.expanduser(raw)))


def config_key() -> Tuple[str, str]:
    """``("uri", uri)`` with ``MODELZOO_DATABASE_URI`` set, else ``("embedded", data_dir)``."""
    uri = env_value(ENV_URI)
    if uri:
        return ("uri", uri)
    return ("embedded", str(_data_dir()))


def idle_seconds() -> float:
    """``$MODELZOO_DATABASE_IDLE_S``: how long the embedded server outlives its last client.

    Read by the process that starts the server. Default :data:`DEFAULT_IDLE_S`.

    Raises:
        DatabaseError: not a number of seconds >= 0.
    """
    raw = env_value(ENV_IDLE)
    if raw is None:
        return DEFAULT_IDLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):  # also rejects nan
        raise DatabaseError(
            f"{ENV_IDLE}={raw!r} is not a number of seconds >= 0. Set it to e.g. "
            f"{DEFAULT_IDLE_S:g}, or set {ENV_KEEP}=1 to keep the server running."
        )
    return value


def keep_requested() -> bool:
    """``$MODELZOO_DATABASE_KEEP``: keep the embedded server running without clients.

    Raises:
        DatabaseError: not one of 1/true/yes/on or 0/false/no/off.
    """
    raw = env_value(ENV_KEEP)
    if raw is None or raw.lower() in _FALSE:
        return False
    if raw.lower() in _TRUE:
        return True
    raise DatabaseError(
        f"{ENV_KEEP}={raw!r} is not a yes/no value: use one of {', '.join(_TRUE + _FALSE)}."
    )


def write_concern_name() -> Optional[str]:
    """``$MODELZOO_WRITE_CONCERN``, or None when unset (the default applies).

    Raises:
        DatabaseError: not one of :data:`WRITE_CONCERNS`, with a close match if any.
    """
    raw = env_value(ENV_WRITE_CONCERN)
    if raw is None:
        return None
    if raw.lower() in WRITE_CONCERNS:
        return raw.lower()
    raise DatabaseError(
        f"{ENV_WRITE_CONCERN}={raw!r} is not a write concern modelzoo knows. Valid choices: "
        f"{', '.join(WRITE_CONCERNS)} (default {DEFAULT_WRITE_CONCERN})."
        + did_you_mean(raw.lower(), WRITE_CONCERNS)
    )
