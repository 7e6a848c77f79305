"""Where model outputs go, and how values convert to and from MongoDB.

:func:`label_updates` is the one place that maps what ``Model.predict``
returned to field paths (the contract in the model interface docs); both
``Sample.add_labels`` and the ``apply_model`` writer use it.
"""

from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Mapping, Union

import numpy as np
from bson.binary import Binary

from .encoding import ARRAY_SUBTYPE, decode_array, encode_array
from .errors import LabelError
from .labels import LABEL_TYPES, Label, label_from_dict

__all__ = [
    "label_updates",
    "label_key_fn",
    "to_mongo_value",
    "from_mongo_value",
    "check_field_name",
    "check_output_field",
    "check_label_field",
    "SAMPLE_FIELDS",
    "FRAME_FIELDS",
]

LabelField = Union[str, Mapping[str, str], None]

_RESERVED = {"_id", "id", "_cls"}

#: a sample's own fields: what the dataset keeps for every sample. Model outputs
#: (label_field, embeddings_field, error_field, dict targets, prefixes) can never name them.
SAMPLE_FIELDS = ("_id", "id", "_cls", "filepath", "media_type", "metadata", "tags", "created_at", "ingest_error", "frames")
#: a frame document's own fields (``frames.<n>.<field>`` cannot name them)
FRAME_FIELDS = ("_id", "id", "_cls", "_sample_id", "frame_number")


def check_field_name(name: str) -> str:
    """Rejects field paths MongoDB cannot store or that modelzoo owns."""
    if not isinstance(name, str) or not name:
        raise LabelError(f"Field name must be a non-empty string, got {name!r}")
    if name in _RESERVED or name.startswith("$") or any(p == "" or p.startswith("$") for p in name.split(".")):
        raise LabelError(
            f"Invalid field name {name!r}: names cannot be 'id'/'_id', start with '$' or hold empty path parts"
        )
    parts = name.split(".")
    if parts[0] == "frames" and (len(parts) < 3 or not parts[1].isdigit() or parts[1] == "0"):
        raise LabelError(
            f"Invalid field name {name!r}: 'frames' holds frame-level fields, written as "
            "'frames.<frame number>.<field>' (frame numbers start at 1); name a sample field otherwise"
        )
    return name


def check_output_field(name: Any, what: str = "label_field") -> str:
    """Rejects a field that a model's output would be written to when it names
    a sample's own field (:data:`SAMPLE_FIELDS`, or a path inside one, such as
    ``metadata.width``) or a frame's (``frames.<n>.frame_number``): writing
    there would overwrite the sample's file path, id or metadata.

    Raises:
        LabelError: naming the field, the role and what to use instead.
    """
    check_field_name(name)
    parts = name.split(".")
    own = parts[0] in SAMPLE_FIELDS and not (parts[0] == "frames" and len(parts) > 2 and parts[2] not in FRAME_FIELDS)
    if own:
        field = parts[2] if parts[0] == "frames" and len(parts) > 2 else parts[0]
        raise LabelError(
            f"{what}={name!r} names the sample's own field {field!r}, which holds what the dataset keeps for each "
            f"sample ({', '.join(f for f in SAMPLE_FIELDS if f != '_cls')}, and a frame's "
            f"{', '.join(f for f in FRAME_FIELDS if f != '_cls')}); writing model outputs there would overwrite it. "
            f"Choose another name, e.g. {what}={'predictions' if what != 'error_field' else 'errors'!r}."
        )
    return name


def check_label_field(label_field: Any) -> None:
    """Checks a ``label_field`` argument before anything runs: a field or prefix
    (a string), or a ``{key: field}`` mapping whose fields are checked.

    Raises:
        LabelError: a reserved or invalid field, or a mapping of non-strings.
    """
    if label_field is None:
        return
    if isinstance(label_field, Mapping):
        for key, field in label_field.items():
            if not isinstance(field, str):
                raise LabelError(f"label_field[{key!r}] must be a field name (a string), got {field!r}")
            check_output_field(field, f"label_field[{key!r}]")
        return
    check_output_field(label_field, "label_field")


def label_key_fn(label_field: LabelField) -> Callable[[str], str]:
    """How a key of a dict of labels becomes a field name."""
    if isinstance(label_field, Mapping):
        mapping = dict(label_field)
        return lambda k: mapping.get(k, k)
    if label_field is not None:
        prefix = str(label_field)
        return lambda k: prefix + "_" + k
    return lambda k: k


def _is_frame_dict(d: Mapping) -> bool:
    return bool(d) and all(isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in d)


def label_updates(labels: Any, label_field: LabelField = "predictions") -> Dict[str, Any]:
    """Maps one prediction to ``{field_path: value}``.

    * a Label (or None) goes to ``label_field``;
    * a dict of Labels goes to ``label_key(key)``: ``label_field + "_" + key``,
      or ``label_field[key]`` when ``label_field`` is a dict;
    * a dict keyed by frame numbers goes to ``frames.<n>.<label_field>``, or
      ``frames.<n>.<label_key(key)>`` when its values are dicts of Labels;
      :func:`modelzoo.storage.bulk_set` writes those paths to frame ``n``'s
      document in the dataset's frames collection, not into the sample.
    """
    if isinstance(labels, Mapping):
        key = label_key_fn(label_field)
        if _is_frame_dict(labels):
            out: Dict[str, Any] = {}
            for frame_number, frame_labels in labels.items():
                if frame_number < 1:
                    raise LabelError(f"Frame numbers start at 1, got {frame_number}")
                if isinstance(frame_labels, Mapping):
                    for k, v in frame_labels.items():
                        out[check_output_field(f"frames.{int(frame_number)}.{key(k)}", "the label's field")] = v
                else:
                    name = label_field if isinstance(label_field, str) else "predictions"
                    out[check_output_field(f"frames.{int(frame_number)}.{name}", "label_field")] = frame_labels
            return out
        return {check_output_field(key(str(k)), f"the field of the model's output {str(k)!r}"): v for k, v in labels.items()}
    if not isinstance(label_field, str):
        raise LabelError(
            f"label_field must be a string when the model returns a single label, got {label_field!r}"
        )
    return {check_output_field(label_field, "label_field"): labels}


def to_mongo_value(value: Any) -> Any:
    """Converts a Python value (Labels, arrays, numpy scalars, containers) to BSON-ready data."""
    if value is None or isinstance(value, (str, bool, int, float, bytes)):
        return value
    if isinstance(value, Label):
        return value.to_dict()
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_mongo_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_mongo_value(v) for v in value]
    if hasattr(value, "to_mongo"):
        return value.to_mongo()
    return value


def from_mongo_value(value: Any) -> Any:
    """The inverse of :func:`to_mongo_value` for stored data."""
    if isinstance(value, dict):
        if value.get("_cls") in LABEL_TYPES:
            return label_from_dict(value)
        return {k: from_mongo_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_mongo_value(v) for v in value]
    if isinstance(value, Binary) and value.subtype == ARRAY_SUBTYPE:
        return decode_array(value)
    return value


def get_path(doc: Mapping, path: str) -> Any:
    """Follows a dotted path through nested dicts (and lists of dicts)."""
    cur: Any = doc
    for part in path.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(part)
        elif isinstance(cur, list):
            cur = [get_path(x, part) if isinstance(x, Mapping) else None for x in cur]
        else:
            return None
        if cur is None:
            return None
    return cur
