"""A ``modelzoo serve`` child process on loopback for tests: started with
``--port 0``, synchronised on the address it prints and on ``/readyz``,
killed by :meth:`Served.kill` (use it in ``finally``)."""

from __future__ import annotations

import queue
import re
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

import httpx

from tests.processes import REPO

DEADLINE_S = 120.0  # a loaded 2-core machine imports torch slowly


class Served:
    """``python -m modelzoo serve NAME --port 0 ...`` in a child process."""

    def __init__(self, args: List[str], env: Dict[str, str], cwd: Optional[str] = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelzoo", "serve", *args, "--port", "0"], env=env, cwd=cwd or str(REPO),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.output: List[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            self.url = self._address()
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put("")  # EOF

    def _address(self) -> str:
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "":
                raise AssertionError(f"modelzoo serve exited ({self.proc.wait()}):\n{''.join(self.output)}")
            found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
            if found:
                return found.group(1)
        raise AssertionError(f"no address printed within {DEADLINE_S} s:\n{''.join(self.output)}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"/readyz never answered 200:\n{''.join(self.output)}")
            time.sleep(0.05)

    def info(self) -> Dict[str, Any]:
        return httpx.get(self.url + "/info", timeout=10).json()

    def post(self, body: object) -> httpx.Response:
        return httpx.post(self.url + "/predict", json=body, timeout=60)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
