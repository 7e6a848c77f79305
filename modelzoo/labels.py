"""Labels: what models produce and samples store.

Labels are mongoengine embedded documents, so they can be assigned to any
sample field and saved; each also has a fast hand-written :meth:`Label.to_dict`
(the exact document stored in MongoDB) and :meth:`Label.from_dict`, which is
what the batched writer uses. Geometry is relative: a bounding box is
``[x, y, width, height]`` in ``[0, 1]`` of the image, masks are numpy arrays,
keypoints are ``[x, y]`` pairs in ``[0, 1]``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Type

import numpy as np
from bson import ObjectId
from bson.errors import InvalidId
from bson.son import SON
from mongoengine import DynamicEmbeddedDocument
from mongoengine.base import BaseField
from mongoengine.fields import (
    DictField,
    EmbeddedDocumentListField,
    FloatField,
    ListField,
    StringField,
)

from .encoding import NumpyArrayField, decode_array, encode_array
from .errors import LabelError

__all__ = [
    "Label",
    "Classification",
    "Classifications",
    "Detection",
    "Detections",
    "Keypoint",
    "Keypoints",
    "Segmentation",
    "Heatmap",
    "read_array_file",
    "label_from_dict",
    "new_label_id",
    "check_box",
    "filter_confidence",
    "filter_classes",
    "stored_array",
    "filter_output",
    "LABEL_TYPES",
]

_EPS = 1e-6


def _arr(value: Any) -> Any:
    return None if value is None else encode_array(value)


def _unarr(value: Any) -> Any:
    return None if value is None else decode_array(value)


def _prune(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def new_label_id() -> str:
    """A new label id: the string of a new ObjectId."""
    return str(ObjectId())


def _to_oid(value: Any) -> ObjectId:
    if isinstance(value, ObjectId):
        return value
    try:
        return ObjectId(str(value))
    except (InvalidId, TypeError):
        raise LabelError(f"Label id {value!r}: expected a 24-hex-digit ObjectId string") from None


def _to_bson(value: Any) -> Any:
    """An extra field's value, BSON-ready (arrays as binary, labels as documents)."""
    if isinstance(value, np.ndarray):
        return encode_array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Label):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _to_bson(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_bson(v) for v in value]
    return value


def _from_bson(value: Any) -> Any:
    """The inverse of :func:`_to_bson` for stored extra fields."""
    from bson.binary import Binary

    from .encoding import ARRAY_SUBTYPE

    if isinstance(value, Binary) and value.subtype == ARRAY_SUBTYPE:
        return decode_array(value)
    if isinstance(value, dict):
        if value.get("_cls") in LABEL_TYPES:
            return label_from_dict(value)
        return {k: _from_bson(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_bson(v) for v in value]
    return value


class _LabelIdField(BaseField):
    """A label's id: an ObjectId in the stored document (``_id``), a string in Python.

    Every new Detection, Classification or Keypoint gets one, so that
    evaluations can point at objects; it is kept through every round trip.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(db_field="_id", default=ObjectId, **kwargs)

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is None:
            return self
        value = instance._data.get(self.name)
        return None if value is None else str(value)

    def __set__(self, instance: Any, value: Any) -> None:
        super().__set__(instance, ObjectId() if value is None else _to_oid(value))

    def to_mongo(self, value: Any) -> Any:
        return None if value is None else _to_oid(value)

    def to_python(self, value: Any) -> Any:
        return value if value is None or isinstance(value, ObjectId) else _to_oid(value)

    def validate(self, value: Any) -> None:
        if value is not None and not isinstance(value, ObjectId):
            self.error(f"expected an ObjectId, got {value!r}")


#: per label class: the state of a default-constructed instance, for Label.from_trusted
_TRUSTED_STATE: Dict[type, Any] = {}
#: instance slots that are the same for every new embedded document
_COPIED_SLOTS = ("_initialised", "_created", "_db_field_map", "_instance")


class Label(DynamicEmbeddedDocument):
    """Base of every label. Subclasses implement ``to_dict``/``_from_dict``.

    Like FiftyOne's labels, a label takes extra fields (``detection["embedding"]
    = array``, ``Detection(label="cat", iscrowd=1)``): they are stored next to
    the label's own fields, numpy arrays as binary, and come back on reads
    (``compute_patch_embeddings`` stores its vectors so).
    """

    meta = {"abstract": True, "allow_inheritance": False}

    def __init__(self, *args: Any, **values: Any):
        # mongoengine builds labels met in dynamic sample fields from the raw
        # stored document, whose id key is "_id"
        if "_id" in values:
            values["id"] = values.pop("_id")
        super().__init__(*args, **values)

    def to_dict(self) -> Dict[str, Any]:
        """The BSON-ready document stored in MongoDB (arrays as binary)."""
        raise NotImplementedError

    def to_mongo(self, *args: Any, **kwargs: Any) -> Any:
        """The stored document (mongoengine saves labels met in samples with it)."""
        return SON(self.to_dict())

    @classmethod
    def _from_son(cls, son: Any, *args: Any, **kwargs: Any) -> Any:
        label = super()._from_son(son, *args, **kwargs)
        if label._dynamic_fields:  # extra fields holding arrays come back as arrays
            for name in list(label._dynamic_fields):
                value = label._data.get(name)
                if not isinstance(value, (str, int, float, bool)) and value is not None:
                    setattr(label, name, _from_bson(value))
            label._changed_fields = []
        return label

    def _extras(self, out: Dict[str, Any]) -> Dict[str, Any]:
        """``out`` with the label's extra (dynamic) fields added, BSON-ready."""
        dynamic = self._dynamic_fields
        if dynamic:
            data = self._data
            for name in dynamic:
                value = data.get(name)
                if value is not None:
                    out[name] = _to_bson(value)
        return out

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Label":
        raise NotImplementedError

    @staticmethod
    def from_dict(d: Dict[str, Any]) -> "Label":
        """Builds the label that :meth:`to_dict` wrote (dispatches on ``_cls``)."""
        return label_from_dict(d)

    @classmethod
    def from_trusted(cls, **values: Any) -> "Label":
        """Builds a label from values already valid and in their stored types
        (str, float, list of floats, boxes from :func:`check_box`), with no
        per-field conversion or validation: for output processors that built
        valid values, ~3 us instead of ~15 us per label (they make one per
        box). The result is the same document as ``cls(**values)``
        (``tests/test_labels.py`` compares them); later assignments are
        converted and validated as usual.

        Args:
            **values: field name -> value; anything not given gets its default.

        Example::

            Detection.from_trusted(label="cat", bounding_box=check_box(box), confidence=0.9)
        """
        state = _TRUSTED_STATE.get(cls)
        if state is None:
            proto = cls()
            slots = {name: object.__getattribute__(proto, name) for name in _COPIED_SLOTS}
            state = (slots, dict(proto._data), dict(vars(proto)))
            _TRUSTED_STATE[cls] = state
        slots, defaults, attrs = state
        obj = cls.__new__(cls)
        for name, value in slots.items():
            object.__setattr__(obj, name, value)
        object.__setattr__(obj, "_changed_fields", [])
        object.__setattr__(obj, "_dynamic_fields", SON())
        data = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in defaults.items()}
        if "id" in data:  # a fresh id per label, never the prototype's
            data["id"] = ObjectId()
        data.update(values)
        if "id" in values:
            data["id"] = ObjectId() if values["id"] is None else _to_oid(values["id"])
        object.__setattr__(obj, "_data", data)
        obj.__dict__.update(attrs)
        return obj

    def __repr__(self) -> str:
        parts = []
        for k, v in self._data.items():
            if isinstance(v, np.ndarray):
                parts.append(f"{k}=<array {v.shape} {v.dtype}>")
            elif v is not None and not (isinstance(v, (list, dict)) and not v) and k != "id":
                parts.append(f"{k}={v!r}")
        return f"<{type(self).__name__}: {', '.join(parts)}>"

    __str__ = __repr__

    def __eq__(self, other: Any) -> bool:
        """Equal content: same type and same stored values, ids aside (two
        labels built alike are equal; :attr:`id` tells objects apart)."""
        if type(self) is not type(other):
            return False
        return _deep_equal(self.to_dict(), other.to_dict())

    __hash__ = None  # type: ignore[assignment]  # mutable


def _deep_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        a = {k: v for k, v in a.items() if k != "_id"}
        b = {k: v for k, v in b.items() if k != "_id"}
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b))
    return a == b


class Classification(Label):
    """A single class label.

    Args:
        label: the class name.
        confidence: the score in ``[0, 1]``, if any.
        logits: the raw scores over all classes, shape ``(num_classes,)``.
        attributes: free-form extra values (evaluations write theirs here).
        id: the label's id (a 24-hex-digit string); a new one when omitted.
    """

    id = _LabelIdField()
    label = StringField()
    confidence = FloatField()
    logits = NumpyArrayField()
    attributes = DictField()

    def to_dict(self) -> Dict[str, Any]:
        data = self._data
        out: Dict[str, Any] = {"_cls": "Classification"}
        v = data.get("id")
        if v is not None:
            out["_id"] = v
        v = data.get("label")
        if v is not None:
            out["label"] = v
        v = data.get("confidence")
        if v is not None:
            out["confidence"] = float(v)
        v = data.get("logits")
        if v is not None:
            out["logits"] = encode_array(v)
        v = data.get("attributes")
        if v:
            out["attributes"] = v
        return self._extras(out)

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Classification":
        return cls(
            id=d.get("_id"), label=d.get("label"), confidence=d.get("confidence"),
            logits=_unarr(d.get("logits")), attributes=d.get("attributes") or {},
        )


class Classifications(Label):
    """Several class labels for one image (multilabel)."""

    classifications = EmbeddedDocumentListField(Classification)
    logits = NumpyArrayField()

    def to_dict(self) -> Dict[str, Any]:
        return self._extras(_prune({
            "_cls": "Classifications",
            "classifications": [c.to_dict() for c in self._data.get("classifications") or ()],
            "logits": _arr(self._data.get("logits")),
        }))

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Classifications":
        return cls(
            classifications=[_built(Classification, c) for c in d.get("classifications", [])],
            logits=_unarr(d.get("logits")),
        )


def check_box(box: Any, owner: str = "Detection.bounding_box") -> List[float]:
    """Validates a relative box and returns it as four floats.

    Boxes may extend past the image (``x < 0`` or ``x + width > 1``), as
    detectors and annotators round them and as FiftyOne and COCO accept them;
    evaluation uses them as they are (as pycocotools does) and drawing clips
    them to the image.

    Args:
        box: ``[x, y, width, height]`` relative to the image size.
        owner: what holds the box, for the error (``"MyProcessor: box 3"``).

    Raises:
        LabelError: not four finite numbers, or a negative size.
    """
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise LabelError(f"{owner} = {box!r}: expected four numbers [x, y, width, height]") from None
    if len(values) != 4:
        raise LabelError(f"{owner} = {box!r}: expected four numbers [x, y, width, height], got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise LabelError(f"{owner} = {values}: coordinates must be finite")
    if values[2] < 0 or values[3] < 0:
        raise LabelError(
            f"{owner} = {values}: width and height must be >= 0 (boxes are [x, y, width, height]; "
            "for corners use Detection.from_abs_xyxy(box, width, height))"
        )
    return values


def read_array_file(path: str) -> np.ndarray:
    """The array stored as an image file (a mask or heatmap PNG written by
    ``apply_model(output_dir=...)``, or any 8/16-bit grayscale image).

    Raises:
        LabelError: the file is missing or not a readable image (the path is named).
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img)
    except (OSError, ValueError) as e:
        raise LabelError(f"Cannot read the array file {path!r}: {e}") from None


class _OnDiskArrayField(NumpyArrayField):
    """An array stored in the label, or in the file named by another field
    (``mask_path``, ``map_path``): reading the attribute loads the file when
    the label holds no array, so every reader gets the pixels."""

    def __init__(self, path_field: str, as_bool: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self._path_field = path_field
        self._as_bool = as_bool

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is None:
            return self
        value = instance._data.get(self.name)
        if value is None:
            path = instance._data.get(self._path_field)
            if path:
                value = read_array_file(path)
                if self._as_bool:
                    value = value != 0
        return value


class _BoxField(ListField):
    """``[x, y, w, h]`` relative, validated on every assignment."""

    def __init__(self, **kwargs: Any):
        super().__init__(FloatField(), **kwargs)

    def __set__(self, instance: Any, value: Any) -> None:
        if value is not None and len(value) == 0:
            value = None  # mongoengine's default for list fields: no box
        if value is not None:
            value = check_box(value, f"{type(instance).__name__}.{self.name}")
        super().__set__(instance, value)


class Detection(Label):
    """An object: a box, optionally an instance mask inside the box.

    Args:
        label: the class name.
        bounding_box: ``[x, y, width, height]``, relative to the image size (it may
            extend past the image: see :func:`check_box`).
        confidence: the score.
        mask: a boolean ``(h, w)`` array covering the box only (instance segmentation).
        attributes: free-form extra values (must be BSON-serialisable).
        id: the label's id (a 24-hex-digit string); a new one when omitted.
    """

    id = _LabelIdField()
    label = StringField()
    bounding_box = _BoxField()
    confidence = FloatField()
    mask = _OnDiskArrayField("mask_path", as_bool=True)
    mask_path = StringField()
    attributes = DictField()

    def to_dict(self) -> Dict[str, Any]:
        # Built key by key (no intermediate dict): this runs once per box in the writer.
        data = self._data
        out: Dict[str, Any] = {"_cls": "Detection"}
        v = data.get("id")
        if v is not None:
            out["_id"] = v
        v = data.get("label")
        if v is not None:
            out["label"] = v
        v = data.get("bounding_box")
        if v is not None:
            out["bounding_box"] = v
        v = data.get("confidence")
        if v is not None:
            out["confidence"] = float(v)
        v = data.get("mask")
        if v is not None:
            out["mask"] = encode_array(v)
        v = data.get("mask_path")
        if v is not None:
            out["mask_path"] = v
        v = data.get("attributes")
        if v:
            out["attributes"] = v
        return self._extras(out)

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Detection":
        return cls(
            id=d.get("_id"),
            label=d.get("label"),
            bounding_box=d.get("bounding_box"),
            confidence=d.get("confidence"),
            mask=_unarr(d.get("mask")),
            mask_path=d.get("mask_path"),
            attributes=d.get("attributes") or {},
        )

    @classmethod
    def from_abs_xyxy(cls, box: Sequence[float], width: int, height: int, **kwargs: Any) -> "Detection":
        """Builds a detection from absolute ``x1, y1, x2, y2`` pixel coordinates."""
        x1, y1, x2, y2 = (float(v) for v in box)
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        rel = [x1 / width, y1 / height, max(x2 - x1, 0.0) / width, max(y2 - y1, 0.0) / height]
        return cls(bounding_box=rel, **kwargs)

    def to_nucleus(self, width: int, height: int, reference_id: Optional[str] = None) -> Dict[str, Any]:
        """This box in the Nucleus format (pixels) for an image of ``width x height``.
        The Nucleus client's ``BoxPrediction.from_json`` needs ``reference_id``
        (the dataset item); see :func:`modelzoo.bundles.export_nucleus`."""
        x, y, w, h = self.bounding_box
        out: Dict[str, Any] = {
            "geometry": {"x": x * width, "y": y * height, "width": w * width, "height": h * height},
            "type": "box",
            "label": self.label,
        }
        if self.confidence is not None:
            out["confidence"] = float(self.confidence)
        if reference_id is not None:
            out["reference_id"] = reference_id
        return out

    @classmethod
    def from_nucleus(cls, d: Dict[str, Any], width: int, height: int) -> "Detection":
        """Parses a Nucleus box annotation ``{"geometry": {x, y, width, height}, ...}`` (pixels)."""
        if not isinstance(d, dict) or "geometry" not in d:
            raise LabelError(f"Expected a Nucleus box annotation with a 'geometry' key, got {d!r}")
        if d.get("type", "box") != "box":
            raise LabelError(f"Only Nucleus 'box' annotations convert to Detection, got type {d.get('type')!r}")
        g = d["geometry"]
        try:
            box = [g["x"] / width, g["y"] / height, g["width"] / width, g["height"] / height]
        except KeyError as e:
            raise LabelError(f"Nucleus annotation geometry {g!r} lacks key {e.args[0]!r}") from None
        label = d.get("label")
        return cls(
            label=None if label is None else str(label),
            bounding_box=box,
            confidence=d.get("confidence"),
        )


class Detections(Label):
    """All the objects found in one image."""

    detections = EmbeddedDocumentListField(Detection)

    def to_dict(self) -> Dict[str, Any]:
        out = {"_cls": "Detections", "detections": [det.to_dict() for det in self._data.get("detections") or ()]}
        return self._extras(out)

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Detections":
        return cls(detections=[_built(Detection, x) for x in d.get("detections", [])])

    def to_nucleus(self, width: int, height: int, reference_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """The boxes in the Nucleus format (pixels) for an image of ``width x
        height``; give ``reference_id`` (the Nucleus dataset item) for records
        that the Nucleus client's ``BoxPrediction.from_json`` accepts."""
        return [det.to_nucleus(width, height, reference_id) for det in self.detections]

    @classmethod
    def from_nucleus(cls, items: Iterable[Dict[str, Any]], width: int, height: int) -> "Detections":
        return cls(detections=[Detection.from_nucleus(x, width, height) for x in items])


class Keypoint(Label):
    """A set of points for one object (e.g. a person's joints).

    Args:
        label: the class name.
        points: ``[[x, y], ...]`` relative in ``[0, 1]``; NaN marks a missing point.
        confidence: one score per point.
        bounding_box: optionally the object's box ``[x, y, w, h]``, relative.
        attributes: free-form extra values.
        id: the label's id (a 24-hex-digit string); a new one when omitted.
    """

    id = _LabelIdField()
    label = StringField()
    points = ListField(ListField(FloatField()))
    confidence = ListField(FloatField())
    bounding_box = _BoxField()
    attributes = DictField()

    def validate(self, clean: bool = True) -> None:
        super().validate(clean)
        if self.confidence and len(self.confidence) != len(self.points):
            raise LabelError(
                f"Keypoint.confidence has {len(self.confidence)} values for {len(self.points)} points; "
                "give one confidence per point"
            )

    def to_dict(self) -> Dict[str, Any]:
        data = self._data
        return self._extras(_prune({
            "_cls": "Keypoint",
            "_id": data.get("id"),
            "label": data.get("label"),
            "points": data.get("points"),
            "confidence": data.get("confidence") or None,
            "bounding_box": data.get("bounding_box"),
            "attributes": data.get("attributes") or None,
        }))

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Keypoint":
        return cls(
            id=d.get("_id"),
            label=d.get("label"),
            points=d.get("points") or [],
            confidence=d.get("confidence") or [],
            bounding_box=d.get("bounding_box"),
            attributes=d.get("attributes") or {},
        )


class Keypoints(Label):
    """All the keypoint sets of one image."""

    keypoints = EmbeddedDocumentListField(Keypoint)

    def to_dict(self) -> Dict[str, Any]:
        return self._extras({"_cls": "Keypoints", "keypoints": [k.to_dict() for k in self._data.get("keypoints") or ()]})

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Keypoints":
        return cls(keypoints=[_built(Keypoint, x) for x in d.get("keypoints", [])])


class Segmentation(Label):
    """A semantic segmentation: an ``(H, W)`` integer mask of class indices
    at the image's size; ``mask_targets`` maps indices to class names.

    The mask is in the label (``mask``) or in a PNG file (``mask_path``,
    written by ``apply_model(output_dir=...)``); reading ``mask`` loads the
    file, so every reader gets the pixels either way.
    """

    mask = _OnDiskArrayField("mask_path")
    mask_path = StringField()
    mask_targets = DictField()

    def get_mask(self) -> Optional[np.ndarray]:
        """The mask, from the label or its file (FiftyOne's name)."""
        return self.mask

    def to_dict(self) -> Dict[str, Any]:
        data = self._data
        return self._extras(_prune({
            "_cls": "Segmentation",
            "mask": _arr(data.get("mask")),
            "mask_path": data.get("mask_path"),
            "mask_targets": data.get("mask_targets") or None,
        }))

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Segmentation":
        return cls(mask=_unarr(d.get("mask")), mask_path=d.get("mask_path"), mask_targets=d.get("mask_targets") or {})


class Heatmap(Label):
    """A dense single-channel map over the image (depth, saliency, a score
    per pixel), as FiftyOne's ``Heatmap``.

    Args:
        map: an ``(H, W)`` array (any numeric dtype).
        map_path: the PNG file holding the map instead (written by
            ``apply_model(output_dir=...)``); reading ``map`` loads it.
        range: ``[min, max]`` of the values the map can take (for display and
            to map PNG pixel values back), e.g. ``[0, 1]``.
    """

    map = _OnDiskArrayField("map_path")
    map_path = StringField()
    range = ListField(FloatField())

    def get_map(self) -> Optional[np.ndarray]:
        """The map, from the label or its file (FiftyOne's name)."""
        return self.map

    def validate(self, clean: bool = True) -> None:
        super().validate(clean)
        _check_range(self.range)

    def to_dict(self) -> Dict[str, Any]:
        data = self._data
        return self._extras(_prune({
            "_cls": "Heatmap",
            "map": _arr(data.get("map")),
            "map_path": data.get("map_path"),
            "range": [float(v) for v in data["range"]] if data.get("range") else None,
        }))

    @classmethod
    def _from_dict(cls, d: Dict[str, Any]) -> "Heatmap":
        return cls(map=_unarr(d.get("map")), map_path=d.get("map_path"), range=d.get("range") or [])


def _check_range(value: Any) -> None:
    if value and (len(value) != 2 or not all(math.isfinite(float(v)) for v in value) or value[0] > value[1]):
        raise LabelError(f"Heatmap.range = {list(value)!r}: expected [min, max], finite, min <= max")


LABEL_TYPES: Dict[str, Type[Label]] = {
    c.__name__: c
    for c in (Classification, Classifications, Detection, Detections, Keypoint, Keypoints, Segmentation, Heatmap)
}


def label_from_dict(d: Dict[str, Any]) -> Label:
    """Builds a label from its stored document, dispatching on ``_cls``."""
    cls_name = d.get("_cls") if isinstance(d, dict) else None
    if cls_name not in LABEL_TYPES:
        raise LabelError(
            f"Cannot build a label from {d!r:.200}: '_cls' must be one of {sorted(LABEL_TYPES)}"
        )
    return _built(LABEL_TYPES[cls_name], d)


def _built(cls: Type[Label], d: Dict[str, Any]) -> Any:
    """``cls._from_dict(d)`` with the stored extra fields of ``d`` set on it."""
    label = cls._from_dict(d)
    extra = [k for k in d if k not in _OWN_KEYS.setdefault(cls, _own_keys(cls))]
    if extra:
        for name in extra:
            label[name] = _from_bson(d[name])
        label._changed_fields = []
    return label


_OWN_KEYS: Dict[type, frozenset] = {}


def _own_keys(cls: type) -> frozenset:
    return frozenset({"_cls", "_id"} | {f.db_field for f in cls._fields.values()})  # type: ignore[attr-defined]


def filter_confidence(label: Any, thresh: Optional[float]) -> Any:
    """Drops the parts of ``label`` whose confidence is below ``thresh``.

    A lone Classification/Detection below the threshold becomes ``None``; list
    labels keep the items at or above it. Items without a confidence are kept.
    """
    if thresh is None or label is None:
        return label
    if isinstance(label, (Classification, Detection)):
        c = label.confidence
        return label if c is None or c >= thresh else None
    if isinstance(label, Detections):
        label.detections = [d for d in label.detections if d.confidence is None or d.confidence >= thresh]
    elif isinstance(label, Classifications):
        label.classifications = [
            c for c in label.classifications if c.confidence is None or c.confidence >= thresh
        ]
    elif isinstance(label, Keypoints):
        kept = []
        for kp in label.keypoints:
            if kp.confidence:
                mean = float(np.nanmean(kp.confidence))
                if not math.isnan(mean) and mean < thresh:
                    continue
            kept.append(kp)
        label.keypoints = kept
    return label


def filter_output(output: Any, thresh: Optional[float]) -> Any:
    """Drops the predictions of one model output below ``thresh``; the one
    place ``confidence_thresh`` is applied.

    ``output`` is a Label, None, or a dict of them. In a dict holding both
    ``detections`` (Detections) and ``keypoints`` (Keypoints) of the same
    length, ``detections[i]`` and ``keypoints[i]`` are one object (as
    keypoint detectors return them): they are kept or dropped together, by
    the box's confidence. Other labels are filtered by
    :func:`filter_confidence`.
    """
    if thresh is None or output is None:
        return output
    if not isinstance(output, dict):
        return filter_confidence(output, thresh)
    dets, kps = output.get("detections"), output.get("keypoints")
    if not (isinstance(dets, Detections) and isinstance(kps, Keypoints) and len(dets.detections) == len(kps.keypoints)):
        return {k: filter_confidence(v, thresh) for k, v in output.items()}
    keep = [j for j, d in enumerate(dets.detections) if d.confidence is None or d.confidence >= thresh]
    dets.detections = [dets.detections[j] for j in keep]
    kps.keypoints = [kps.keypoints[j] for j in keep]
    return {k: v if k in ("detections", "keypoints") else filter_confidence(v, thresh) for k, v in output.items()}


def filter_classes(output: Any, classes: Optional[Iterable[str]]) -> Any:
    """Keeps the predictions of one model output whose class is in ``classes``
    (``apply_model(classes=...)``): a lone Classification/Detection of another
    class becomes None, list labels keep their items of those classes; other
    labels (masks, maps) are kept. ``output`` is a Label, None, or a dict of
    them (frame-keyed dicts too)."""
    if classes is None or output is None:
        return output
    wanted = set(classes)
    if isinstance(output, dict):
        return {k: filter_classes(v, wanted) for k, v in output.items()}
    if isinstance(output, (Classification, Detection, Keypoint)):
        return output if output.label in wanted else None
    if isinstance(output, Detections):
        output.detections = [d for d in output.detections if d.label in wanted]
    elif isinstance(output, Classifications):
        output.classifications = [c for c in output.classifications if c.label in wanted]
    elif isinstance(output, Keypoints):
        output.keypoints = [k for k in output.keypoints if k.label in wanted]
    return output


def stored_array(doc: Dict[str, Any], key: str = "mask", path_key: str = "mask_path") -> Optional[np.ndarray]:
    """The array of a stored label document: in it (``key``), or in the file
    its ``path_key`` names (written by ``apply_model(output_dir=...)``)."""
    value = doc.get(key)
    if value is not None:
        return decode_array(value)
    path = doc.get(path_key)
    return read_array_file(path) if path else None
