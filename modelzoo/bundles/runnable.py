"""Runnable-command bundles: the command serves ``POST /predict`` and
``GET /readyz`` over HTTP, as Launch's runnable images do.

Locally the command runs as a child process on a free port of 127.0.0.1:
``PORT`` is set in its environment and ``$PORT`` / ``${PORT}`` in its
arguments are replaced. A command that does not use that port, such as
one listening on Launch's 5005, is found listening (:mod:`.ports`) and its
port is used (a port taken before it started is named in the error).
:func:`start_server` waits until ``/readyz`` answers 200 (polling from the
start; it gives up ``readiness_initial_delay_seconds +
readiness_timeout_seconds`` later, and early when the process exits or has
opened no port 10 s after ``readiness_initial_delay_seconds``);
each request is sent as ``POST /predict`` with a JSON body. The process
(and its process group) is stopped by :meth:`CommandServer.close`, and at
interpreter exit for any left running. On Linux the command runs as a "child
subreaper" (``PR_SET_CHILD_SUBREAPER``), so a grandchild that leaves the
group (``setsid``) stays its descendant and is stopped with it. A process that exits, or never gets
ready, fails with its exit code and the tail of its stderr.

A Triton-enhanced bundle also starts ``tritonserver`` (which must be on
``PATH``) beside the command, and waits for its ``/v2/health/ready``.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import BundleConfigError, BundlePredictError, BundleRequestError, BundleServerError
from .ports import expected_port, listening_ports, port_is_free, taken_message

__all__ = ["CommandServer", "start_server", "free_port", "running_pids"]

_RUNNING: Dict[int, "CommandServer"] = {}
_RUNNING_LOCK = threading.Lock()
_POLL_S = 0.05
#: after readiness_initial_delay_seconds, how long a command may keep every port closed
CLOSED_GRACE_S = 10.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def running_pids() -> List[int]:
    """The pids of the servers this process started and has not stopped."""
    with _RUNNING_LOCK:
        return sorted(_RUNNING)


#: runs argv[1:] with PR_SET_CHILD_SUBREAPER set (kept across exec): orphaned descendants stay under it
_SUBREAPER = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


def _launcher(argv: List[str]) -> List[str]:
    """``argv`` run through the subreaper launcher where there is one (Linux), else as is."""
    if not sys.platform.startswith("linux") or not sys.executable:
        return argv
    return [sys.executable, "-I", "-S", "-c", _SUBREAPER, *argv]


def _descendants(pid: int) -> List[int]:
    """Every live descendant of ``pid`` (from /proc; empty where there is none)."""
    children: Dict[int, List[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _substitute(command: Sequence[str], port: int) -> List[str]:
    return [str(a).replace("${PORT}", str(port)).replace("$PORT", str(port)) for a in command]


def _error_records(detail: str) -> Optional[list]:
    """The ``errors`` list of a JSON error answer, if it has one."""
    try:
        errors = json.loads(detail).get("errors")
    except (ValueError, AttributeError):
        return None
    return errors if isinstance(errors, list) else None


class CommandServer:
    """One running command: start, readiness, requests, stop.

    Args:
        name: the bundle's name, for messages.
        command: the argument list (``$PORT`` is replaced).
        env: added to this process's environment.
        ready_within: seconds the server may take to answer ``healthcheck_route``.
        predict_route / healthcheck_route: the HTTP routes.
        request_timeout: seconds one request may take.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        env: Optional[Mapping[str, str]] = None,
        ready_within: float = 60.0,
        predict_route: str = "/predict",
        healthcheck_route: str = "/readyz",
        request_timeout: float = 600.0,
        closed_within: Optional[float] = None,
    ):
        if not command:
            raise BundleConfigError(f"Bundle {name!r}: the runnable command is empty")
        self.name = name
        self.closed_within = closed_within
        self.port = free_port()
        # a command without $PORT may listen on env PORT or Launch's 5005: found while waiting (see _PortWatch)
        self.expected_port = expected_port(name, command, env)
        self.expected_taken = self.expected_port is not None and not port_is_free(self.expected_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.predict_route = predict_route
        self.healthcheck_route = healthcheck_route
        self.request_timeout = request_timeout
        self.argv = _substitute(command, self.port)
        full_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}, "PORT": str(self.port)}
        if shutil.which(self.argv[0], path=full_env.get("PATH")) is None:
            raise BundleServerError(
                f"Bundle {name!r}: cannot start {self.argv!r}: {self.argv[0]!r} is not an executable file "
                "(nor found on PATH)"
            )
        self._stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                _launcher(self.argv), env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=self._stderr, start_new_session=True,  # its own group: children are stopped too
            )
        except OSError as e:
            self._stderr.close()
            raise BundleServerError(f"Bundle {name!r}: cannot start {self.argv!r}: {e}") from e
        with _RUNNING_LOCK:
            _RUNNING[self.process.pid] = self
        try:
            self._wait_ready(ready_within)
        except BaseException:
            self.close()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines the process wrote to stderr."""
        try:
            self._stderr.seek(0)
            text = self._stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _exited(self, when: str) -> BundleServerError:
        code = self.process.returncode
        taken = f". {taken_message(self.name, self.expected_port)}" if self.expected_taken and self.expected_port else ""
        return BundleServerError(
            f"Bundle {self.name!r}: its command {self.argv!r} exited with code {code} {when}{taken}",
            returncode=code, stderr_tail=self.stderr_tail(),
        )

    def use_port(self, port: int) -> None:
        """Sends the requests to ``port`` (the one the command turned out to listen on)."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def _wait_ready(self, within: float) -> None:
        start = time.monotonic()
        deadline = start + within
        watch = _PortWatch(self)
        while True:
            url = self.url + self.healthcheck_route  # the port may change: see _PortWatch
            if self.process.poll() is not None:
                raise self._exited("before it was ready")
            port_open = True
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError:
                pass  # it answers: open, not ready yet
            except (urllib.error.URLError, OSError) as e:
                reason = getattr(e, "reason", e)
                port_open = not isinstance(reason, ConnectionRefusedError)
            if not port_open:
                watch.check(time.monotonic() - start)
            if time.monotonic() > deadline:
                raise BundleServerError(
                    f"Bundle {self.name!r}: {self.argv!r} did not answer GET {self.healthcheck_route} with 200 "
                    f"within {within:g} s (readiness_initial_delay_seconds + readiness_timeout_seconds); "
                    "it was stopped. It must serve HTTP on the port given in $PORT, on 127.0.0.1.",
                    stderr_tail=self.stderr_tail(),
                )
            time.sleep(_POLL_S)

    def __call__(self, request: Any) -> Any:
        """Sends one request as ``POST predict_route`` (JSON) and returns the decoded answer.

        Raises:
            BundlePredictError: the server answered with an error status (this request only).
            BundleServerError: the server is gone.
        """
        if isinstance(request, (bytes, bytearray)):
            body, ctype = bytes(request), "application/octet-stream"
        else:
            body, ctype = json.dumps(request).encode(), "application/json"
        req = urllib.request.Request(
            self.url + self.predict_route, data=body, method="POST", headers={"Content-Type": ctype}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout) as r:
                data = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[-2000:]
            message = f"Bundle {self.name!r}: POST {self.predict_route} answered {e.code}: {detail}"
            if e.code == 422:  # the request is malformed: the caller's input, passed on as such
                raise BundleRequestError(message, _error_records(detail)) from None
            raise BundlePredictError(message) from None
        except (urllib.error.URLError, OSError) as e:
            if self.process.poll() is not None:
                raise self._exited("while serving a request") from None
            raise BundleServerError(
                f"Bundle {self.name!r}: POST {self.predict_route} failed: {e}", stderr_tail=self.stderr_tail()
            ) from None
        try:
            return json.loads(data) if data else None
        except ValueError:
            raise BundlePredictError(
                f"Bundle {self.name!r}: POST {self.predict_route} answered non-JSON: {data[:200]!r}"
            ) from None

    def close(self, timeout: float = 5.0) -> None:
        """Stops the process group and every descendant (a ``setsid`` grandchild
        included): SIGTERM, then SIGKILL after ``timeout``. Idempotent."""
        proc = self.process
        if proc.poll() is None:
            others = _descendants(proc.pid)  # while the server lives, its orphans are its own (subreaper)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
            _signal_all(others, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
            _signal_all([p for p in others if _alive(p)], signal.SIGKILL)
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)
        try:
            self._stderr.close()
        except OSError:  # pragma: no cover
            pass


class _PortWatch:
    """Follows a command whose port stays closed while it starts: when it
    listens on another port (read from ``/proc``): the bundle's env PORT or
    Launch's 5005, or its only port, that port is used; on several others,
    or on none by ``closed_within`` seconds (readiness_initial_delay_seconds +
    :data:`CLOSED_GRACE_S`),
    the wait ends early with the process's stderr."""

    def __init__(self, server: CommandServer):
        self.server = server
        self.next_look = 0.0
        self.seen: Optional[List[int]] = None

    def check(self, elapsed: float) -> None:
        srv = self.server
        fix = f"Make it listen on $PORT (modelzoo substitutes a free port, here {srv.port}) or on Launch's 5005"
        if elapsed >= self.next_look:
            self.next_look = elapsed + 0.25
            others = [p for p in listening_ports(srv.pid) if p != srv.port]
            if others and others == self.seen:  # twice in a row: it settled there
                if srv.expected_port in others:
                    srv.use_port(srv.expected_port)  # type: ignore[arg-type]
                elif len(others) == 1:
                    srv.use_port(others[0])
                else:
                    raise BundleServerError(
                        f"Bundle {srv.name!r}: {srv.argv!r} listens on ports {', '.join(map(str, others))}, not on "
                        f"{srv.port} (its $PORT) nor {srv.expected_port or 5005}; it was stopped. {fix}.",
                        stderr_tail=srv.stderr_tail(),
                    )
                return
            self.seen = others or None
        if srv.closed_within is not None and elapsed > srv.closed_within:
            raise BundleServerError(
                f"Bundle {srv.name!r}: {srv.argv!r} has not opened any port after {srv.closed_within:g} s "
                f"(readiness_initial_delay_seconds + {CLOSED_GRACE_S:g} s); it was stopped. {fix}, or raise "
                "readiness_initial_delay_seconds if it needs longer to start.",
                stderr_tail=srv.stderr_tail(),
            )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b")")[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class _WithTriton:
    """A command server with ``tritonserver`` beside it (stopped together)."""

    def __init__(self, triton: CommandServer, server: CommandServer):
        self.triton, self.server = triton, server

    def __call__(self, request: Any) -> Any:
        return self.server(request)

    @property
    def pid(self) -> int:
        return self.server.pid

    def close(self) -> None:
        self.server.close()
        self.triton.close()


def start_server(bundle: Any) -> Any:
    """Starts a runnable (or Triton-enhanced) bundle's processes and waits until they are ready.

    Raises:
        BundleConfigError: a Triton bundle and no ``tritonserver`` on ``PATH``.
        BundleServerError: a process exited or never got ready.
    """
    f = bundle.flavor
    ready = float(f.readiness_initial_delay_seconds) + float(f.readiness_timeout_seconds)
    env = dict(f.env)
    triton = None
    if f.flavor == "triton_enhanced_runnable_image":
        binary = shutil.which("tritonserver")
        if binary is None:
            raise BundleConfigError(
                f"Bundle {bundle.name!r} is Triton-enhanced: running it needs NVIDIA's 'tritonserver' on PATH, "
                "and none was found. Install Triton Inference Server (or run inside its container image), or "
                "create the bundle with create_model_bundle_from_runnable_image_v2 if the command does not need it."
            )
        tport = "$PORT"
        triton = CommandServer(
            bundle.name + "/tritonserver",
            [binary, f"--model-repository={f.triton_model_repository}", f"--http-port={tport}",
             "--allow-grpc=false", "--allow-metrics=false"],
            ready_within=float(f.triton_readiness_initial_delay_seconds) + float(f.readiness_timeout_seconds),
            healthcheck_route="/v2/health/ready",
        )
        env["TRITON_HTTP_URL"] = triton.url
    try:
        command = f.command or getattr(f, "streaming_command", ())  # a streaming bundle may have only that
        server = CommandServer(
            bundle.name, command, env, ready, predict_route=f.predict_route, healthcheck_route=f.healthcheck_route,
            # a port still closed this long after the initial delay will not open: end early
            closed_within=float(f.readiness_initial_delay_seconds) + min(float(f.readiness_timeout_seconds), CLOSED_GRACE_S),
        )
    except BaseException:
        if triton is not None:
            triton.close()
        raise
    return server if triton is None else _WithTriton(triton, server)


@atexit.register
def _stop_all() -> None:
    with _RUNNING_LOCK:
        servers = list(_RUNNING.values())
    for server in servers:
        try:
            server.close(timeout=2.0)
        except Exception:  # pragma: no cover - best effort at exit
            pass
