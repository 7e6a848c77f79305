"""The signature of a VESSL-style entry's files, made with modelzoo's one key.

Every entry is signed when it is registered (:mod:`modelzoo.signing`: the
key is ``$MODELZOO_TRUST_KEY``, default ``~/.modelzoo/trust.key``, mode
0600). ``vessl.signature`` holds the HMAC of the names and sha256 of the
files that decide what runs: ``entry.json``, ``vessl.manifest.json`` (the
runner, builder and its kwargs, hooks), the pickles and the state dict. It
is checked before anything of the entry is imported or unpickled, whether or
not the entry holds pickles: a zoo directory copied from elsewhere, edited
by hand, or written by another account that cannot read the key fails, and
loading it needs ``trust=True`` from the caller.

Entries signed before the signature covered every file carry a bare
signature of the manifest and pickles; it is still accepted for those files.
"""

from __future__ import annotations

import hashlib
import os
from typing import Sequence

from .. import signing
from ..atomic import atomic_write
from ..signing import ENV_TRUST_KEY, key_path

__all__ = ["ENV_TRUST_KEY", "key_path", "sign", "verify", "SIGNATURE_FILE"]

SIGNATURE_FILE = "vessl.signature"
_VERSION = "v2 "


def _files_digest_input(directory: str, files: Sequence[str]) -> bytes:
    parts = []
    for name in sorted(set(files)):
        with open(os.path.join(directory, name), "rb") as f:
            parts.append(name.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return b"".join(parts)


def sign(directory: str, files: Sequence[str]) -> None:
    """Writes ``vessl.signature``: the HMAC of ``files`` (names and contents).

    Raises:
        TrustKeyError: the key file is unsafe (the message says ``chmod 600 PATH``).
    """
    signature = signing.sign_bytes(_files_digest_input(directory, files))
    with atomic_write(os.path.join(directory, SIGNATURE_FILE)) as f:
        f.write(_VERSION + signature + "\n")


def verify(directory: str, files: Sequence[str], legacy_files: Sequence[str] = ()) -> bool:
    """Whether ``vessl.signature`` is this user's signature of exactly ``files``
    (or, for an entry signed before the signature covered every file, of ``legacy_files``)."""
    path = os.path.join(directory, SIGNATURE_FILE)
    try:
        with open(path) as f:
            stored = f.read().strip()
        if stored.startswith(_VERSION):
            return signing.verify_bytes(_files_digest_input(directory, files), stored[len(_VERSION):])
        return bool(legacy_files) and signing.verify_bytes(_files_digest_input(directory, legacy_files), stored)
    except FileNotFoundError:
        return False
