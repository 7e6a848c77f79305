"""modelzoo.db against a real mongod: sharing, start-up races, crash recovery, errors, CLI."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import mongoengine
import pytest
from pymongo.write_concern import WriteConcern

from modelzoo import db as mzdb
from modelzoo.db import client as mzclient
from modelzoo.db import server as mzserver
from modelzoo.errors import DatabaseError
from tests.processes import child_env, stop

REPO = Path(__file__).resolve().parents[1]

# A child process: waits until a shared start time (so that children race),
# connects, writes a journaled document, and reports the server it used.
CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pymongo.write_concern import WriteConcern
    from modelzoo import db
    start_at, collection, tag = float(sys.argv[1]), sys.argv[2], sys.argv[3]
    while time.time() < start_at:
        time.sleep(0.005)
    database = db.connect()
    coll = database.get_collection(collection, write_concern=WriteConcern(w=1, j=True))
    coll.insert_one({"tag": tag})
    s = db.status()
    print(json.dumps({"pid": s["pid"], "socket": s["socket"], "uri": db.database_uri()}))
    """
)


def _spawn_children(n: int, collection: str, env: Dict[str, str], delay: float = 1.0) -> List[dict]:
    start_at = time.time() + delay
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(start_at), collection, f"child-{i}"],
            env=env,
            cwd=str(REPO),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, f"child failed:\n{err}"
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        stop(*procs)
    return results


def _mongod_pids(dbpath: Path) -> List[int]:
    """Live processes whose command line names ``dbpath`` (i.e. mongods serving it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and mzserver.pid_alive(int(entry)):
            args = mzserver.cmdline(int(entry)) or []
            if str(dbpath) in args:
                pids.append(int(entry))
    return pids


def _tcp_listeners(pid: int) -> List[str]:
    """The TCP sockets process ``pid`` listens on (``addr:port`` in hex, as in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    found.append(fields[1])
    return found


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def other_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data dir of its own; whatever server runs in it is stopped afterwards."""
    data_dir = Path(os.path.realpath(tmp_path / "other-db"))
    yield data_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(mzdb.ENV_DIR, str(data_dir))
        mp.delenv(mzdb.ENV_URI, raising=False)
        mp.delenv(mzdb.ENV_MONGOD, raising=False)
        try:
            mzdb.stop()
        finally:
            for pid in _mongod_pids(data_dir / "data"):  # a failed test must not leak one
                os.kill(pid, signal.SIGKILL)
    mzdb.reset()


# --------------------------------------------------------------------------- the session server


def test_server_is_local_and_uses_the_configured_dir(db) -> None:
    s = mzdb.status()
    data_dir = Path(os.path.realpath(os.environ[mzdb.ENV_DIR]))
    assert s["mode"] == "embedded" and s["running"] is True
    assert s["data_dir"] == str(data_dir)
    assert s["socket"] == str(data_dir / "mongod.sock") and s["port"] is None
    assert s["uri"] == "mongodb://" + s["socket"].replace("/", "%2F") + "/" == mzdb.database_uri()
    assert s["database"] == "modelzoo" == db.name

    opts = mzdb.get_client().admin.command("getCmdLineOpts")["parsed"]
    assert opts["net"]["bindIp"] == s["socket"]  # a Unix socket, and nothing else
    assert opts["net"]["unixDomainSocket"]["enabled"] is False  # not mongod's default one in /tmp either
    assert opts["security"]["javascriptEnabled"] is False
    assert opts["storage"]["dbPath"] == str(data_dir / "data")
    assert _tcp_listeners(s["pid"]) == []  # no TCP port at all
    assert stat.S_ISSOCK(os.stat(s["socket"]).st_mode)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700  # only its user can enter

    assert list((data_dir / "data").glob("WiredTiger*"))
    assert (data_dir / "mongod.log").stat().st_size > 0
    port_file = json.loads((data_dir / "mongod.json").read_text())
    assert {k: port_file[k] for k in ("pid", "socket")} == {"pid": s["pid"], "socket": s["socket"]}
    assert port_file["binary"] == s["binary"] and port_file["started_at"]
    assert _mongod_pids(data_dir / "data") == [s["pid"]]


def test_client_is_cached_and_connect_is_idempotent(db) -> None:
    assert mzdb.get_client() is mzdb.get_client()
    first = mzdb.connect()
    me_client = mongoengine.get_connection()
    for _ in range(3):
        assert mzdb.connect().name == first.name
    assert mongoengine.get_connection() is me_client


def test_mongoengine_default_alias_reaches_the_same_database(db) -> None:
    class _DbTestDoc(mongoengine.Document):
        meta = {"collection": "test_db_mongoengine"}
        value = mongoengine.IntField()

    try:
        mzdb.connect()
        _DbTestDoc(value=7).save()
        assert db.test_db_mongoengine.find_one({}, {"_id": 0}) == {"value": 7}
    finally:
        db.drop_collection("test_db_mongoengine")


def test_connect_replaces_a_foreign_default_connection(db) -> None:
    mongoengine.disconnect("default")
    mongoengine.connect(
        db="elsewhere", host=f"mongodb://127.0.0.1:{_closed_port()}/", uuidRepresentation="standard"
    )
    mzdb.connect()
    assert mongoengine.get_db().name == "modelzoo"
    mongoengine.get_db().command("ping")


def test_forked_child_gets_its_own_client(db) -> None:
    parent_client = mzdb.get_client()
    pid = os.fork()
    if pid == 0:  # child: must not reuse the parent's client, and must still work
        code = 1
        try:
            client = mzdb.get_client()
            client.admin.command("ping")
            code = 0 if client is not parent_client else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert mzdb.get_client() is parent_client


# --------------------------------------------------------------------------- several processes


def test_two_processes_share_the_server(db) -> None:
    try:
        results = _spawn_children(2, "test_db_shared", child_env(), delay=0.5)
        s = mzdb.status()
        for r in results:
            assert (r["pid"], r["socket"]) == (s["pid"], s["socket"])
        tags = sorted(d["tag"] for d in db.test_db_shared.find())
        assert tags == ["child-0", "child-1"]
    finally:
        db.drop_collection("test_db_shared")


def test_concurrent_startup_starts_one_server(other_dir: Path) -> None:
    # A long idle time: the server must still run when we look, after the children exit.
    env = child_env(MODELZOO_DATABASE_DIR=str(other_dir), MODELZOO_DATABASE_IDLE_S="600")
    results = _spawn_children(3, "race", env)
    assert len({(r["pid"], r["socket"]) for r in results}) == 1, results
    assert _mongod_pids(other_dir / "data") == [results[0]["pid"]]
    assert json.loads((other_dir / "mongod.json").read_text())["pid"] == results[0]["pid"]


def test_a_killed_server_is_replaced_and_keeps_its_data(
    other_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = child_env(MODELZOO_DATABASE_DIR=str(other_dir), MODELZOO_DATABASE_IDLE_S="600")
    (first,) = _spawn_children(1, "survivors", env, delay=0)
    os.kill(first["pid"], signal.SIGKILL)
    assert mzserver.wait_exit(first["pid"], 10)

    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    mzdb.reset()
    assert mzdb.status()["running"] is False  # stale port file: dead pid
    database = mzdb.connect()
    second = mzdb.status()
    assert second["running"] and second["pid"] != first["pid"]
    assert database.survivors.find_one({}, {"_id": 0}) == {"tag": "child-0"}  # from the journal

    # The same, within one process: the cached client notices its server died.
    database.get_collection("survivors", write_concern=WriteConcern(w=1, j=True)).insert_one(
        {"tag": "parent"}
    )
    os.kill(second["pid"], signal.SIGKILL)
    assert mzserver.wait_exit(second["pid"], 10)
    database = mzdb.connect()
    third = mzdb.status()
    assert third["pid"] not in (first["pid"], second["pid"])
    assert sorted(d["tag"] for d in database.survivors.find()) == ["child-0", "parent"]
    assert mongoengine.get_db().survivors.count_documents({}) == 2  # re-registered too
    assert _mongod_pids(other_dir / "data") == [third["pid"]]

    assert mzdb.stop() is True
    assert not mzserver.pid_alive(third["pid"])
    assert not (other_dir / "mongod.json").exists()
    assert mzdb.stop() is False  # repeatable


def test_a_data_dir_too_deep_for_a_socket_address_listens_in_a_private_tmp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = Path(os.path.realpath(tmp_path)) / ("d" * 60) / ("e" * 60) / "db"  # > 108 bytes with mongod.sock
    monkeypatch.setenv(mzdb.ENV_DIR, str(deep))
    try:
        mzdb.connect().command("ping")
        sock = Path(mzdb.status()["socket"])
        assert sock.parent != deep and len(str(sock)) < 108 and stat.S_ISSOCK(sock.stat().st_mode)
        assert sock.parent.name == f"modelzoo-{os.geteuid()}" and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert sock.parent.stat().st_uid == os.geteuid()
    finally:
        mzdb.stop()
        for pid in _mongod_pids(deep / "data"):
            os.kill(pid, signal.SIGKILL)
        mzdb.reset()
    assert not sock.exists()  # stopping removes it


def test_a_tcp_server_of_an_older_modelzoo_is_replaced_by_a_private_one(
    other_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymongo

    (other_dir / "data").mkdir(parents=True)
    port = _closed_port()
    old = subprocess.Popen(
        [mzserver.resolve_mongod(), "--dbpath", str(other_dir / "data"), "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        client: pymongo.MongoClient = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=20000)
        client.modelzoo.kept.insert_one({"n": 1})  # journaled by default on 6.0
        client.close()
        (other_dir / "mongod.json").write_text(json.dumps({"pid": old.pid, "port": port, "binary": "mongod"}))
        monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
        database = mzdb.connect()
        assert old.wait(30) == 0  # stopped cleanly (SIGTERM)
        s = mzdb.status()
        assert s["socket"] and s["pid"] != old.pid and _tcp_listeners(s["pid"]) == []
        assert database.kept.find_one({}, {"_id": 0}) == {"n": 1}
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_lock_wait_times_out_with_a_clear_error(
    other_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_dir.mkdir(parents=True)
    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    monkeypatch.setattr(mzserver, "_LOCK_TIMEOUT_S", 0.5)
    with open(other_dir / "modelzoo.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another process starting the server would
        t0 = time.monotonic()
        with pytest.raises(DatabaseError, match="lock") as info:
            mzdb.get_client()
        assert time.monotonic() - t0 < 5
    assert str(other_dir / "modelzoo.lock") in str(info.value)


# --------------------------------------------------------------------------- configuration errors


def test_unreachable_uri_fails_fast_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"mongodb://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv(mzdb.ENV_URI, uri)
    mzdb.reset()
    t0 = time.monotonic()
    try:
        with pytest.raises(DatabaseError) as info:
            mzdb.get_client()
        assert time.monotonic() - t0 < 10
        message = str(info.value)
        assert uri in message and mzdb.ENV_URI in message and "unset" in message
        assert mzdb.stop() is False  # never stops a server it does not own
    finally:
        monkeypatch.delenv(mzdb.ENV_URI)
        mzdb.reset()
    mzdb.get_db().command("ping")  # back on the session's server


def test_uri_helpers_hide_passwords_and_keep_the_database() -> None:
    assert mzclient.redact_uri("mongodb://bob:s3cret@h1:27017,h2/admin?tls=true") == (
        "mongodb://bob:***@h1:27017,h2/admin?tls=true"
    )
    assert "hush" not in mzclient.redact_uri("mongodb://h/?tlsCertificateKeyFilePassword=hush")
    assert mzclient.redact_uri("mongodb://127.0.0.1:1") == "mongodb://127.0.0.1:1"
    # mongoengine would use the URI's path database instead of ours; it becomes authSource.
    assert mzclient.mongoengine_host("mongodb://u:p@h/admin", "modelzoo") == (
        "mongodb://u:p@h/?authSource=admin"
    )
    assert mzclient.mongoengine_host("mongodb://h/other?w=1", "modelzoo") == "mongodb://h/?w=1"
    assert mzclient.mongoengine_host("mongodb://h:1/", "modelzoo") == "mongodb://h:1/"


def test_missing_mongod_binary_is_named(other_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(other_dir / "no" / "such" / "mongod")
    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    monkeypatch.setenv(mzdb.ENV_MONGOD, missing)
    with pytest.raises(DatabaseError, match=mzdb.ENV_MONGOD) as info:
        mzdb.connect()
    assert missing in str(info.value)


def test_mongod_that_exits_early_reports_its_log(
    other_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "broken-mongod"
    script.write_text("#!/bin/sh\necho 'refusing to start: marker-1234'\nexit 3\n")
    script.chmod(0o755)
    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    monkeypatch.setenv(mzdb.ENV_MONGOD, str(script))
    with pytest.raises(DatabaseError, match="exited with code 3") as info:
        mzdb.connect()
    assert "marker-1234" in str(info.value)
    assert not (other_dir / "mongod.json").exists()


def test_binary_without_exec_bit_is_made_executable(
    other_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mzdb.status()["binary"]
    wrapper = tmp_path / "mongod"
    wrapper.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    wrapper.chmod(0o644)  # as a wheel that lost the bit
    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    monkeypatch.setenv(mzdb.ENV_MONGOD, str(wrapper))
    mzdb.connect().command("ping")
    assert os.access(wrapper, os.X_OK)
    assert mzdb.status()["binary"] == str(wrapper)


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, **env: Optional[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelzoo", *args],
        env=child_env(**env),
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_db_status_prints_the_socket() -> None:
    sock = mzdb.status()["socket"]
    result = _cli("db", "status")
    assert result.returncode == 0, result.stderr
    assert sock in result.stdout and "embedded" in result.stdout
    as_json = json.loads(_cli("db", "status", "--json").stdout)
    assert as_json["socket"] == sock and as_json["port"] is None and as_json["running"] is True


def test_cli_usage_errors_and_help() -> None:
    bad = _cli("db", "bogus")
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
    assert _cli("nonsense").returncode != 0
    for args in (["--help"], ["db", "--help"], ["db", "stop", "--help"]):
        result = _cli(*args)
        assert result.returncode == 0 and "usage:" in result.stdout


def test_cli_reports_modelzoo_errors_on_one_line(other_dir: Path) -> None:
    result = _cli(
        "db", "start", MODELZOO_DATABASE_DIR=str(other_dir), MODELZOO_MONGOD="/no/such/mongod"
    )
    assert result.returncode == 1
    assert result.stderr.startswith("modelzoo: error: ")
    assert "/no/such/mongod" in result.stderr and len(result.stderr.splitlines()) == 1


def test_cli_stop_in_process(other_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelzoo.cli import main

    monkeypatch.setenv(mzdb.ENV_DIR, str(other_dir))
    pid = (mzdb.connect(), mzdb.status()["pid"])[1]
    assert main(["db", "stop"]) == 0
    assert not mzserver.pid_alive(pid)
    assert main(["db", "stop"]) == 0  # nothing to stop is not an error
    assert main(["--help"]) == 0


def test_cli_start_keep_then_stop(other_dir: Path) -> None:
    started = _cli("db", "start", "--keep", MODELZOO_DATABASE_DIR=str(other_dir))
    assert started.returncode == 0, started.stderr
    assert "keeps running until `modelzoo db stop`" in started.stdout
    status = mzserver.server_status(other_dir)  # the CLI process has exited; the server is kept
    assert status["running"] and status["keep"] and status["clients"] == []
    stopped = _cli("db", "stop", MODELZOO_DATABASE_DIR=str(other_dir))
    assert stopped.returncode == 0 and f"pid {status['pid']}" in stopped.stdout
    assert not mzserver.pid_alive(status["pid"]) and not mzserver.pid_alive(status["monitor_pid"])


def test_cli_start_without_keep_stops_after_the_idle_time(other_dir: Path) -> None:
    started = _cli("db", "start", MODELZOO_DATABASE_DIR=str(other_dir), MODELZOO_DATABASE_IDLE_S="1")
    assert started.returncode == 0, started.stderr
    assert "stops 1 s after the last process using it exits" in started.stdout
    deadline = time.monotonic() + 60
    while mzserver.server_processes(other_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mzserver.server_processes(other_dir) == []
