"""Where the database is, read from the environment at call time.

The environment variables are described in :mod:`modelzoo.db`. Nothing here
opens a connection or starts a process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from modelzoo.errors import DatabaseError

__all__ = [
    "ENV_URI",
    "ENV_DIR",
    "ENV_MONGOD",
    "ENV_NAME",
    "DEFAULT_DIR",
    "DEFAULT_NAME",
    "database_name",
]

ENV_URI = "MODELZOO_DATABASE_URI"
ENV_DIR = "MODELZOO_DATABASE_DIR"
ENV_MONGOD = "MODELZOO_MONGOD"
ENV_NAME = "MODELZOO_DATABASE_NAME"

DEFAULT_DIR = "~/.modelzoo/db"
DEFAULT_NAME = "modelzoo"


def _env(name: str) -> Optional[str]:
    value = os.environ.get(name, "").strip()
    return value or None


def database_name() -> str:
    """The database modelzoo uses: ``$MODELZOO_DATABASE_NAME``, default ``"modelzoo"``.

    Raises:
        DatabaseError: the name is not a valid MongoDB database name.
    """
    name = _env(ENV_NAME) or DEFAULT_NAME
    bad = set('/\\. "$*<>:|?') & set(name)
    if bad or len(name) > 63:
        raise DatabaseError(
            f"{ENV_NAME}={name!r} is not a valid MongoDB database name: it must be at most "
            f"63 characters without any of / \\ . \" $ * < > : | ? or space."
        )
    return name


def _data_dir() -> Path:
    raw = _env(ENV_DIR) or DEFAULT_DIR
    # realpath: every process must spell the directory the same way, since the
    # running mongod is recognised by the --dbpath on its command line.
    return Path(os.path.realpath(os.path.expanduser(raw)))


def _config_key() -> Tuple[str, str]:
    """``("uri", uri)`` with ``MODELZOO_DATABASE_URI`` set, else ``("embedded", data_dir)``."""
    uri = _env(ENV_URI)
    if uri:
        return ("uri", uri)
    return ("embedded", str(_data_dir()))
