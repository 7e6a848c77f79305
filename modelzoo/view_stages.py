"""What a view adds to its filter: an order (``sort_by``) and label filters
(``filter_labels``), as MongoDB aggregation stages applied when the view is read.

A :class:`ViewState` is plain data (lists of stage dicts), so views stay
cheap to copy and to pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List

from .errors import DatasetError
from .expressions import ViewExpression, to_mongo_expr

__all__ = ["ViewState", "label_filter", "sort_stages"]

_LIST_LABELS = {
    "Detections": "detections",
    "Classifications": "classifications",
    "Keypoints": "keypoints",
    "Polylines": "polylines",
}
_SORT_KEY = "_modelzoo_sort_key"


@dataclass(frozen=True)
class ViewState:
    """A view's stages beyond its query.

    Attributes:
        sort: stages that order the samples (``$sort`` last).
        labels: ``$set`` stages that filter sample-level labels.
        frame_labels: ``$set`` stages that filter frame-level labels (on frame documents).
        frame_matches: frame queries: a sample is in the view only if one of its
            frames matches each of them (``filter_labels(..., only_matches=True)``
            on a frame field).
    """

    sort: List[Dict[str, Any]] = field(default_factory=list)
    labels: List[Dict[str, Any]] = field(default_factory=list)
    frame_labels: List[Dict[str, Any]] = field(default_factory=list)
    frame_matches: List[Dict[str, Any]] = field(default_factory=list)

    def with_(self, **changes: Any) -> "ViewState":
        return replace(self, **changes)

    def stages(self, frames: bool = False) -> List[Dict[str, Any]]:
        """The stages to run after the view's ``$match`` (sample documents), or
        on its frame documents with ``frames=True``."""
        return list(self.frame_labels) if frames else list(self.labels) + list(self.sort)


def _condition(filter: Any) -> Any:
    if isinstance(filter, ViewExpression):
        return filter.to_mongo("$$this")
    if isinstance(filter, dict):
        return filter
    raise DatasetError(
        f"filter_labels: expected a ViewField expression (from modelzoo import ViewField as F; "
        f"F('confidence') > 0.5) or a MongoDB aggregation expression over '$$this', got {filter!r}"
    )


def label_filter(path: str, filter: Any) -> Dict[str, Any]:
    """``(set_stage, match_expr)`` filtering the label at ``path`` of a document.

    A list label (Detections, Classifications, Keypoints, Polylines) keeps the
    elements for which ``filter`` is true; a single label (Classification,
    Detection, ...) is removed where it is false. ``match_expr`` is true where
    at least one label is left (for ``only_matches``).
    """
    cond = _condition(filter)
    ref = "$" + path
    branches = [
        {
            "case": {"$eq": [ref + "._cls", cls]},
            "then": {"$filter": {"input": {"$ifNull": [f"{ref}.{attr}", []]}, "cond": cond}},
        }
        for cls, attr in _LIST_LABELS.items()
    ]
    single = {
        "$cond": [{"$eq": [{"$type": ref}, "object"]}, {"$filter": {"input": [ref], "cond": cond}}, []]
    }
    kept = {"$switch": {"branches": branches, "default": single}}
    rebuilt = {
        "$switch": {
            "branches": [
                {"case": b["case"], "then": {"$mergeObjects": [ref, {attr: b["then"]}]}}
                for b, attr in zip(branches, _LIST_LABELS.values())
            ],
            "default": {"$arrayElemAt": [single, 0]},
        }
    }
    return {"set": {"$set": {path: rebuilt}}, "match": {"$gt": [{"$size": kept}, 0]}}


def sort_stages(key: Any, reverse: bool = False) -> List[Dict[str, Any]]:
    """Stages that order samples by a field path or an expression (ties by id)."""
    direction = -1 if reverse else 1
    if isinstance(key, str):
        if not key or key.startswith("$"):
            raise DatasetError(f"sort_by({key!r}): expected a field path or a ViewField expression")
        path = ".".join("_id" if p == "id" else p for p in key.split("."))
        if path == "_id":
            return [{"$sort": {"_id": direction}}]
        return [{"$sort": {path: direction, "_id": 1}}]
    if isinstance(key, (ViewExpression, dict)):
        return [
            {"$addFields": {_SORT_KEY: to_mongo_expr(key, "$")}},
            {"$sort": {_SORT_KEY: direction, "_id": 1}},
            {"$unset": _SORT_KEY},
        ]
    raise DatasetError(f"sort_by({key!r}): expected a field path or a ViewField expression")
