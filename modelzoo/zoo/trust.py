"""Signing the zoo's records that name code (remote sources, lasting registrations).

A thin seam over :mod:`modelzoo.signing` (one HMAC key per user): a record
is signed when this user writes it and verified before its code runs, in
whichever process reads it; a record another account wrote, or one edited
since, raises :class:`~modelzoo.errors.UntrustedError`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Mapping, Optional

from .. import signing

__all__ = ["sign_record", "check_record", "file_digests"]


def sign_record(payload: Mapping[str, Any]) -> Optional[str]:
    """This user's signature of ``payload``."""
    return signing.sign(payload)


def check_record(payload: Mapping[str, Any], signature: Optional[str], *, what: str, trust: bool = False) -> None:
    """Returns when ``payload`` carries this user's signature (or ``trust``).

    Raises:
        UntrustedError: naming ``what`` and how to proceed.
    """
    signing.require_trusted(payload, signature, what=what, trust=trust)


def file_digests(root: str) -> Dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (hidden
    entries and ``__pycache__`` left out), for records that pin a folder's code."""
    out: Dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out[os.path.relpath(path, root).replace(os.sep, "/")] = h.hexdigest()
    return out
