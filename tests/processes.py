"""Helpers for tests that start Python subprocesses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, Optional

REPO = Path(__file__).resolve().parents[1]


def child_env(**overrides: Optional[str]) -> Dict[str, str]:
    """This process's environment with the repository on ``PYTHONPATH`` and
    ``overrides`` applied (a value of None removes the variable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


#: The first line of a child script that a test interrupts with SIGINT. From a
#: terminal, Python gives its children the default handler (KeyboardInterrupt);
#: a child of a background job (``make test &``, nohup, CI runners) inherits
#: SIGINT *ignored*, and Python leaves an ignored signal ignored: the child
#: would never see the test's Ctrl-C.
RESTORE_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"


def stop(*procs: "Optional[subprocess.Popen]", timeout: float = 30) -> None:
    """Kills each process that is still running and reaps it (for ``finally``:
    a failed test must not leave a child behind, blocked forever)."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
    for proc in procs:
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
