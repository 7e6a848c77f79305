"""Shared fixtures. The whole session talks to one real mongod in a temp dir."""

from __future__ import annotations

from typing import Iterator

import pymongo.database
import pytest

from modelzoo import db as mzdb


@pytest.fixture(scope="session", autouse=True)
def _database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Starts an embedded mongod in a temporary directory for the session, stops it after."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mzdb.ENV_DIR, str(tmp_path_factory.mktemp("modelzoo-db")))
        mp.delenv(mzdb.ENV_URI, raising=False)
        mp.delenv(mzdb.ENV_MONGOD, raising=False)
        mp.delenv(mzdb.ENV_NAME, raising=False)
        mzdb.reset()
        mzdb.connect()
        try:
            yield
        finally:
            mzdb.stop()


@pytest.fixture
def db() -> pymongo.database.Database:
    """The session's modelzoo database."""
    return mzdb.get_db()
