"""The embedded server lives exactly as long as its clients (plus MODELZOO_DATABASE_IDLE_S).

Real processes and a real mongod in a data directory of each test's own. Every
wait is a poll on a condition with a generous deadline (the machine may be a
loaded 2-core one); the only fixed sleeps give the monitor a chance to do the
wrong thing, and what follows them holds however long they last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import mongoengine
import pytest

from modelzoo import db as mzdb
from modelzoo.db import client as mzclient
from modelzoo.db import lifetime
from modelzoo.db import server as mzserver
from modelzoo.errors import DatabaseError
from tests.processes import child_env, stop

REPO = Path(__file__).resolve().parents[1]
IDLE_S = 1.0
DEADLINE_S = 60.0  # for anything to happen; a pass normally takes a second or two
UNCLEAN = "Detected unclean shutdown"  # what mongod logs when it has to recover its files

# A client process: connects (starting the server if needed), then obeys stdin:
# "write" inserts a document and answers with the server's pid, "exit" exits
# normally (running atexit), and EOF does too.
CLIENT = textwrap.dedent(
    """
    import json, os, sys
    from modelzoo import db
    def write():
        db.get_db().lifetime.insert_one({"pid": os.getpid()})
        return db.status()["pid"]
    print(json.dumps({"pid": os.getpid(), "server": write()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "write":
            print(json.dumps({"server": write()}), flush=True)
        elif line.strip() == "exit":
            break
    """
)


def _env(data_dir: Path, **overrides: Optional[str]) -> Dict[str, str]:
    unset: Dict[str, Optional[str]] = {key: None for key in (mzdb.ENV_URI, mzdb.ENV_KEEP, mzdb.ENV_WRITE_CONCERN)}
    return child_env(**{mzdb.ENV_DIR: str(data_dir), mzdb.ENV_IDLE: repr(IDLE_S), **unset, **overrides})


class Client:
    """A client process of the embedded server, driven through its stdin. The
    ``data_dir`` fixture kills every client a test left running."""

    started: List["Client"] = []

    def __init__(self, env: Dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT],
            env=env,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.proc.pid
        Client.started.append(self)

    def answer(self) -> dict:
        line = self.proc.stdout.readline()  # the client answers or dies (EOF)
        if not line:
            self.proc.wait(DEADLINE_S)
            raise AssertionError(f"client {self.pid} died: {self.proc.stderr.read()}")
        return json.loads(line)

    def write(self) -> int:
        self.proc.stdin.write("write\n")
        self.proc.stdin.flush()
        return self.answer()["server"]

    def exit(self) -> None:
        self.proc.stdin.write("exit\n")
        self.proc.stdin.flush()
        assert self.proc.wait(DEADLINE_S) == 0, self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.proc.stdin.close()

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL: no atexit, its registration file stays behind
        self.proc.wait(DEADLINE_S)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            f.close()


def _start_clients(n: int, env: Dict[str, str]) -> List[Client]:
    clients = [Client(env) for _ in range(n)]  # they race to start the server
    for c in clients:
        c.first = c.answer()
    return clients


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)


def _gone(*pids: Optional[int]) -> Callable[[], bool]:
    return lambda: not any(mzserver.pid_alive(p) for p in pids if p)


def _status(data_dir: Path) -> dict:
    return mzserver.server_status(data_dir)  # reads files and pings; registers nothing


def _log_after(data_dir: Path, offset: int) -> str:
    with open(data_dir / mzserver.LOG_FILE, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")


def _log_size(data_dir: Path) -> int:
    path = data_dir / mzserver.LOG_FILE
    return path.stat().st_size if path.exists() else 0


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir of the test's own; anything still running in it afterwards is stopped."""
    path = Path(os.path.realpath(tmp_path / "db"))
    yield path
    try:
        stop(*(c.proc for c in Client.started))
        Client.started.clear()
        mzserver.stop_server(path, timeout=10)
    finally:
        for pid in mzserver.server_processes(path):  # a failed test must not leak one
            os.kill(pid, signal.SIGKILL)
        mzdb.reset()


# --------------------------------------------------------------------------- lifetime


def test_three_clients_share_one_server_that_stops_cleanly_after_they_exit(data_dir: Path) -> None:
    clients = _start_clients(3, _env(data_dir))
    server = clients[0].first["server"]
    assert {c.first["server"] for c in clients} == {server}
    status = _status(data_dir)
    assert status["running"] and status["pid"] == server
    assert [c["pid"] for c in status["clients"]] == sorted(c.pid for c in clients)
    assert status["idle_s"] == IDLE_S and status["stops_in_s"] is None
    monitor = status["monitor_pid"]
    assert mzserver.server_processes(data_dir) == sorted([server, monitor])

    for c in clients:
        c.exit()
    _wait_until(_gone(server, monitor), "mongod and its monitor stop after the last client")
    assert mzserver.server_processes(data_dir) == []
    assert not (data_dir / mzserver.PORT_FILE).exists()
    assert list((data_dir / lifetime.CLIENTS_DIR).iterdir()) == []  # each removed its own
    monitor_log = (data_dir / lifetime.MONITOR_LOG).read_text()
    assert "stopping mongod" in monitor_log and "mongod stopped" in monitor_log

    # Reused after the clean stop: mongod opens its files without recovery.
    offset = _log_size(data_dir)
    (again,) = _start_clients(1, _env(data_dir))
    assert again.first["server"] != server
    restart_log = _log_after(data_dir, offset)
    assert "Waiting for connections" in restart_log and UNCLEAN not in restart_log
    again.exit()
    _wait_until(lambda: mzserver.server_processes(data_dir) == [], "the second server stops too")


def test_a_client_killed_with_sigkill_counts_as_gone(data_dir: Path) -> None:
    clients = _start_clients(3, _env(data_dir))
    server = clients[0].first["server"]
    clients[0].kill()
    survivors = sorted(c.pid for c in clients[1:])
    _wait_until(
        lambda: [c["pid"] for c in _status(data_dir)["clients"]] == survivors,
        "the killed client is no longer counted",
    )
    _wait_until(  # the monitor prunes the dead client's file
        lambda: not any(
            p.name.startswith(f"{clients[0].pid}-") for p in (data_dir / lifetime.CLIENTS_DIR).iterdir()
        ),
        "the dead client's registration is removed",
    )
    time.sleep(3 * IDLE_S)  # past the idle time: the server must still be up for the others
    assert mzserver.pid_alive(server)
    assert [c.write() for c in clients[1:]] == [server, server]

    monitor = _status(data_dir)["monitor_pid"]
    for c in clients[1:]:
        c.exit()
    _wait_until(_gone(server, monitor), "the server stops after the survivors exit")
    assert mzserver.server_processes(data_dir) == []


def test_a_crashed_mongod_is_recovered_by_the_next_client_and_its_monitor_exits(data_dir: Path) -> None:
    (client,) = _start_clients(1, _env(data_dir))
    first = _status(data_dir)
    os.kill(first["pid"], signal.SIGKILL)  # mongod crashes while a client is alive
    _wait_until(_gone(first["pid"], first["monitor_pid"]), "the monitor exits with its mongod")

    offset = _log_size(data_dir)
    second = client.write()  # the client notices, starts a new server and writes
    assert second != first["pid"]
    assert UNCLEAN in _log_after(data_dir, offset)  # recovery, unlike after a clean stop
    status = _status(data_dir)
    assert status["pid"] == second and status["monitor_pid"] not in (None, first["monitor_pid"])
    assert [c["pid"] for c in status["clients"]] == [client.pid]

    client.exit()
    _wait_until(_gone(second, status["monitor_pid"]), "the new server stops after its client")


def test_a_killed_monitor_is_replaced_by_the_next_client(data_dir: Path) -> None:
    (a,) = _start_clients(1, _env(data_dir))
    before = _status(data_dir)
    os.kill(before["monitor_pid"], signal.SIGKILL)
    _wait_until(_gone(before["monitor_pid"]), "the monitor is dead")
    (b,) = _start_clients(1, _env(data_dir))
    after = _status(data_dir)
    assert after["pid"] == before["pid"]  # the same server, adopted by a new monitor
    assert after["monitor_pid"] not in (None, before["monitor_pid"])
    a.exit()
    b.exit()
    _wait_until(_gone(after["pid"], after["monitor_pid"]), "the adopted server stops")


FORKS = textwrap.dedent(
    """
    import json, os, sys
    from modelzoo import db
    db.get_db().command("ping")
    clients = os.path.join(os.environ["MODELZOO_DATABASE_DIR"], "clients")
    names = lambda: sorted(n.split("-")[0] for n in os.listdir(clients))
    out = {"parent": str(os.getpid()), "registered": names()}
    for use_db in (False, True):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: exits normally, so the inherited atexit handlers run
            os.close(r)
            if use_db:
                db.get_db().command("ping")
            os.write(w, json.dumps(names()).encode())
            sys.exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            during = json.load(f)
        os.waitpid(pid, 0)
        out["db" if use_db else "plain"] = {"child": str(pid), "during": during, "after": names()}
    print(json.dumps(out))
    """
)


def test_forked_workers_count_as_their_parent_or_register_themselves(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", FORKS], env=_env(data_dir, MODELZOO_DATABASE_IDLE_S="600"),
        cwd=str(REPO), capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    parent = out["parent"]
    assert out["registered"] == [parent]
    # A worker that does not use the database: counted as its parent; its exit
    # leaves the parent's registration alone.
    assert out["plain"]["during"] == [parent] and out["plain"]["after"] == [parent]
    # A worker that uses it registers itself, and unregisters at exit.
    child = out["db"]["child"]
    assert out["db"]["during"] == sorted([parent, child]) and out["db"]["after"] == [parent]


def test_keep_keeps_the_server_without_clients_until_stop(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (client,) = _start_clients(1, _env(data_dir, MODELZOO_DATABASE_KEEP="1"))
    client.exit()
    status = _status(data_dir)
    assert status["keep"] is True and status["clients"] == [] and status["stops_in_s"] is None
    time.sleep(3 * IDLE_S)  # past the idle time
    assert mzserver.pid_alive(status["pid"]) and mzserver.pid_alive(status["monitor_pid"])

    monkeypatch.setenv(mzdb.ENV_DIR, str(data_dir))
    assert mzdb.stop() is True  # at once, for everyone
    assert not mzserver.pid_alive(status["pid"]) and not mzserver.pid_alive(status["monitor_pid"])
    assert not (data_dir / lifetime.KEEP_FILE).exists()
    assert mzserver.server_processes(data_dir) == []


def test_status_shows_the_clients_and_the_idle_timer(data_dir: Path) -> None:
    env = _env(data_dir, MODELZOO_DATABASE_IDLE_S="600")
    (client,) = _start_clients(1, env)
    busy = _status(data_dir)
    assert [c["pid"] for c in busy["clients"]] == [client.pid]
    assert "python" in busy["clients"][0]["command"] and busy["clients"][0]["since"]
    assert busy["idle_s"] == 600 and busy["stops_in_s"] is None and busy["keep"] is False
    client.exit()
    _wait_until(lambda: _status(data_dir)["clients"] == [], "the client is gone")
    _wait_until(
        lambda: (_status(data_dir)["stops_in_s"] or 601) < 600, "the idle timer is counting down"
    )
    idle = _status(data_dir)
    assert 500 < idle["stops_in_s"] < 600 and idle["running"]

    out = subprocess.run(
        [sys.executable, "-m", "modelzoo", "db", "status"], env=env, cwd=str(REPO),
        capture_output=True, text=True, timeout=DEADLINE_S,
    ).stdout  # fmt: skip
    assert "clients" in out and "none" in out and "stops in" in out


# --------------------------------------------------------------------------- temporary()


def test_temporary_starts_a_private_server_and_removes_it(tmp_path: Path) -> None:
    session_dir = os.environ[mzdb.ENV_DIR]
    with mzdb.temporary(parent=tmp_path, idle_s=7) as data_dir:
        assert os.environ[mzdb.ENV_DIR] == str(data_dir) != session_dir
        assert os.environ[mzdb.ENV_IDLE] == "7.0"
        status = mzdb.status()
        assert status["running"] and status["data_dir"] == str(data_dir)
        assert [c["pid"] for c in status["clients"]] == [os.getpid()]
        mzdb.get_db().scratch.insert_one({"x": 1})
        pids = mzserver.server_processes(data_dir)
        assert pids == sorted([status["pid"], status["monitor_pid"]])
    assert not data_dir.exists()
    assert not any(mzserver.pid_alive(p) for p in pids)
    assert os.environ[mzdb.ENV_DIR] == session_dir
    assert os.environ[mzdb.ENV_IDLE] == repr(1.0)  # the session's, from conftest
    assert mzdb.get_db().scratch.count_documents({}) == 0  # back on the session's server


def test_temporary_cleans_up_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        with mzdb.temporary(parent=tmp_path) as data_dir:
            pids = mzserver.server_processes(data_dir)
            raise KeyError("boom")
    assert pids and not any(mzserver.pid_alive(p) for p in pids)
    assert not data_dir.exists()


# --------------------------------------------------------------------------- bad input


def test_a_directory_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 65534, 65534)
    else:
        theirs = Path("/")  # root's; refused before anything is created
    monkeypatch.setenv(mzdb.ENV_DIR, str(theirs))
    mzdb.reset()
    with pytest.raises(DatabaseError) as info:
        mzdb.get_client()
    message = str(info.value)
    assert str(theirs) in message and "not to you" in message and mzdb.ENV_DIR in message
    assert not (theirs / "data").exists()


def test_a_read_only_file_system_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True, timeout=60
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        monkeypatch.setenv(mzdb.ENV_DIR, str(ro / "db"))
        mzdb.reset()
        with pytest.raises(DatabaseError) as info:
            mzdb.get_client()
        message = str(info.value)
        assert str(ro / "db") in message and "read-only" in message and mzdb.ENV_DIR in message
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize(
    "var, value, match",
    [
        (mzdb.ENV_IDLE, "soon", "seconds"),
        (mzdb.ENV_IDLE, "-1", "seconds"),
        (mzdb.ENV_KEEP, "maybe", "yes/no"),
        (mzdb.ENV_WRITE_CONCERN, "jornaled", "Did you mean 'journaled'"),
    ],
)
def test_bad_settings_are_named_before_anything_starts(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, var: str, value: str, match: str
) -> None:
    monkeypatch.setenv(mzdb.ENV_DIR, str(data_dir))
    monkeypatch.setenv(var, value)
    mzdb.reset()
    with pytest.raises(DatabaseError, match=match) as info:
        mzdb.get_client()
    assert var in str(info.value) and repr(value) in str(info.value)
    assert mzserver.server_processes(data_dir) == []


# --------------------------------------------------------------------------- write concern


def test_writes_are_journaled_by_default_and_the_setting_changes_it(
    db, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert db.write_concern.document == {"w": 1, "j": True} == mzdb.write_concern().document
    mzdb.connect()
    assert mongoengine.get_db().client.write_concern.document == {"w": 1, "j": True}
    assert mzdb.status()["write_concern"] == "journaled"

    monkeypatch.setenv(mzdb.ENV_WRITE_CONCERN, "acknowledged")
    assert mzdb.get_db().write_concern.document == {"w": 1, "j": False}  # a new client
    mzdb.connect()
    assert mongoengine.get_db().client.write_concern.document == {"w": 1, "j": False}
    assert mzdb.status()["write_concern"] == "acknowledged"
    monkeypatch.delenv(mzdb.ENV_WRITE_CONCERN)
    assert mzdb.get_db().write_concern.document == {"w": 1, "j": True}
    mzdb.connect()


def test_a_uri_write_concern_wins_over_the_default_not_over_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(mzdb.ENV_WRITE_CONCERN, raising=False)
    assert "w" not in mzclient.client_kwargs("mongodb://h/?w=majority&wTimeoutMS=500")
    assert mzclient.client_kwargs("mongodb://h/") ["journal"] is True
    monkeypatch.setenv(mzdb.ENV_WRITE_CONCERN, "majority")
    assert mzclient.client_kwargs("mongodb://h/?w=1") == {
        **mzclient.client_kwargs("mongodb://h/"), "w": "majority", "journal": True
    }
