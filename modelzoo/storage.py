"""Writing fields of stored samples and frames: one bulk write per call.

Both :class:`~modelzoo.Dataset` (``set_values``) and the engine's sinks
write through :func:`bulk_set`, by collection name, so a sink needs nothing
but names to be pickled to another process.

Frame-level fields live apart from their sample, in the dataset's frames
collection (:func:`frames_collection_name`): one document per labelled
frame, ``{"_sample_id": ..., "frame_number": n, <fields>}``, with a unique
index on ``(_sample_id, frame_number)``. A long video with boxes on every
frame would not fit MongoDB's 16 MB document limit inside its sample.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Set, Tuple

from pymongo import ASCENDING, UpdateOne

from . import db
from .errors import SampleNotFoundError
from .fields import to_mongo_value

__all__ = [
    "bulk_set",
    "collection",
    "frames_collection_name",
    "ensure_frames_index",
    "split_frame_path",
    "replace_frame",
    "FRAME_ID",
    "FRAME_NUMBER",
    "DATASET_RECORDS",
]

#: the field of a frame document holding its sample's id
FRAME_ID = "_sample_id"
#: the field of a frame document holding its (1-based) frame number
FRAME_NUMBER = "frame_number"

#: Collections where features keep records about a dataset, one document per
#: record with the dataset's name in its ``"dataset"`` field; deleting a
#: dataset deletes its records there. The core holds the names only (the
#: feature that writes them imports this): ``"evaluations"``,
#: :mod:`modelzoo.evaluation`'s stored results.
DATASET_RECORDS = {"evaluations": "evaluations"}

_INDEXED: Set[Tuple[str, str]] = set()


def collection(name: str) -> Any:
    """The pymongo collection ``name`` of the modelzoo database (connecting on first use)."""
    return db.get_db()[name]


def frames_collection_name(samples_collection: str) -> str:
    """The frames collection of the dataset whose samples are in ``samples_collection``."""
    return "frames." + samples_collection


def ensure_frames_index(frames_collection: str) -> None:
    """Creates the unique ``(_sample_id, frame_number)`` index (once per process and database)."""
    key = (db.get_db().name, frames_collection)
    if key in _INDEXED:
        return
    collection(frames_collection).create_index(
        [(FRAME_ID, ASCENDING), (FRAME_NUMBER, ASCENDING)], unique=True, name="sample_frame"
    )
    _INDEXED.add(key)


def split_frame_path(path: str) -> Tuple[int, str]:
    """``"frames.<n>.<field>"`` -> ``(n, "<field>")``; ``(0, path)`` for any other path."""
    if path.startswith("frames."):
        head, _, rest = path[7:].partition(".")
        if head.isdigit() and rest:
            return int(head), rest
    return 0, path


def _set_unset(fields: Mapping[str, Any]) -> Dict[str, Any]:
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
    return update


def bulk_set(collection_name: str, updates: Mapping[Any, Mapping[str, Any]], dataset_name: str = "") -> int:
    """Sets fields on many samples and frames with one unordered bulk write each.

    Args:
        collection_name: the samples' collection.
        updates: ``{sample_oid: {field_path: value}}`` for sample fields and
            ``{(sample_oid, frame_number): {field: value}}`` for frame fields;
            a sample path ``frames.<n>.<field>`` is that frame's field too. A
            value of ``None`` removes the field. Values may be Labels, arrays
            or plain data.
        dataset_name: for the error message.

    Returns:
        the number of samples and frames written.

    Raises:
        SampleNotFoundError: some sample ids are not in the collection (the
            others were written).
    """
    ops: List[UpdateOne] = []
    op_ids: List[Any] = []
    frames: Dict[Tuple[Any, int], Dict[str, Any]] = {}
    for key, fields in updates.items():
        if isinstance(key, tuple):
            frames.setdefault((key[0], int(key[1])), {}).update(fields)
            continue
        own: Dict[str, Any] = {}
        for path, value in fields.items():
            number, rest = split_frame_path(path)
            if number:
                frames.setdefault((key, number), {})[rest] = value
            else:
                own[path] = value
        update = _set_unset(own)
        if update:
            ops.append(UpdateOne({"_id": key}, update))
            op_ids.append(key)
    written = 0
    coll = collection(collection_name)
    if ops:
        result = coll.bulk_write(ops, ordered=False)
        written += result.matched_count
        if result.matched_count != len(ops):
            _raise_missing(coll, op_ids, dataset_name or collection_name)
    if frames:
        sample_ids = list({sid for sid, _ in frames})
        found = coll.count_documents({"_id": {"$in": sample_ids}})
        if found != len(sample_ids):
            _raise_missing(coll, sample_ids, dataset_name or collection_name)
        written += _write_frames(frames_collection_name(collection_name), frames)
    return written


def _write_frames(name: str, frames: Mapping[Tuple[Any, int], Mapping[str, Any]]) -> int:
    ensure_frames_index(name)
    ops = []
    for (sample_id, number), fields in frames.items():
        update = _set_unset(fields)
        if update:  # a frame that only loses fields is not created for it
            ops.append(UpdateOne({FRAME_ID: sample_id, FRAME_NUMBER: number}, update, upsert="$set" in update))
    if not ops:
        return 0
    result = collection(name).bulk_write(ops, ordered=False)
    return result.matched_count + result.upserted_count


def replace_frame(
    collection_name: str, sample_id: Any, frame_number: int, fields: Mapping[str, Any], dataset_name: str = ""
) -> None:
    """Replaces the fields of one frame of a stored sample (creating the frame)."""
    coll = collection(collection_name)
    if coll.count_documents({"_id": sample_id}, limit=1) == 0:
        raise SampleNotFoundError(str(sample_id), dataset_name or collection_name)
    name = frames_collection_name(collection_name)
    ensure_frames_index(name)
    doc = {k: to_mongo_value(v) for k, v in fields.items() if v is not None}
    doc.update({FRAME_ID: sample_id, FRAME_NUMBER: int(frame_number)})
    collection(name).replace_one({FRAME_ID: sample_id, FRAME_NUMBER: int(frame_number)}, doc, upsert=True)


def _raise_missing(coll: Any, ids: List[Any], where: str) -> None:
    found = {d["_id"] for d in coll.find({"_id": {"$in": ids}}, {"_id": 1})}
    missing = [str(o) for o in ids if o not in found]
    raise SampleNotFoundError(missing[0] if len(missing) == 1 else missing, where)
