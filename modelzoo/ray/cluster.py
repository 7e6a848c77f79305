"""Importing Ray (an optional extra), and the Ray session a run uses."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator, Optional

from ..errors import ExtraNotInstalledError

__all__ = ["import_ray", "session", "package_root"]


def import_ray() -> Any:
    """The ``ray`` module, with Ray Data.

    Raises:
        ExtraNotInstalledError: Ray is not installed; names ``pip install 'modelzoo[ray]'``.
    """
    try:
        import ray
        import ray.data  # noqa: F401 - the part a run needs
    except ImportError as e:
        raise ExtraNotInstalledError("backend='ray'", "ray", f"ray[data] ({e})") from e
    return ray


def package_root() -> str:
    """The directory this process imports modelzoo from."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def session(address: Optional[str] = None) -> Iterator[Any]:
    """Ray for one run.

    * Ray already initialised in this process: used as it is, left running.
    * ``address`` (or ``$RAY_ADDRESS``): connects to that cluster; disconnects after.
    * otherwise: starts a local Ray (no dashboard) whose workers import the
      same modelzoo as this process, and shuts it down after (its raylet,
      GCS and workers stop with it).

    Yields:
        the ``ray`` module.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        path = os.pathsep.join(filter(None, [package_root(), os.environ.get("PYTHONPATH")]))
        ray.init(
            include_dashboard=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"PYTHONPATH": path}},
        )
    try:
        yield ray
    finally:
        ray.shutdown()
