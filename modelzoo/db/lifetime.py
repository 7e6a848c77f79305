"""Who uses an embedded mongod, and the monitor that stops it once none of them is alive.

Every process that connects to the embedded server registers itself with a file
``clients/<pid>-<start>`` in the data directory, where ``start`` is the process's
start time (clock ticks since boot, from ``/proc/<pid>/stat``): a pid that the
kernel has since given to another program does not count as the client. The file
is removed when the process exits normally; a process killed with ``kill -9``
leaves it behind, and its dead pid says it is gone.

Beside each ``mongod`` runs a monitor, started with it in a session of its own.
It polls the registered clients; once none has been alive for ``idle_s``
seconds it takes the lock, checks again, stops ``mongod`` cleanly (SIGTERM, which
mongod handles as a normal shutdown: no journal recovery on the next start),
removes the port file and exits. It also exits, stopping nothing, when mongod
exits without it (a crash, or ``modelzoo db stop``). A ``keep`` file in the data
directory keeps the server running without clients.

This module imports only the standard library (and :mod:`modelzoo.atomic`,
which does too, by its file when run as a program), on purpose: besides being
imported by :mod:`modelzoo.db.server`, it is the monitor's program
(``python -I lifetime.py --data-dir DIR --mongod-pid PID ...``), which must
start in milliseconds and stay small, so it must not import modelzoo (whose
package pulls in numpy, torch and mongoengine).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import fcntl
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

if __package__:
    from ..atomic import write_json_atomic
else:  # the monitor's program (python -I lifetime.py): the package's one atomic writer, from its file
    import importlib.util

    _spec = importlib.util.spec_from_file_location("modelzoo_atomic", Path(__file__).resolve().parent.parent / "atomic.py")
    assert _spec is not None and _spec.loader is not None
    _atomic = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_atomic)
    write_json_atomic = _atomic.write_json_atomic

__all__ = [
    "LOCK_FILE",
    "PORT_FILE",
    "CLIENTS_DIR",
    "MONITOR_FILE",
    "MONITOR_LOG",
    "KEEP_FILE",
    "pid_alive",
    "start_time",
    "cmdline",
    "wait_exit",
    "send_signal",
    "try_lock",
    "write_json",
    "read_json",
    "register_client",
    "live_clients",
    "main",
]

LOCK_FILE = "modelzoo.lock"  # flock: serialises start-up, registration and shut-down
PORT_FILE = "mongod.json"  # the running server: pid, port, binary, monitor
CLIENTS_DIR = "clients"  # one file per registered client process
MONITOR_FILE = "monitor.json"  # the monitor's state, for `modelzoo db status`
MONITOR_LOG = "monitor.log"
KEEP_FILE = "keep"  # present: keep the server running without clients

_STOP_TIMEOUT_S = 60.0  # mongod's clean shutdown, before SIGKILL
_KILL_WAIT_S = 5.0


# --------------------------------------------------------------------------- processes


def start_time(pid: int) -> Optional[int]:
    """The start time of process ``pid`` in clock ticks since boot; None if unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: Optional[int], start: Optional[int] = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not).

    Args:
        pid: the process id.
        start: its :func:`start_time` when it was seen; if given, a process with
            the same pid but another start time (a reused pid) does not count.
    """
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return not os.path.isdir("/proc")  # no /proc (macOS): os.kill said it exists
    try:
        if fields[0] in (b"Z", b"X"):
            return False
        return start is None or int(fields[19]) == start
    except (IndexError, ValueError):
        return True


def cmdline(pid: int) -> Optional[List[str]]:
    """The arguments of process ``pid``, or None where /proc cannot tell."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def wait_exit(
    pid: int, timeout: float, alive: Callable[[int], bool] = pid_alive
) -> bool:
    """Waits up to ``timeout`` seconds for ``pid`` to exit; whether it did."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def send_signal(pid: int, sig: int) -> None:
    """``os.kill``, quiet when the process is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def try_lock(path: Path) -> Iterator[bool]:
    """Tries once to take the exclusive ``flock`` on ``path``; yields whether it did."""
    fd = os.open(str(path), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Writes ``data`` to ``path`` atomically: readers see the old file or the new one."""
    write_json_atomic(path, data, file_mode=0o600)  # only this user reads it


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object in ``path``, or None if it is missing or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- clients


def register_client(data_dir: Path, pid: int) -> Path:
    """Registers process ``pid`` (normally this one) as a client; returns its file."""
    clients = data_dir / CLIENTS_DIR
    clients.mkdir(mode=0o700, exist_ok=True)
    path = clients / f"{pid}-{start_time(pid) or 0}"
    if not path.exists():
        command = " ".join(cmdline(pid) or [])
        write_json(path, {"pid": pid, "command": command[:200], "since": _now()})
    return path


def _parse_client(name: str) -> Optional[tuple]:
    pid, _, start = name.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return None
    return int(pid), int(start)


def live_clients(data_dir: Path, prune: bool = False, details: bool = False) -> List[Dict[str, Any]]:
    """The registered clients of ``data_dir`` that are alive.

    Args:
        data_dir: the embedded server's data directory.
        prune: also remove the files of clients that are gone.
        details: read each file's ``command`` and ``since`` too.

    Returns:
        ``{"pid": ...}`` per live client (plus ``command`` and ``since`` with
        ``details``), in pid order.
    """
    try:
        names = os.listdir(data_dir / CLIENTS_DIR)
    except FileNotFoundError:
        return []
    alive = []
    for name in names:
        parsed = _parse_client(name)
        if parsed is None:
            continue  # a temporary file being written, or not ours
        pid, start = parsed
        if pid_alive(pid, start or None):
            entry: Dict[str, Any] = {"pid": pid}
            if details:
                data = read_json(data_dir / CLIENTS_DIR / name) or {}
                entry.update(command=data.get("command"), since=data.get("since"))
            alive.append(entry)
        elif prune:
            _unlink(data_dir / CLIENTS_DIR / name)
    return sorted(alive, key=lambda c: c["pid"])


# --------------------------------------------------------------------------- the monitor


class _Monitor:
    """The loop of the monitor process of one mongod."""

    def __init__(self, data_dir: Path, mongod_pid: int, mongod_start: Optional[int], idle_s: float):
        self.data_dir = data_dir
        self.mongod_pid = mongod_pid
        self.mongod_start = mongod_start
        self.idle_s = idle_s
        self.poll_s = min(0.5, max(0.05, idle_s / 4))
        self.pid = os.getpid()
        self.state: Dict[str, Any] = {}

    def log(self, message: str) -> None:
        with contextlib.suppress(OSError):
            with open(self.data_dir / MONITOR_LOG, "a", encoding="utf-8") as f:
                f.write(f"{_now()} monitor {self.pid} (mongod {self.mongod_pid}): {message}\n")

    def mongod_alive(self) -> bool:
        return pid_alive(self.mongod_pid, self.mongod_start)

    def publish(self, **state: Any) -> None:
        state = {
            "pid": self.pid,
            "mongod_pid": self.mongod_pid,
            "idle_s": self.idle_s,
            **state,
        }
        # Rewritten when missing too: a monitor that exited late may have removed it.
        if state != self.state or not (self.data_dir / MONITOR_FILE).exists():
            self.state = state
            with contextlib.suppress(OSError):
                write_json(self.data_dir / MONITOR_FILE, state)

    def ours(self, record: Optional[Dict[str, Any]]) -> bool:
        return record is not None and record.get("pid") == self.mongod_pid

    def run(self) -> int:
        self.log(f"started; stops mongod {self.idle_s:g} s after its last client exits")
        idle_since: Optional[float] = None  # monotonic
        idle_since_wall: Optional[str] = None
        while True:
            if not self.mongod_alive():
                # Crashed, killed, or stopped by `modelzoo db stop`: nothing left to stop.
                # A stale port file is the next client's to recover, under the lock.
                self.log("mongod exited without the monitor; exiting")
                self._forget_state()
                return 0
            busy = bool(live_clients(self.data_dir, prune=True))
            keep = (self.data_dir / KEEP_FILE).exists()
            if busy or keep:
                idle_since = idle_since_wall = None
            elif idle_since is None:
                idle_since, idle_since_wall = time.monotonic(), _now()
            elif time.monotonic() - idle_since >= self.idle_s and self._stop_if_unused():
                return 0
            self.publish(idle_since=idle_since_wall, keep=keep)
            time.sleep(self.poll_s)

    def _stop_if_unused(self) -> bool:
        """Under the lock, stops mongod if still nobody uses it; whether it did."""
        with try_lock(self.data_dir / LOCK_FILE) as locked:
            if not locked:
                return False  # a client is starting or registering: look again next time
            # A client may have registered between our look and the lock.
            if live_clients(self.data_dir) or (self.data_dir / KEEP_FILE).exists():
                return False
            if not self.ours(read_json(self.data_dir / PORT_FILE)):
                self.log("the port file names another server; exiting without stopping it")
                self._forget_state()
                return True
            self.log(f"no client for {self.idle_s:g} s; stopping mongod")
            self.publish(idle_since=self.state.get("idle_since"), keep=False, stopping=True)
            send_signal(self.mongod_pid, signal.SIGTERM)  # mongod's clean shutdown
            if not wait_exit(self.mongod_pid, _STOP_TIMEOUT_S, self._alive):
                self.log(f"mongod still running {_STOP_TIMEOUT_S:g} s after SIGTERM; SIGKILL")
                send_signal(self.mongod_pid, signal.SIGKILL)
                wait_exit(self.mongod_pid, _KILL_WAIT_S, self._alive)
            _unlink(self.data_dir / PORT_FILE)
            self._forget_state()
            self.log("mongod stopped; exiting")
            return True

    def _alive(self, pid: int) -> bool:
        return pid_alive(pid, self.mongod_start)

    def _forget_state(self) -> None:
        state = read_json(self.data_dir / MONITOR_FILE)
        if state is None or state.get("pid") == self.pid:
            _unlink(self.data_dir / MONITOR_FILE)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The monitor process: ``lifetime.py --data-dir DIR --mongod-pid PID --idle-s S``."""
    p = argparse.ArgumentParser(prog="modelzoo-db-monitor", description=main.__doc__)
    p.add_argument("--data-dir", required=True, type=Path)
    p.add_argument("--mongod-pid", required=True, type=int)
    p.add_argument("--mongod-start", type=int, default=None)
    p.add_argument("--idle-s", required=True, type=float)
    args = p.parse_args(argv)
    # Ctrl-C in the terminal that started the first client must not reach us (we
    # have our own session already); SIGTERM (from `modelzoo db stop`) ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return _Monitor(args.data_dir, args.mongod_pid, args.mongod_start, args.idle_s).run()
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ESTALE):  # the data directory was removed
            return 0
        raise


if __name__ == "__main__":
    sys.exit(main())
