"""Shared fixtures. The whole session talks to one real mongod in a temp dir."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Iterator, List

import pymongo.database
import pytest

from modelzoo import db as mzdb
from modelzoo.db import server as mzserver

# Every embedded server of the session (the session's, and those tests start in
# their own tmp_path) stops this long after its last client exits.
SESSION_IDLE_S = 1.0
LEFTOVER_WAIT_S = 60.0  # generous: a loaded 2-core machine


@pytest.fixture(scope="session", autouse=True)
def _database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private embedded mongod for the session (``db.temporary()``), removed after.

    At the end, asserts that no mongod or monitor with a data directory under the
    session's temporary directory is still alive: the session server is stopped
    by ``temporary()``, and every other server the tests started must have
    stopped itself (idle) or been stopped.
    """
    base = Path(os.path.realpath(tmp_path_factory.getbasetemp()))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(mzdb.ENV_MONGOD, raising=False)
        mp.delenv(mzdb.ENV_NAME, raising=False)
        mp.delenv(mzdb.ENV_WRITE_CONCERN, raising=False)
        # the session's own signing key (modelzoo.signing), never the user's ~/.modelzoo/trust.key
        mp.setenv("MODELZOO_TRUST_KEY", str(base / "trust.key"))
        # optimize="auto" measures in every test, and writes nothing under the user's ~/.modelzoo
        # (tests/test_optimize_cache.py points it at directories of its own)
        mp.setenv("MODELZOO_OPTIMIZE_CACHE", "off")
        with mzdb.temporary(parent=base, idle_s=SESSION_IDLE_S):
            yield
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while _server_processes_under(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _server_processes_under(base)
    for pid in left:  # the assertion fails, but nothing is left behind
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "mongod/monitor processes left running by the test session:\n" + "\n".join(
        f"  {pid}: {' '.join(mzserver.cmdline(pid) or [])}" for pid in left
    )


def _server_processes_under(base: Path) -> List[int]:
    """Live mongod and monitor processes whose data directory is under ``base``."""
    found = []
    prefix = str(base) + os.sep
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not mzserver.pid_alive(int(entry)):
            continue
        args = mzserver.cmdline(int(entry)) or []
        is_server = bool(args) and (args[0].endswith("mongod") or "--mongod-pid" in args)
        if is_server and any(a.startswith(prefix) for a in args):
            found.append(int(entry))
    return found


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


@pytest.fixture
def bundle_home(tmp_path, monkeypatch, db):
    """A private MODELZOO_HOME and an empty bundles collection (emptied again after)."""
    from modelzoo.bundles.store import COLLECTION

    monkeypatch.setenv("MODELZOO_HOME", str(tmp_path / "home"))
    db[COLLECTION].delete_many({})
    yield tmp_path
    db[COLLECTION].delete_many({})
