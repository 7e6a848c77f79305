"""Choices the engine makes when the user does not: loader workers and torch threads."""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cpu_count", "uses_cuda", "default_workers", "default_threads"]


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def uses_cuda(model: Any) -> bool:
    return str(getattr(model, "device", None)).startswith("cuda")


def default_workers(model: Any) -> int:
    """DataLoader worker processes (or decoding threads for non-torch models)."""
    cores = cpu_count()
    if uses_cuda(model):
        return min(8, cores)
    return max(1, cores // 2)


def default_threads(model: Any, num_workers: int) -> int:
    """torch intra-op threads for the forward pass on the CPU."""
    return max(1, cpu_count())
