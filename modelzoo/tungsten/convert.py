"""How a Tungsten-style output is stored on a sample by ``apply_model``.

The mapping is read from the output class's annotations once, not guessed
per value:

* a class whose fields are a label (``label`` / ``class_name`` / ``category``,
  a ``str``) and at most a score (``score`` / ``confidence`` / ``probability``
  / ``prob``) is a :class:`~modelzoo.Classification`; a list of them is
  :class:`~modelzoo.Classifications`;
* a class with a pixel box (``xmin, ymin, xmax, ymax`` or ``x1, y1, x2, y2``,
  as its own fields or in one nested class such as ``bbox: BoundingBox``) is
  a :class:`~modelzoo.Detection` (its label and score as above, its other
  fields in ``attributes``); a list of them is :class:`~modelzoo.Detections`,
  boxes made relative with the input image's size;
* anything else is stored as plain data (nested classes as dicts, files and
  images as their bytes).

An output class that is itself a classification becomes one label; an
output with one field stores that field's value; an output with several
fields is a dict (``apply_model`` writes ``label_field + "_" + name``).
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pydantic

from ..labels import Classification, Classifications, Detection, Detections
from .files import File

__all__ = ["output_converter", "to_plain"]

_LABEL_NAMES = ("label", "class_name", "category")
_SCORE_NAMES = ("score", "confidence", "probability", "prob")
_BOX_NAMES = (("xmin", "ymin", "xmax", "ymax"), ("x1", "y1", "x2", "y2"))

Size = Optional[Tuple[int, int]]


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, pydantic.BaseModel)


def _unwrap_optional(ann: Any) -> Any:
    if typing.get_origin(ann) is typing.Union:
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return ann


def _list_item(ann: Any) -> Any:
    """The item class of ``List[X]`` / ``Sequence[X]`` / ``Tuple[X, ...]``, else None."""
    ann = _unwrap_optional(ann)
    origin = typing.get_origin(ann)
    if origin in (list, tuple, Sequence, typing.Sequence) or (isinstance(origin, type) and issubclass(origin, (list, tuple))):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        if len(args) == 1 and _is_model(_unwrap_optional(args[0])):
            return _unwrap_optional(args[0])
    return None


def _fields(cls: Any) -> Dict[str, Any]:
    return {name: _unwrap_optional(f.annotation) for name, f in cls.model_fields.items()}


def _pick(fields: Dict[str, Any], names: Sequence[str], types: Tuple[type, ...]) -> Optional[str]:
    found = [n for n in names if n in fields and fields[n] in types]
    return found[0] if len(found) == 1 else None


def _classification_spec(cls: Any) -> Optional[Tuple[str, Optional[str]]]:
    fields = _fields(cls)
    label = _pick(fields, _LABEL_NAMES, (str,))
    if label is None:
        return None
    score = _pick(fields, _SCORE_NAMES, (float, int))
    if set(fields) - {label, score}:
        return None
    return label, score


def _flat_box(fields: Dict[str, Any]) -> Optional[Tuple[str, ...]]:
    for names in _BOX_NAMES:
        if all(n in fields and fields[n] in (int, float) for n in names):
            return names
    return None


class _DetectionSpec:
    def __init__(self, cls: Any):
        fields = _fields(cls)
        self.box_field: Optional[str] = None
        self.box = _flat_box(fields)
        if self.box is None:
            nested = [(n, _flat_box(_fields(t))) for n, t in fields.items() if _is_model(t)]
            nested = [(n, b) for n, b in nested if b is not None]
            if len(nested) == 1:
                self.box_field, self.box = nested[0]
        self.label = _pick(fields, _LABEL_NAMES, (str,))
        self.score = _pick(fields, _SCORE_NAMES, (float, int))
        used = set(self.box or ()) if self.box_field is None else {self.box_field}
        self.rest = [n for n in fields if n not in used | {self.label, self.score}]

    @property
    def ok(self) -> bool:
        return self.box is not None

    def build(self, obj: Any, size: Tuple[int, int]) -> Detection:
        holder = getattr(obj, self.box_field) if self.box_field else obj
        box = [float(getattr(holder, n)) for n in self.box]  # type: ignore[union-attr]
        kwargs: Dict[str, Any] = {}
        if self.label is not None and getattr(obj, self.label) is not None:
            kwargs["label"] = str(getattr(obj, self.label))
        if self.score is not None and getattr(obj, self.score) is not None:
            kwargs["confidence"] = float(getattr(obj, self.score))
        if self.rest:
            kwargs["attributes"] = {n: to_plain(getattr(obj, n)) for n in self.rest}
        return Detection.from_abs_xyxy(box, size[0], size[1], **kwargs)


def to_plain(value: Any) -> Any:
    """BSON-ready plain data: classes become dicts, files their bytes."""
    if isinstance(value, File):
        return value.read_bytes()
    if isinstance(value, pydantic.BaseModel):
        return {name: to_plain(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _classification(spec: Tuple[str, Optional[str]], obj: Any) -> Classification:
    label, score = spec
    kwargs: Dict[str, Any] = {"label": str(getattr(obj, label))}
    if score is not None and getattr(obj, score) is not None:
        kwargs["confidence"] = float(getattr(obj, score))
    return Classification(**kwargs)


def _classifications_converter(spec: Tuple[str, Optional[str]]) -> Callable[[Any, Size], Any]:
    return lambda v, size: None if v is None else Classifications(classifications=[_classification(spec, c) for c in v])


def _classification_converter(spec: Tuple[str, Optional[str]]) -> Callable[[Any, Size], Any]:
    return lambda v, size: None if v is None else _classification(spec, v)


def _field_converter(ann: Any) -> Callable[[Any, Size], Any]:
    item = _list_item(ann)
    if item is not None:
        cspec = _classification_spec(item)
        if cspec is not None:
            return _classifications_converter(cspec)
        dspec = _DetectionSpec(item)
        if dspec.ok:
            return lambda v, size: (
                to_plain(v) if size is None else None if v is None
                else Detections(detections=[dspec.build(d, size) for d in v])
            )
    ann = _unwrap_optional(ann)
    if _is_model(ann):
        cspec = _classification_spec(ann)
        if cspec is not None:
            return _classification_converter(cspec)
        dspec = _DetectionSpec(ann)
        if dspec.ok:
            return lambda v, size: to_plain(v) if size is None or v is None else dspec.build(v, size)
    return lambda v, size: to_plain(v)


def output_converter(cls: Any) -> Callable[[Any, Size], Any]:
    """``convert(output, (width, height) or None) -> Label | value | dict`` for
    instances of the output class ``cls`` (see the module docs)."""
    spec = _classification_spec(cls)
    if spec is not None:
        return _classification_converter(spec)
    converters: List[Tuple[str, Callable[[Any, Size], Any]]] = [
        (name, _field_converter(f.annotation)) for name, f in cls.model_fields.items()
    ]
    if len(converters) == 1:
        name, conv = converters[0]
        return lambda out, size: conv(getattr(out, name), size)
    return lambda out, size: {name: conv(getattr(out, name), size) for name, conv in converters}
