"""Where bundles live: one document per bundle in the ``bundles`` collection
of the modelzoo database (the one that holds the datasets), and its files
under ``$MODELZOO_HOME/_bundles/<id>/``. Both outlive the process, so every
process lists the same bundles.

Records are never updated: a bundle id is derived from its content, so
saving the same content twice keeps the first record.

Every record is signed with this user's key (:mod:`modelzoo.signing`): the
signature covers the whole document (the content, the id, ``created_at``,
which chooses "latest", and the sha256 of each stored file). Before a stored
bundle's code runs, in whatever process, :meth:`BundleStore.trusted_files`
re-reads its record and checks the signature; a record another user or
process wrote (or edited) needs the caller's ``trust=True``. "Latest" is the
newest *signed* record of a name, so a record inserted by someone else cannot
take its place.
"""

from __future__ import annotations

import hashlib
import os
import threading
import weakref
from typing import Any, Dict, Iterable, List, Mapping, Optional

import pymongo
import pymongo.errors

from .. import signing
from ..atomic import write_bytes_atomic
from .bundle import ModelBundle
from .errors import BundleConfigError, BundleNotFoundError, UntrustedBundleError
from .flavors import flavor_from_dict

__all__ = ["BundleStore", "COLLECTION", "bundles_dir", "read_checked", "is_live"]

COLLECTION = "bundles"

#: bundles made by this process, with their functions: running them unpickles nothing
_LIVE: Dict[str, ModelBundle] = {}
#: the sha256 of each file this process stored, per bundle id
_LIVE_FILES: Dict[str, Dict[str, str]] = {}
#: bundles built from a stored record (their code runs only if the record is signed, or with trust=True)
_FROM_STORE: "weakref.WeakSet[ModelBundle]" = weakref.WeakSet()
_LOCK = threading.Lock()


def bundles_dir() -> str:
    """``$MODELZOO_HOME/_bundles`` (the zoo's home, see :func:`modelzoo.zoo.zoo_home`)."""
    from ..zoo.weights import zoo_home

    return os.path.join(zoo_home(), "_bundles")


class BundleStore:
    """The bundles collection and its files. Cheap to create; stateless."""

    def _collection(self) -> Any:
        from ..db import get_db

        coll = get_db()[COLLECTION]
        coll.create_index([("name", pymongo.ASCENDING), ("created_at", pymongo.DESCENDING)])
        return coll

    def path(self, bundle_id: str, filename: str) -> str:
        """Where a file of the bundle is (whether or not it exists)."""
        return os.path.join(bundles_dir(), bundle_id, filename)

    def save(self, bundle: ModelBundle, files: Mapping[str, bytes]) -> ModelBundle:
        """Stores the bundle's files, then its signed record. Returns the stored
        bundle (the earlier one when the same content was saved before).

        Raises:
            TrustKeyError: the signing key file is unsafe (the message says how to fix it).
        """
        for name, data in files.items():
            path = self.path(bundle.id, name)
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            write_bytes_atomic(path, data, file_mode=0o600)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        doc: Dict[str, Any] = {"_id": bundle.id, **bundle.record(), "files": sorted(files), "file_sha256": digests}
        doc["signature"] = signing.sign(_payload(doc))
        coll = self._collection()
        try:
            coll.insert_one(doc)
        except pymongo.errors.DuplicateKeyError:
            # Same content, same id: the first record stands (records are immutable),
            # unless it is not ours (someone else wrote it first): then ours replaces it.
            if _verified(coll.find_one({"_id": bundle.id})) is None:
                coll.replace_one({"_id": bundle.id}, doc)
        with _LOCK:
            _LIVE.setdefault(bundle.id, bundle)
            _LIVE_FILES.setdefault(bundle.id, digests)
        return _LIVE[bundle.id]

    def trusted_files(self, bundle: ModelBundle) -> Optional[Dict[str, str]]:
        """The sha256 of each stored file of ``bundle`` if its code may run without
        ``trust=True``, else None.

        A bundle this process made, or one the caller built itself (not read
        from the store), is trusted. One read from the store is trusted when
        its record, read again now, carries this user's valid signature.

        Raises:
            TrustKeyError: the signing key file is unsafe.
        """
        with _LOCK:
            if bundle.id in _LIVE:
                return dict(_LIVE_FILES.get(bundle.id, {}))
        if bundle not in _FROM_STORE:
            return {}
        return _verified(self._collection().find_one({"_id": bundle.id}))

    def save_clone(self, original: ModelBundle, clone: ModelBundle) -> ModelBundle:
        """Stores a clone: the original's files (code and schemas) under the clone's id."""
        digests = self.trusted_files(original)
        if digests is None:
            raise UntrustedBundleError(
                f"Bundle {original.name!r} ({original.id}) is not signed by this user's modelzoo key "
                f"({signing.key_path()}), so it is not cloned (a clone would be signed as yours). Create it again "
                "as its owner, or load it with trust=True and create a new bundle from it."
            )
        if not digests:  # made by this process before its files were recorded, or built by the caller
            doc = self._collection().find_one({"_id": original.id}, {"files": 1}) or {}
            digests = {name: "" for name in doc.get("files", [])}
        files = {name: read_checked(self.path(original.id, name), expected, original.name) for name, expected in digests.items()}
        return self.save(clone, files)

    def _from_doc(self, doc: Mapping[str, Any]) -> ModelBundle:
        with _LOCK:
            live = _LIVE.get(doc["_id"])
        if live is not None:
            return live
        if not isinstance(doc.get("name"), str) or not isinstance(doc.get("created_at"), str):
            raise BundleConfigError(f"Bundle record {doc.get('_id')!r} is malformed (no name or created_at); remove it")
        bundle = ModelBundle(
            name=doc["name"],
            flavor=flavor_from_dict(doc["flavor"]),
            app_config=doc.get("app_config"),
            requirements=tuple(doc.get("requirements") or ()),
            metadata=doc.get("metadata") or {},
            created_at=doc["created_at"],
            input=doc.get("input", "bytes"),
            input_fields=doc.get("input_fields") or {},
            remote=doc.get("remote") or {},
            parent_id=doc.get("parent_id"),
            artifact_sha256=doc.get("artifact_sha256", ""),
            schemas_json=doc.get("schemas") or {},
            id=doc["_id"],
        )
        if bundle.content_id() != bundle.id:
            raise BundleConfigError(
                f"Bundle record {bundle.id!r} does not match its content (it was edited in the database); "
                "bundles are immutable: create a new one instead"
            )
        _FROM_STORE.add(bundle)
        return bundle

    def get(self, bundle_id: str) -> ModelBundle:
        """The bundle with this id.

        Raises:
            BundleNotFoundError: none (close ids are suggested).
        """
        doc = self._collection().find_one({"_id": bundle_id})
        if doc is None:
            raise BundleNotFoundError(bundle_id, [d["_id"] for d in self._collection().find({}, {"_id": 1})])
        return self._from_doc(doc)

    def latest(self, name: str) -> ModelBundle:
        """The newest bundle named ``name``.

        Raises:
            BundleNotFoundError: no bundle has that name (close names are suggested).
        """
        docs = self._collection().find({"name": name}).sort("created_at", pymongo.DESCENDING)
        doc = _newest_signed(docs)
        if doc is None:
            raise BundleNotFoundError(name, self._collection().distinct("name"))
        return self._from_doc(doc)

    def list(self, name: Optional[str] = None, order_by: str = "newest") -> List[ModelBundle]:
        """Every bundle (or every version of ``name``), newest first by default."""
        if order_by not in ("newest", "oldest"):
            raise BundleConfigError(f"order_by must be 'newest' or 'oldest', got {order_by!r}")
        query = {} if name is None else {"name": name}
        direction = pymongo.DESCENDING if order_by == "newest" else pymongo.ASCENDING
        return [self._from_doc(d) for d in self._collection().find(query).sort("created_at", direction)]


def read_checked(path: str, expected: str, bundle: str) -> bytes:
    """The bytes of a stored file, checked against the sha256 its signed record gives.

    Raises:
        UntrustedBundleError: the file changed since it was stored.
        BundleConfigError: it is missing.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BundleConfigError(f"Bundle {bundle!r}: its file {path} is missing; create the bundle again") from None
    actual = hashlib.sha256(data).hexdigest()
    if expected and actual != expected:
        raise UntrustedBundleError(
            f"Bundle {bundle!r}: {path} has sha256 {actual}, but its signed record says {expected}: the file was "
            "changed or replaced after the bundle was stored, so it is not used. Create the bundle again."
        )
    return data


def _payload(doc: Mapping[str, Any]) -> Dict[str, Any]:
    """What a record's signature covers: all of it but the signature."""
    return {k: v for k, v in doc.items() if k != "signature"}


def _verified(doc: Optional[Mapping[str, Any]]) -> Optional[Dict[str, str]]:
    """The record's file digests if it carries this user's valid signature, else None."""
    if doc is None or not signing.verify(_payload(doc), doc.get("signature")):
        return None
    digests = doc.get("file_sha256")
    return dict(digests) if isinstance(digests, Mapping) else {}


def _newest_signed(docs: Iterable[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    """The first signed record of ``docs`` (newest first), else the first one."""
    first = None
    for doc in docs:
        if first is None:
            first = doc
        if _verified(doc) is not None:
            return doc
    return first


def is_live(bundle_id: str) -> bool:
    """Whether this process created the bundle (so it holds its code)."""
    with _LOCK:
        return bundle_id in _LIVE
