"""Shared fixtures. The whole session talks to one real mongod in a temp dir."""

from __future__ import annotations

from pathlib import Path
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


@pytest.fixture
def zoo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A private weights cache, no user manifests, no real torch hub cache;
    zoo registrations made by the test are undone."""
    from modelzoo import zoo
    from modelzoo.zoo.registry import registry

    monkeypatch.setenv(zoo.ENV_HOME, str(tmp_path / "zoo-home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for var in (zoo.ENV_MANIFEST_PATHS, zoo.ENV_OFFLINE, zoo.ENV_WEIGHTS_PATH):
        monkeypatch.delenv(var, raising=False)
    saved = (dict(registry._registered), set(registry._hidden))
    zoo.reload_zoo()
    yield
    registry._registered, registry._hidden = saved
    zoo.reload_zoo()
