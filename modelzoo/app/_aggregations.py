"""The two reads the viewer needs that the public API does not offer.

* :func:`field_types`: the fields of (a sample of) the samples and their
  label classes, in one aggregation (``$objectToArray``), for the sidebar;
* :func:`page` / :func:`neighbor` / :func:`one`: keyset pages, ``_id``
  ranges or ``(sort value, _id)`` ranges, so page 1,000 costs what page 1
  costs. ``view.sort_by(f).limit(n)`` would read every id of the view for
  each page, and ``skip`` walks every sample before the page.

Each applies the view's own selection as the library does when it reads a
view (``view.query``, then ``view.view_stages()``: its label filters), so a
page holds what ``iter(view)`` would yield, in the viewer's order. Counts,
class counts and bounds use the public ``count``, ``count_values`` and
``bounds``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .. import db

__all__ = ["field_types", "page", "neighbor", "one", "LIST_FIELDS"]

#: the list inside each list label type, and the single label types (no list)
LIST_FIELDS: Dict[str, Optional[str]] = {
    "Detections": "detections", "Classifications": "classifications", "Keypoints": "keypoints",
    "Detection": None, "Classification": None, "Keypoint": None,
}
_OWN_FIELDS = ("_id", "filepath", "media_type", "metadata", "created_at")


def _collection(samples: Any) -> Any:
    return db.get_db()[samples.collection_name]


def _label_stages(samples: Any) -> List[Dict[str, Any]]:
    """The view's label filters (its own order is the viewer's to set: ``$sort`` left out)."""
    return [stage for stage in samples.view_stages() if "$sort" not in stage]


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


def page(
    samples: Any, after: Optional[Sequence[Any]] = None, limit: int = 50, sort_field: Optional[str] = None,
    reverse: bool = False, projection: Optional[Mapping[str, Any]] = None,
) -> Tuple[List[Dict[str, Any]], Optional[List[Any]]]:
    """One page of ``samples``' documents in order (``_id``, or ``sort_field``
    then ``_id``), after the cursor ``after`` (what the previous page
    returned): a range on ``_id`` (or on the sort key), never ``skip``. The
    range and the order come first (the ``_id`` index serves them), the
    view's label filters after, then the limit: MongoDB stops at the page's end.

    Returns:
        ``(documents, cursor of the next page or None at the end)``.
    """
    direction = -1 if reverse else 1
    cmp = "$lt" if reverse else "$gt"
    if sort_field is None:
        query = dict(samples.query)
        if after:
            query = {"$and": [samples.query, {"_id": {cmp: after[-1]}}]} if samples.query else {"_id": {cmp: after[-1]}}
        pipeline: List[Dict[str, Any]] = [{"$match": query}, {"$sort": {"_id": direction}}]
    else:
        pipeline = [{"$match": samples.query}, {"$addFields": {"_mz_sort": {"$ifNull": ["$" + sort_field, None]}}}]
        if after:
            value, last_id = after
            pipeline.append({"$match": {"$expr": {"$or": [
                {cmp: ["$_mz_sort", value]},
                {"$and": [{"$eq": ["$_mz_sort", value]}, {cmp: ["$_id", last_id]}]},
            ]}}})
        pipeline.append({"$sort": {"_mz_sort": direction, "_id": direction}})
    pipeline += _label_stages(samples) + [{"$limit": limit + 1}]
    if projection:
        pipeline.append({"$project": {**projection, "_mz_sort": 1} if sort_field else dict(projection)})
    docs = list(_collection(samples).aggregate(pipeline, allowDiskUse=True))
    more = len(docs) > limit
    docs = docs[:limit]
    cursor: Optional[List[Any]] = None
    if more and docs:
        cursor = [docs[-1]["_mz_sort"], docs[-1]["_id"]] if sort_field else [docs[-1]["_id"]]
    for d in docs:
        d.pop("_mz_sort", None)
    return docs, cursor


def one(samples: Any, sample_id: Any, projection: Optional[Mapping[str, Any]] = None) -> Optional[Dict[str, Any]]:
    """The document of ``sample_id`` as ``samples`` has it (its labels filtered),
    or None when it is not one of them."""
    query = {"$and": [samples.query, {"_id": sample_id}]} if samples.query else {"_id": sample_id}
    pipeline: List[Dict[str, Any]] = [{"$match": query}] + _label_stages(samples) + [{"$limit": 1}]
    if projection:
        pipeline.append({"$project": dict(projection)})
    for doc in _collection(samples).aggregate(pipeline):
        return doc
    return None


def neighbor(samples: Any, sample_id: Any, step: int, sort_field: Optional[str] = None, reverse: bool = False) -> Any:
    """The id of the sample after (``step=1``) or before (``step=-1``)
    ``sample_id`` in ``samples``' order, or None at either end (or when
    the sample is not in ``samples``)."""
    me = one(samples, sample_id, {sort_field or "_id": 1})
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
