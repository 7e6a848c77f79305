"""File checksums (torch-free: the zoo verifies downloads with it)."""

from __future__ import annotations

import hashlib

__all__ = ["sha256_file"]


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks of ``chunk_size`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()
