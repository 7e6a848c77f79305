"""The aggregations the viewer needs, shaped like the public API that #21
adds to datasets and views (``count_values``, ``bounds``, ``distinct``,
``sort_by``, ``filter_labels``): each is one MongoDB aggregation over a
view's own query (:attr:`SampleCollection.query`) in its own collection
(:attr:`SampleCollection.collection_name`).

When those methods are on :class:`~modelzoo.dataset.SampleCollection`, each
function here becomes a one-line call of the method of the same name.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import db

__all__ = ["count_values", "bounds", "field_types", "page", "neighbor", "LIST_FIELDS"]

#: the list inside each list label type, and the single label types (no list)
LIST_FIELDS: Dict[str, Optional[str]] = {
    "Detections": "detections", "Classifications": "classifications", "Keypoints": "keypoints",
    "Detection": None, "Classification": None, "Keypoint": None,
}
_OWN_FIELDS = ("_id", "filepath", "media_type", "metadata", "created_at")


def _collection(samples: Any) -> Any:
    return db.get_db()[samples.collection_name]


def _unwound(path: str) -> Tuple[List[Dict[str, Any]], str]:
    """``$unwind`` stages for every list of ``path`` whose elements are labels
    (``ground_truth.detections.label`` unwinds ``ground_truth.detections``)."""
    parts = path.split(".")
    stages: List[Dict[str, Any]] = []
    for i, part in enumerate(parts[:-1]):
        if part in LIST_FIELDS.values():
            stages.append({"$unwind": "$" + ".".join(parts[: i + 1])})
    return stages, path


def count_values(samples: Any, path: str, element_match: Optional[Mapping[str, Any]] = None) -> Dict[Any, int]:
    """``{value: count}`` of ``path`` over ``samples``, list labels unwound
    (``"predictions.detections.label"`` counts objects), as
    ``samples.count_values(path)`` does; ``element_match`` filters the
    unwound elements first (a query on the list's element, as in
    ``filter_labels``)."""
    stages, _ = _unwound(path)
    prefix = path.rsplit(".", 1)[0]
    keep = prefix if element_match and "." in path else path  # the whole element when it is filtered
    pipeline: List[Dict[str, Any]] = [{"$match": samples.query}, {"$project": {keep: 1}}] + stages
    if element_match:
        pipeline.append({"$match": {f"{prefix}.{k}": v for k, v in element_match.items()}})
    pipeline.append({"$group": {"_id": "$" + path, "count": {"$sum": 1}}})
    return {d["_id"]: int(d["count"]) for d in _collection(samples).aggregate(pipeline)}


def bounds(samples: Any, path: str) -> Tuple[Any, Any]:
    """``(min, max)`` of ``path`` over ``samples`` (lists unwound), or ``(None, None)``."""
    stages, _ = _unwound(path)
    pipeline = [{"$match": samples.query}, {"$project": {path: 1}}] + stages + [
        {"$group": {"_id": None, "lo": {"$min": "$" + path}, "hi": {"$max": "$" + path}}}
    ]
    for d in _collection(samples).aggregate(pipeline):
        return d["lo"], d["hi"]
    return None, None


def field_types(samples: Any, probe: int = 1000, frames: bool = False) -> Dict[str, str]:
    """``{field: type}`` of the top-level fields of (up to ``probe`` of) the
    samples, or of their frames: the label class (``"Detections"``), else
    the BSON type name (``"double"``, ``"string"``, ...)."""
    coll = _collection(samples)
    if frames:
        coll = db.get_db()[samples.frames_collection_name]
    pipeline: List[Dict[str, Any]] = [] if frames else [{"$match": samples.query}]
    pipeline += [
        {"$limit": probe},
        {"$project": {"kv": {"$objectToArray": "$$ROOT"}}},
        {"$unwind": "$kv"},
        {"$group": {
            "_id": "$kv.k",
            "cls": {"$max": {"$cond": [{"$eq": [{"$type": "$kv.v"}, "object"]}, "$kv.v._cls", None]}},
            "type": {"$max": {"$type": "$kv.v"}},
        }},
    ]
    own = ("_id", "_sample_id", "frame_number") if frames else _OWN_FIELDS
    out = {}
    for d in coll.aggregate(pipeline):
        if d["_id"] in own:
            continue
        out[d["_id"]] = d["cls"] or d["type"]
    return dict(sorted(out.items()))


def _sort_key(field: str) -> Dict[str, Any]:
    return {"$ifNull": ["$" + field, None]}


def page(
    samples: Any, after: Optional[Sequence[Any]] = None, limit: int = 50, sort_field: Optional[str] = None,
    reverse: bool = False, projection: Optional[Mapping[str, Any]] = None,
) -> Tuple[List[Dict[str, Any]], Optional[List[Any]]]:
    """One page of ``samples``' documents in order (``_id``, or ``sort_field``
    then ``_id``), after the cursor ``after`` (what the previous page
    returned): a range query on ``_id`` (or on the sort key), never ``skip``,
    so page 1,000 costs what page 1 costs.

    Returns:
        ``(documents, cursor of the next page or None at the end)``.
    """
    coll = _collection(samples)
    direction = -1 if reverse else 1
    if sort_field is None:
        query = dict(samples.query)
        if after:
            query = {"$and": [samples.query, {"_id": {"$lt" if reverse else "$gt": after[-1]}}]}
        docs = list(coll.find(query, projection).sort("_id", direction).limit(limit + 1))
        more = len(docs) > limit
        docs = docs[:limit]
        return docs, ([docs[-1]["_id"]] if more and docs else None)
    pipeline: List[Dict[str, Any]] = [{"$match": samples.query}, {"$addFields": {"_mz_sort": _sort_key(sort_field)}}]
    if after:
        value, last_id = after
        cmp = "$lt" if reverse else "$gt"
        pipeline.append({"$match": {"$expr": {"$or": [
            {cmp: ["$_mz_sort", value]},
            {"$and": [{"$eq": ["$_mz_sort", value]}, {cmp: ["$_id", last_id]}]},
        ]}}})
    pipeline += [{"$sort": {"_mz_sort": direction, "_id": direction}}, {"$limit": limit + 1}]
    if projection:
        pipeline.append({"$project": {**projection, "_mz_sort": 1}})
    docs = list(coll.aggregate(pipeline, allowDiskUse=True))
    more = len(docs) > limit
    docs = docs[:limit]
    cursor = [docs[-1]["_mz_sort"], docs[-1]["_id"]] if more and docs else None
    for d in docs:
        d.pop("_mz_sort", None)
    return docs, cursor


def neighbor(samples: Any, sample_id: Any, step: int, sort_field: Optional[str] = None, reverse: bool = False) -> Any:
    """The id of the sample after (``step=1``) or before (``step=-1``)
    ``sample_id`` in ``samples``' order, or None at either end (or when
    the sample is not in ``samples``)."""
    coll = _collection(samples)
    me = coll.find_one({"$and": [samples.query, {"_id": sample_id}]}, {sort_field or "_id": 1})
    if me is None:
        return None
    backwards = reverse if step > 0 else not reverse
    if sort_field is None:
        cursor: List[Any] = [sample_id]
    else:
        value: Any = me
        for part in sort_field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        cursor = [value, sample_id]
    docs, _ = page(samples, cursor, 1, sort_field, backwards, {"_id": 1})
    return docs[0]["_id"] if docs else None
