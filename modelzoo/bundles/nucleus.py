"""Nucleus box annotations <-> modelzoo Detections, and JSON-lines export.

A Nucleus box is ``{"geometry": {"x", "y", "width", "height"}, "type": "box",
"label", "confidence"}`` in **pixels** (what Launch bundles for Nucleus
return); a :class:`~modelzoo.Detection` box is relative ``[x, y, w, h]``.
An exported record also carries ``reference_id`` (by default the sample's
file name) so that the Nucleus client's ``BoxPrediction.from_json`` accepts
it, and ``class_pdf`` when the detection has class probabilities.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ..atomic import atomic_write
from ..errors import LabelError
from ..labels import Detection, Detections

__all__ = ["is_box_list", "detections_from_boxes", "detection_to_box", "label_to_boxes", "export_nucleus"]

ReferenceId = Union[str, Callable[[Any], str]]


def _is_box(d: Any) -> bool:
    return isinstance(d, Mapping) and d.get("type") == "box" and isinstance(d.get("geometry"), Mapping)


def is_box_list(value: Any) -> bool:
    """Whether ``value`` is a non-empty list of Nucleus box dicts."""
    return isinstance(value, (list, tuple)) and bool(value) and all(_is_box(d) for d in value)


def _clip(v: float) -> float:
    return min(max(v, 0.0), 1.0)


def detections_from_boxes(boxes: Iterable[Mapping[str, Any]], width: int, height: int) -> Detections:
    """Nucleus boxes (pixels) in a ``width x height`` image -> Detections (relative).

    Boxes are clipped to the image. ``classPdf`` / ``class_pdf`` and
    ``metadata`` go to the detection's attributes.

    Raises:
        LabelError: a box lacks a coordinate or is not finite.
    """
    dets = []
    for i, b in enumerate(boxes):
        if not _is_box(b):
            raise LabelError(f"Nucleus box {i}: expected {{'geometry': {{x, y, width, height}}, 'type': 'box'}}, got {b!r:.120}")
        g = b["geometry"]
        try:
            x, y, w, h = (float(g[k]) for k in ("x", "y", "width", "height"))
        except KeyError as e:
            raise LabelError(f"Nucleus box {i}: geometry {dict(g)!r} lacks {e.args[0]!r}") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise LabelError(f"Nucleus box {i}: geometry {dict(g)!r} is not finite")
        x1, y1 = _clip(x / width), _clip(y / height)
        x2, y2 = _clip((x + max(w, 0.0)) / width), _clip((y + max(h, 0.0)) / height)
        attributes: Dict[str, Any] = {}
        pdf = b.get("class_pdf", b.get("classPdf"))
        if pdf:
            attributes["class_pdf"] = {str(k): float(v) for k, v in dict(pdf).items()}
        if b.get("metadata"):
            attributes["metadata"] = dict(b["metadata"])
        label = b.get("label")
        confidence = b.get("confidence")
        dets.append(Detection(
            label=None if label is None else str(label),
            bounding_box=[x1, y1, x2 - x1, y2 - y1],
            confidence=None if confidence is None else float(confidence),
            attributes=attributes,
        ))
    return Detections(detections=dets)


def _class_pdf(det: Detection, classes: Optional[Sequence[str]]) -> Optional[Dict[str, float]]:
    attrs = det.attributes or {}
    if attrs.get("class_pdf"):
        return {str(k): float(v) for k, v in attrs["class_pdf"].items()}
    logits = attrs.get("logits")
    if logits is None or classes is None:
        return None
    values = [float(v) for v in logits]
    if len(values) != len(classes):
        raise LabelError(f"Detection logits have {len(values)} values for {len(classes)} classes")
    top = max(values)
    exp = [math.exp(v - top) for v in values]
    total = sum(exp)
    return {c: e / total for c, e in zip(classes, exp)}


def detection_to_box(
    det: Detection,
    width: int,
    height: int,
    reference_id: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
) -> Dict[str, Any]:
    """One Detection as a Nucleus box prediction record (pixels).

    Args:
        reference_id: the Nucleus dataset item it belongs to (required by
            ``BoxPrediction.from_json``).
        classes: class names for detections whose attributes hold ``logits``
            (softmaxed into ``class_pdf``); a stored ``class_pdf`` is used as is.
    """
    out = det.to_nucleus(width, height, reference_id)
    pdf = _class_pdf(det, classes)
    if pdf is not None:
        out["class_pdf"] = pdf
    return out


def label_to_boxes(
    label: Any, width: int, height: int, reference_id: Optional[str] = None, classes: Optional[Sequence[str]] = None
) -> List[Dict[str, Any]]:
    """A Detection or Detections as a list of Nucleus box records (per label)."""
    if label is None:
        return []
    if isinstance(label, Detection):
        return [detection_to_box(label, width, height, reference_id, classes)]
    if isinstance(label, Detections):
        return [detection_to_box(d, width, height, reference_id, classes) for d in label.detections]
    raise LabelError(f"Only Detection(s) export as Nucleus boxes, got {type(label).__name__}")


def _reference(sample: Any, reference_id: ReferenceId) -> str:
    if callable(reference_id):
        return str(reference_id(sample))
    if reference_id == "filename":
        return os.path.basename(sample.filepath)
    if reference_id == "filepath":
        return str(sample.filepath)
    if reference_id == "id":
        return str(sample.id)
    value = sample[reference_id]
    if value is None:
        raise LabelError(f"Sample {sample.id} has no {reference_id!r} to use as its Nucleus reference_id")
    return str(value)


def export_nucleus(
    samples: Any,
    path: str,
    label_field: str,
    reference_id: ReferenceId = "filename",
    classes: Optional[Sequence[str]] = None,
) -> int:
    """Writes the boxes of ``label_field`` of a dataset or view as Nucleus box
    predictions, one JSON line per box.

    Args:
        samples: a Dataset or DatasetView.
        path: the ``.jsonl`` file to write (replaced).
        label_field: a Detections (or Detection) field.
        reference_id: ``"filename"`` (default), ``"filepath"``, ``"id"``, the
            name of a sample field, or ``sample -> str``.
        classes: see :func:`detection_to_box`.

    Returns:
        the number of boxes written.

    Raises:
        LabelError: a sample without image metadata (its size is needed), or
            a field that is not Detections.
    """
    n = 0
    with atomic_write(path) as f:  # a failure leaves no partial file
        for sample in samples:
            label = sample._data.get(label_field)
            if label is None:
                continue
            meta = sample.metadata
            if meta is None or not meta.width or not meta.height:
                raise LabelError(
                    f"Sample {sample.id} ({sample.filepath}) has no image size in metadata; Nucleus boxes are in "
                    "pixels, so it cannot be exported"
                )
            ref = _reference(sample, reference_id)
            for box in label_to_boxes(label, meta.width, meta.height, ref, classes):
                f.write(json.dumps(box) + "\n")
                n += 1
    return n
