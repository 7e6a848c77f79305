"""Reading the labels an evaluation compares, as stored documents, and
checking that the fields hold the label types it needs."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Sequence, Tuple

from ..errors import EvaluationError
from ..media import read_image_metadata
from ..storage import collection as _collection_named

__all__ = ["check_fields", "label_types_in", "iter_docs", "image_size", "samples_collection"]


def samples_collection(samples: Any) -> Any:
    """The pymongo collection holding a dataset's or view's samples."""
    return _collection_named(samples.collection_name)


def label_types_in(samples: Any, field: str) -> List[str]:
    """The label types (``_cls``) stored in ``field`` on these samples, sorted."""
    found = samples_collection(samples).distinct(field + "._cls", samples.query)
    return sorted(str(t) for t in found if t is not None)


def _label_fields(samples: Any) -> Dict[str, str]:
    """``{field: label type}`` of the first samples' top-level label fields."""
    out: Dict[str, str] = {}
    for doc in samples_collection(samples).find(samples.query).limit(20):
        for key, value in doc.items():
            if isinstance(value, dict) and "_cls" in value:
                out.setdefault(key, value["_cls"])
    return out


def check_fields(samples: Any, fields: Dict[str, str], allowed: Sequence[str], what: str) -> str:
    """Checks that each field holds one of the ``allowed`` label types, and all the same one.

    Args:
        fields: ``{role: field}``, e.g. ``{"pred_field": "predictions", "gt_field": "ground_truth"}``.
        allowed: the label type names the evaluation takes.
        what: the evaluation, for messages (``"evaluate_detections"``).

    Returns:
        the label type found.

    Raises:
        EvaluationError: a field is missing (the label fields that exist are
            listed), holds other label types (named), or the fields disagree.
    """
    found: Dict[str, List[str]] = {}
    for role, field in fields.items():
        types = label_types_in(samples, field)
        if not types:
            existing = _label_fields(samples)
            listed = ", ".join(f"{k} ({v})" for k, v in sorted(existing.items())) or "none"
            from ..errors import did_you_mean

            raise EvaluationError(
                f"{what}: {role} {field!r} holds no labels in {samples.name!r}."
                + did_you_mean(field, existing) + f" Fields with labels: {listed}."
            )
        found[role] = types
    bad = {role: types for role, types in found.items() if not set(types) <= set(allowed)}
    if bad:
        described = "; ".join(f"{role} {fields[role]!r} holds {', '.join(t)}" for role, t in found.items())
        raise EvaluationError(
            f"{what} compares {' or '.join(allowed)} labels, but {described}. "
            "Pass fields that hold those labels (predictions and ground truth of the same type)."
        )
    kinds = {t for types in found.values() for t in types}
    if len(kinds) > 1:
        described = "; ".join(f"{role} {fields[role]!r} holds {', '.join(t)}" for role, t in found.items())
        raise EvaluationError(f"{what}: predictions and ground truth are of different types: {described}.")
    return kinds.pop()


def iter_docs(samples: Any, fields: Sequence[str]) -> Iterator[Dict[str, Any]]:
    """The stored documents of these samples (``_id``, ``filepath``,
    ``metadata`` and ``fields`` only), in sample order."""
    projection = {f: 1 for f in ("filepath", "metadata", *fields)}
    yield from samples_collection(samples).find(samples.query, projection).sort("_id", 1)


def image_size(doc: Dict[str, Any]) -> Tuple[int, int]:
    """``(width, height)`` of a stored sample: its metadata, else its file's header."""
    meta = doc.get("metadata") or {}
    if meta.get("width") and meta.get("height"):
        return int(meta["width"]), int(meta["height"])
    info = read_image_metadata(doc["filepath"])
    return info.width, info.height
