"""What a runner's answer becomes in the dataset: Labels where the mapping is
unambiguous, plain fields otherwise.

- a Label (or None), or a dict whose values are all Labels, stays as it is;
- a dict with ``label`` (a string) and nothing but ``confidence`` / ``logits``
  is a :class:`~modelzoo.Classification`; with ``bounding_box`` (relative
  ``[x, y, w, h]``) as well, a :class:`~modelzoo.Detection`;
- a non-empty list of such dicts, all of one kind, is
  :class:`~modelzoo.Classifications` / :class:`~modelzoo.Detections`;
- any other dict is stored key by key (``<label_field>_<key>``), each value
  converted by these rules; tensors become numpy arrays, pydantic models
  their JSON dict; numbers, strings, lists and arrays are stored as they are.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..labels import Classification, Classifications, Detection, Detections, Label, check_box

__all__ = ["to_stored", "as_label"]

_CLASSIFICATION_KEYS = {"label", "confidence", "logits"}
_DETECTION_KEYS = {"label", "confidence", "bounding_box"}


def as_label(d: Any) -> Optional[Label]:
    """The Classification or Detection a dict unambiguously is, else None."""
    if not isinstance(d, Mapping) or not isinstance(d.get("label"), str):
        return None
    keys = set(d)
    conf = d.get("confidence")
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float, np.floating))):
        return None
    # values checked here, in their stored types: the fast constructor (Label.from_trusted)
    values: dict = {"label": d["label"]}
    if conf is not None:
        values["confidence"] = float(conf)
    if keys <= _CLASSIFICATION_KEYS:
        if d.get("logits") is not None:
            values["logits"] = np.asarray(_plain(d["logits"]), dtype=np.float32).reshape(-1)
        return Classification.from_trusted(**values)
    if "bounding_box" in keys and keys <= _DETECTION_KEYS:
        return Detection.from_trusted(bounding_box=check_box(d["bounding_box"], "bounding_box"), **values)
    return None


def _plain(value: Any) -> Any:
    """Tensors -> arrays, pydantic models -> dicts, numpy scalars -> Python."""
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="json")
    if isinstance(value, np.generic):
        return value.item()
    return value


def to_stored(value: Any, name: str) -> Any:
    """Converts one answer (see the module docstring).

    Raises:
        TypeError: a value that cannot be stored, naming the model and the type.
    """
    value = _plain(value)
    if value is None or isinstance(value, (Label, str, bool, int, float, bytes, np.ndarray)):
        return value
    if isinstance(value, Mapping):
        label = as_label(value)
        if label is not None:
            return label
        return {str(k): to_stored(v, name) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_stored(v, name) for v in value]
        if items and all(isinstance(i, Detection) for i in items):
            return Detections(detections=items)
        if items and all(isinstance(i, Classification) for i in items):
            return Classifications(classifications=items)
        return items
    raise TypeError(
        f"Zoo model {name!r} answered {type(value).__name__} ({value!r:.80}), which cannot be stored: return Labels, "
        "dicts, lists, numbers, strings, arrays or tensors from postprocess_data"
    )
