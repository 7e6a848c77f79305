"""Trust for stored pickles: an HMAC made with a key only this user can read.

A model registered with a pickled part (a model instance, a runner class
defined in ``__main__``, a pre/postprocess lambda) is unpickled without
``trust=True`` only when its files carry a valid signature made with this
user's key (``$MODELZOO_TRUST_KEY``, default ``~/.modelzoo/trust.key``,
created on first registration with mode 0600). The signature proves that
the files are exactly what this user's own ``register_model`` wrote: a zoo
directory copied from elsewhere, edited by hand, or written by another
account that cannot read the key fails the check, and loading it needs
``trust=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Optional, Sequence

from ..atomic import atomic_write

__all__ = ["ENV_TRUST_KEY", "key_path", "sign", "verify", "SIGNATURE_FILE"]

ENV_TRUST_KEY = "MODELZOO_TRUST_KEY"
SIGNATURE_FILE = "vessl.signature"


def key_path() -> str:
    """``$MODELZOO_TRUST_KEY`` or ``~/.modelzoo/trust.key``."""
    return os.path.abspath(os.path.expanduser(os.environ.get(ENV_TRUST_KEY) or os.path.join("~", ".modelzoo", "trust.key")))


def _read_key(create: bool) -> Optional[bytes]:
    path = key_path()
    if create and not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process made first
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None  # a key others can read (or that is not ours) proves nothing
    with open(path, "rb") as f:
        return f.read()


def _digest(key: bytes, directory: str, files: Sequence[str]) -> str:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for name in sorted(files):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        mac.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return mac.hexdigest()


def sign(directory: str, files: Sequence[str]) -> None:
    """Writes ``vessl.signature``: the HMAC of ``files`` (names and contents) with this user's key."""
    key = _read_key(create=True)
    if key is None:
        return  # an unsafe key file: leave the entry unsigned (it then needs trust=True)
    with atomic_write(os.path.join(directory, SIGNATURE_FILE)) as f:
        f.write(_digest(key, directory, files) + "\n")


def verify(directory: str, files: Sequence[str]) -> bool:
    """Whether ``vessl.signature`` is this user's signature of exactly these files."""
    key = _read_key(create=False)
    path = os.path.join(directory, SIGNATURE_FILE)
    if key is None or not os.path.isfile(path):
        return False
    with open(path) as f:
        stored = f.read().strip()
    return hmac.compare_digest(stored, _digest(key, directory, files))
