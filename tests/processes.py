"""Helpers for tests that start Python subprocesses."""

from __future__ import annotations

import os
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
