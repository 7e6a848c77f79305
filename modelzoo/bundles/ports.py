"""The port a runnable bundle's command listens on.

Launch's runnable images listen on port 5005. Every command gets a free
port, substituted for ``$PORT`` / ``${PORT}`` and set as ``PORT`` in its
environment. A command that does not use it may listen elsewhere: on the
port its ``env`` sets as ``PORT`` (the bundle's recorded port) or on 5005.
:func:`listening_ports` reads which TCP ports a process group listens on
(Linux ``/proc``), so the server finds that port and uses it, and
:func:`expected_port` / :func:`port_is_free` tell, when it fails to start,
that the port it expected was taken.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import List, Mapping, Optional, Sequence, Set

from .errors import BundleConfigError

__all__ = [
    "LAUNCH_PORT", "uses_port_variable", "expected_port", "taken_message", "port_is_free", "free_port", "listening_ports",
]

#: the port Launch's runnable images serve on
LAUNCH_PORT = 5005


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uses_port_variable(command: Sequence[str]) -> bool:
    """Whether the command's arguments name ``$PORT`` / ``${PORT}``."""
    return any("$PORT" in str(a) or "${PORT}" in str(a) for a in command)


def port_is_free(port: int) -> bool:
    """Whether a server could listen on ``127.0.0.1:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def expected_port(name: str, command: Sequence[str], env: Optional[Mapping[str, str]]) -> Optional[int]:
    """The port a command that does not use ``$PORT`` is expected to listen
    on: ``env["PORT"]`` when the bundle sets it, else Launch's 5005 (None
    for a command that uses ``$PORT``).

    Raises:
        BundleConfigError: ``env["PORT"]`` is not a port number.
    """
    if uses_port_variable(command):
        return None
    recorded = (env or {}).get("PORT")
    if recorded is None:
        return LAUNCH_PORT
    try:
        return int(recorded)
    except (TypeError, ValueError):
        raise BundleConfigError(f"Bundle {name!r}: env PORT={recorded!r} is not a port number") from None


def taken_message(name: str, port: int) -> str:
    """Why a command expected on ``port`` could not start, and the fix."""
    return (
        f"Bundle {name!r}: its command does not use $PORT, so it listens on port {port} (Launch's runnable-image "
        f"port, or the bundle's env PORT), and 127.0.0.1:{port} was already taken when it started (another server, "
        f"or another copy of this bundle still running). Stop what holds port {port}, or make the command listen "
        "on $PORT (modelzoo then picks a free port and substitutes it, e.g. [..., '--port', '$PORT'])."
    )


def _socket_inodes(pids: Set[int]) -> Set[str]:
    inodes: Set[str] = set()
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def _group_pids(pgid: int) -> Set[int]:
    pids = {pgid}
    try:
        names = os.listdir("/proc")
    except OSError:
        return pids
    for n in names:
        if not n.isdigit():
            continue
        try:
            with open(f"/proc/{n}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[2] == str(pgid):  # state, ppid, pgrp
            pids.add(int(n))
    return pids


def listening_ports(pgid: int) -> List[int]:
    """The TCP ports the processes of group ``pgid`` listen on (empty where
    ``/proc`` cannot tell, e.g. not Linux)."""
    inodes = _socket_inodes(_group_pids(pgid))
    if not inodes:
        return []
    ports: Set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and parts[9] in inodes:  # 0A: LISTEN
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return sorted(ports)
