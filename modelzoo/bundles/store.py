"""Where bundles live: one document per bundle in the ``bundles`` collection
of the modelzoo database (the one that holds the datasets), and its files
under ``$MODELZOO_HOME/_bundles/<id>/``. Both outlive the process, so every
process lists the same bundles.

Records are never updated: a bundle id is derived from its content, so
saving the same content twice keeps the first record.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Mapping, Optional

import pymongo
import pymongo.errors

from ..atomic import write_bytes_atomic
from .bundle import ModelBundle
from .errors import BundleConfigError, BundleNotFoundError
from .flavors import flavor_from_dict

__all__ = ["BundleStore", "COLLECTION", "bundles_dir"]

COLLECTION = "bundles"

#: bundles made by this process, with their functions: running them unpickles nothing
_LIVE: Dict[str, ModelBundle] = {}
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
        """Stores the bundle's files, then its record. Returns the stored bundle
        (the earlier one when the same content was saved before)."""
        for name, data in files.items():
            path = self.path(bundle.id, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_bytes_atomic(path, data)
        doc = {"_id": bundle.id, **bundle.record(), "files": sorted(files)}
        try:
            self._collection().insert_one(doc)
        except pymongo.errors.DuplicateKeyError:
            pass  # same content, same id: the first record stands (records are immutable)
        with _LOCK:
            _LIVE.setdefault(bundle.id, bundle)
        return _LIVE[bundle.id]

    def save_clone(self, original: ModelBundle, clone: ModelBundle) -> ModelBundle:
        """Stores a clone: the original's files (code and schemas) under the clone's id."""
        doc = self._collection().find_one({"_id": original.id}, {"files": 1}) or {}
        files = {}
        for name in doc.get("files", []):
            with open(self.path(original.id, name), "rb") as f:
                files[name] = f.read()
        return self.save(clone, files)

    def _from_doc(self, doc: Mapping[str, Any]) -> ModelBundle:
        with _LOCK:
            live = _LIVE.get(doc["_id"])
        if live is not None:
            return live
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
        doc = self._collection().find_one({"name": name}, sort=[("created_at", pymongo.DESCENDING)])
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


def is_live(bundle_id: str) -> bool:
    """Whether this process created the bundle (so it holds its code)."""
    with _LOCK:
        return bundle_id in _LIVE
