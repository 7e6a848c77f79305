"""Signatures of what this user stored: one HMAC-SHA256 key for the library.

Anything modelzoo stores that can run code (a bundle record and its code
archive, a VESSL entry and its pickles, a zoo registration naming Python
objects) is signed when it is written and verified before it is used, in
whichever process uses it. The key is 32 random bytes in a file only this
user can read (``$MODELZOO_TRUST_KEY``, default ``~/.modelzoo/trust.key``),
created with mode 0600 on first use. A valid signature proves that this
user's own modelzoo wrote exactly these bytes; a record written by another
account (which cannot read the key), copied from elsewhere or edited since,
fails the check and is used only when the caller passes ``trust=True``.

A key file others can read (or that another user owns) is refused with an
error saying how to fix it: signing with it would prove nothing.

Example::

    sig = signing.sign({"command": ["python", "serve.py"], "created_at": "2026-01-01T00:00:00"})
    signing.require_trusted(record, record_sig, what="bundle 'ocr'")   # UntrustedError unless it matches
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import os
import secrets
import threading
from typing import Any, Mapping, Optional, Tuple

from .errors import TrustKeyError, UntrustedError

__all__ = [
    "ENV_TRUST_KEY",
    "key_path",
    "sign",
    "verify",
    "sign_bytes",
    "verify_bytes",
    "require_trusted",
    "canonical_json",
    "UntrustedError",
    "TrustKeyError",
]

ENV_TRUST_KEY = "MODELZOO_TRUST_KEY"
_KEY_BYTES = 32
#: what a payload signature covers before the JSON, so a payload and raw bytes never sign alike
_PAYLOAD_DOMAIN = b"modelzoo.sign.v1\0"

_LOCK = threading.Lock()
_CACHE: dict = {}


def key_path() -> str:
    """``$MODELZOO_TRUST_KEY`` or ``~/.modelzoo/trust.key`` (absolute)."""
    return os.path.abspath(os.path.expanduser(os.environ.get(ENV_TRUST_KEY) or os.path.join("~", ".modelzoo", "trust.key")))


def _create(path: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(_KEY_BYTES))
    try:
        os.link(tmp, path)  # atomic, and never replaces a key another process made first
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _key(create: bool) -> Optional[bytes]:
    """This user's key; None when there is none and ``create`` is False.

    Raises:
        TrustKeyError: the key file is readable by others, owned by another
            user, or not 32 bytes.
    """
    path = key_path()
    if create and not os.path.exists(path):
        _create(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if st.st_uid != os.getuid():
        raise TrustKeyError(
            f"The modelzoo signing key {path} belongs to uid {st.st_uid}, not to this user (uid {os.getuid()}): "
            f"a key another account can write proves nothing. Remove it (a new one is made on first use) or point "
            f"${ENV_TRUST_KEY} at a key of your own."
        )
    if st.st_mode & 0o077:
        raise TrustKeyError(
            f"The modelzoo signing key {path} has mode {st.st_mode & 0o777:o}: other users can read it, so a "
            f"signature made with it proves nothing. Fix it with: chmod 600 {path}"
        )
    stamp: Tuple[Any, ...] = (path, st.st_ino, st.st_mtime_ns, st.st_size)
    with _LOCK:
        cached = _CACHE.get("key")
        if cached is not None and cached[0] == stamp:
            return cached[1]
    with open(path, "rb") as f:
        key = f.read()
    if len(key) < _KEY_BYTES:
        raise TrustKeyError(f"The modelzoo signing key {path} holds {len(key)} bytes, fewer than {_KEY_BYTES}: "
                            "remove it and a new one is made on first use (what it signed must then be registered again)")
    with _LOCK:
        _CACHE["key"] = (stamp, key)
    return key


def _encode(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, _dt.datetime):
        # as the database gives it back: naive UTC, millisecond precision
        if value.tzinfo is not None:
            value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
        return {"$date": value.replace(microsecond=value.microsecond // 1000 * 1000).isoformat(timespec="milliseconds")}
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if hasattr(value, "binary") and type(value).__name__ == "ObjectId":
        return {"$oid": str(value)}
    raise TypeError(f"cannot sign a {type(value).__name__} ({value!r:.80}): give JSON data, bytes or datetimes")


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The bytes a payload's signature covers: JSON with sorted keys and no
    spaces; bytes as ``{"$bytes": base64}``, datetimes as naive UTC to the
    millisecond (what a database gives back), tuples as lists.

    Raises:
        TypeError: a value that is none of these.
    """
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True,
                      default=_encode).encode("utf-8")


def _mac(key: bytes, data: bytes) -> str:
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign_bytes(data: bytes) -> str:
    """The hex HMAC-SHA256 of ``data`` with this user's key (created on first use).

    Raises:
        TrustKeyError: the key file is unsafe (the message says how to fix it).
    """
    key = _key(create=True)
    assert key is not None
    return _mac(key, bytes(data))


def verify_bytes(data: bytes, signature: Optional[str]) -> bool:
    """Whether ``signature`` is this user's signature of exactly ``data``
    (False when there is no signature or no key yet).

    Raises:
        TrustKeyError: the key file is unsafe.
    """
    if not isinstance(signature, str) or not signature:
        return False
    key = _key(create=False)
    if key is None:
        return False
    return hmac.compare_digest(signature, _mac(key, bytes(data)))


def sign(payload: Mapping[str, Any]) -> str:
    """The hex HMAC-SHA256 of :func:`canonical_json` of ``payload`` with this user's key."""
    return sign_bytes(_PAYLOAD_DOMAIN + canonical_json(payload))


def verify(payload: Mapping[str, Any], signature: Optional[str]) -> bool:
    """Whether ``signature`` is this user's signature of exactly ``payload``."""
    try:
        data = canonical_json(payload)
    except (TypeError, ValueError):
        return False
    return verify_bytes(_PAYLOAD_DOMAIN + data, signature)


def require_trusted(payload: Mapping[str, Any], signature: Optional[str], *, what: str, trust: bool = False) -> None:
    """Returns when ``trust`` is True or ``signature`` is this user's signature of ``payload``.

    Args:
        payload: the record as stored (the fields that decide what runs).
        signature: the signature stored with it (None when it has none).
        what: names the record in the error, e.g. ``"bundle 'ocr' (3f2a...)"``.
        trust: the caller's own decision to run it anyway (never read from the record).

    Raises:
        UntrustedError: naming ``what`` and how to proceed.
        TrustKeyError: the key file is unsafe.
    """
    if trust or verify(payload, signature):
        return
    why = "it carries no signature" if not signature else "its signature does not match"
    raise UntrustedError(
        f"{what} can run code, and {why} this user's modelzoo key ({key_path()}): another user or process wrote "
        "it, it was copied from elsewhere, or it was changed since it was stored. Re-register (re-sign) it as its "
        "owner, or pass trust=True if you trust its author."
    )
