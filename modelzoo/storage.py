"""Writing fields of stored samples: one bulk write per call.

Both :class:`~modelzoo.Dataset` (``set_values``) and the engine's sinks
write through :func:`bulk_set`, by collection name, so a sink needs nothing
but names to be pickled to another process.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from pymongo import UpdateOne

from . import db
from .errors import SampleNotFoundError
from .fields import to_mongo_value

__all__ = ["bulk_set", "collection"]


def collection(name: str) -> Any:
    """The pymongo collection ``name`` of the modelzoo database (connecting on first use)."""
    return db.get_db()[name]


def bulk_set(collection_name: str, updates: Mapping[Any, Mapping[str, Any]], dataset_name: str = "") -> int:
    """Sets fields on many samples with one unordered bulk write.

    Args:
        collection_name: the samples' collection.
        updates: ``{sample_oid: {field_path: value}}``; a value of ``None``
            removes the field. Values may be Labels, arrays or plain data.
        dataset_name: for the error message.

    Returns:
        the number of samples matched.

    Raises:
        SampleNotFoundError: some ids are not in the collection (the others
            were written).
    """
    ops = []
    for oid, fields in updates.items():
        sets: Dict[str, Any] = {}
        unsets: Dict[str, Any] = {}
        for path, value in fields.items():
            if value is None:
                unsets[path] = ""
            else:
                sets[path] = to_mongo_value(value)
        update: Dict[str, Any] = {}
        if sets:
            update["$set"] = sets
        if unsets:
            update["$unset"] = unsets
        if update:
            ops.append(UpdateOne({"_id": oid}, update))
    if not ops:
        return 0
    coll = collection(collection_name)
    result = coll.bulk_write(ops, ordered=False)
    if result.matched_count != len(ops):
        found = {d["_id"] for d in coll.find({"_id": {"$in": list(updates)}}, {"_id": 1})}
        missing = [str(o) for o in updates if o not in found]
        raise SampleNotFoundError(missing[0] if len(missing) == 1 else missing, dataset_name or collection_name)
    return result.matched_count
