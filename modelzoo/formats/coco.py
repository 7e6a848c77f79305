"""COCO detection files in and out: boxes, instance masks (polygons and RLE),
keypoints, categories and ``iscrowd``.

Import reads the JSON once, groups the annotations by image, and adds the
samples in batches with their labels already on them (one insert per batch,
no second pass over the file). Each annotation becomes one
:class:`~modelzoo.labels.Detection` (label = category name, relative box,
mask cropped to the box, ``attributes = {"iscrowd", "area", "coco_id"}``) and,
when it has keypoints, one :class:`~modelzoo.labels.Keypoint` with the same
``coco_id``. Masks need ``pycocotools``.

A COCO file is data from elsewhere, so import checks the whole file before
it writes anything (:func:`import_coco`): every entry's keys and types, each
``file_name`` inside the images folder, each mask against its image's size
(before it is decoded), and the category list against the database's
document limit. A malformed entry raises :class:`~modelzoo.errors.FormatError`
naming the file, the entry (``annotations[12]``) and the key; a failure while
writing removes the samples already added, so a file is imported whole or
not at all.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from ..atomic import atomic_write
from ..errors import DatasetError, FormatError, RequirementsError
from ..labels import Detection, Detections, Keypoint, Keypoints, check_box
from ..masks import crop_to_box, full_mask
from ..media import read_image_metadata
from ..sample import ImageMetadata, Sample
from .coco_checks import check_coco, inside

__all__ = ["COCO_LABEL_TYPES", "CocoImportReport", "import_coco", "export_coco", "coco_mask"]

COCO_LABEL_TYPES = ("detections", "segmentations", "keypoints")
_BATCH = 500
#: the categories are kept in the dataset's record, which the database caps at 16 MiB
_MAX_CATEGORIES_BYTES = 15 * 1024 * 1024


@dataclass
class CocoImportReport:
    """What :func:`import_coco` did.

    Attributes:
        images: samples added.
        annotations: annotations imported (as Detections).
        keypoints: annotations that also gave a Keypoint.
        clipped: boxes that reached outside their image, clipped to it.
        skipped_unknown_image: annotations of images not in ``images`` (skipped).
        skipped_unknown_category: annotations of categories not in ``categories`` (skipped).
        skipped_outside_images_dir: images whose ``file_name`` leads out of
            the images folder (skipped with their annotations, ``skip_unknown=True``).
        mask_pixels_outside_box: mask pixels outside their annotation's box (lost by the crop).
    """

    images: int = 0
    annotations: int = 0
    keypoints: int = 0
    clipped: int = 0
    skipped_unknown_image: int = 0
    skipped_unknown_category: int = 0
    skipped_outside_images_dir: int = 0
    mask_pixels_outside_box: int = 0
    sample_ids: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.images} images, {self.annotations} annotations ({self.keypoints} with keypoints)"
        extra = [
            f"{self.clipped} boxes clipped to their image" if self.clipped else "",
            f"{self.skipped_unknown_image} annotations of unknown images skipped" if self.skipped_unknown_image else "",
            f"{self.skipped_unknown_category} annotations of unknown categories skipped"
            if self.skipped_unknown_category else "",
            f"{self.skipped_outside_images_dir} images outside the images folder skipped"
            if self.skipped_outside_images_dir else "",
        ]
        return text + "".join(f"; {e}" for e in extra if e)


def _mask_api() -> Any:
    try:
        from pycocotools import mask
    except ImportError:
        raise RequirementsError(
            "COCO masks (polygons and RLE) need pycocotools: pip install pycocotools"
        ) from None
    return mask


def coco_mask(segmentation: Any, width: int, height: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as a
    boolean ``(height, width)`` array."""
    api = _mask_api()
    if isinstance(segmentation, list):  # polygons
        rle = api.merge(api.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = api.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise DatasetError(f"Unknown COCO segmentation {segmentation!r:.100}: expected polygons or an RLE dict")
    with warnings.catch_warnings():  # pycocotools' own numpy 2 deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        return api.decode(rle).astype(bool)


def _load(labels_json: Any) -> Dict[str, Any]:
    if isinstance(labels_json, Mapping):
        return dict(labels_json)
    path = os.fspath(labels_json)
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(f"COCO labels file {path!r} does not exist") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"COCO labels file {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or "images" not in data:
        raise FormatError(path, "expected a COCO object with 'images', 'annotations', 'categories'")
    return data


def import_coco(
    dataset: Any,
    labels_json: Any,
    images_dir: Any,
    label_types: Iterable[str] = COCO_LABEL_TYPES,
    label_field: str = "ground_truth",
    skip_unknown: bool = False,
) -> CocoImportReport:
    """Adds a COCO file's images and annotations to ``dataset``, whole or not at all.

    Boxes go to ``label_field`` (Detections, with masks when
    ``"segmentations"`` is in ``label_types``), keypoints to
    ``label_field + "_keypoints"`` (Keypoints). The categories (with their
    keypoint names and skeletons) are kept in ``dataset.info["coco_categories"]``.

    The whole file is checked before anything is written (see
    :mod:`modelzoo.formats.coco_checks`); should writing fail anyway, the
    samples already added are removed and ``dataset.info`` is left as it was.

    Args:
        dataset: the dataset to add to.
        labels_json: the path of the COCO JSON file (or its parsed dict).
        images_dir: the folder every ``file_name`` is in (a name leading out of it is refused).
        label_types: any of ``"detections"``, ``"segmentations"``, ``"keypoints"``.
        label_field: the field of the boxes.
        skip_unknown: skip annotations whose image or category is not in the
            file, and images whose ``file_name`` leads out of ``images_dir``
            (counted in the report), instead of raising.

    Raises:
        FormatError: a malformed entry (naming the file, the entry and the
            key), a ``file_name`` outside ``images_dir``, a mask that does not
            match its image's size, or more categories than the database can keep.
        DatasetError: annotations point at unknown images or categories (the
            first few are listed), or an unknown label type.
    """
    types = tuple(label_types)
    bad = [t for t in types if t not in COCO_LABEL_TYPES]
    if bad:
        raise DatasetError(f"Unknown COCO label types {bad}: choose from {list(COCO_LABEL_TYPES)}")
    data = _load(labels_json)
    where = "<dict>" if isinstance(labels_json, Mapping) else os.fspath(labels_json)
    images_dir = os.path.abspath(os.fspath(images_dir))
    checked = check_coco(data, where, images_dir, types, skip_unknown)
    categories = checked.categories
    kept_categories = [
        {k: v for k, v in c.items() if k in ("id", "name", "supercategory", "keypoints", "skeleton")}
        for c in categories.values()
    ]
    _check_categories_fit(kept_categories, where)
    report = CocoImportReport(
        skipped_unknown_image=checked.skipped_unknown_image,
        skipped_unknown_category=checked.skipped_unknown_category,
        skipped_outside_images_dir=checked.skipped_outside_images_dir,
    )
    had_categories = "coco_categories" in dataset.info
    previous = dataset.info.get("coco_categories")
    try:
        batch: List[Sample] = []
        for image in checked.images:
            batch.append(_sample(image, checked.by_image.get(image["id"], ()), categories, images_dir, types,
                                 label_field, report))
            if len(batch) >= _BATCH:
                report.sample_ids += dataset.add_samples(batch)
                batch = []
        if batch:
            report.sample_ids += dataset.add_samples(batch)
        report.images = len(report.sample_ids)
        dataset.info["coco_categories"] = kept_categories
        dataset.save_info()
    except BaseException:
        _roll_back(dataset, report.sample_ids, had_categories, previous)
        raise
    return report


def _check_categories_fit(categories: List[Dict[str, Any]], where: str) -> None:
    """The categories go in the dataset's record, which the database caps at 16 MiB: refused before writing."""
    import bson

    size = len(bson.encode({"coco_categories": categories}))
    if size > _MAX_CATEGORIES_BYTES:
        raise FormatError(
            where, f"its {len(categories)} categories take {size} bytes, more than the {_MAX_CATEGORIES_BYTES} "
            "a dataset's record can keep; nothing was imported. Import a file with fewer categories "
            "(or drop the unused ones).", "categories",
        )


def _roll_back(dataset: Any, sample_ids: List[str], had_categories: bool, previous: Any) -> None:
    """Removes what a failed import added (best effort: the original error is what the caller sees)."""
    try:
        if sample_ids:
            dataset.delete_samples(sample_ids)
        if had_categories:
            dataset.info["coco_categories"] = previous
        else:
            dataset.info.pop("coco_categories", None)
    except Exception as e:  # pragma: no cover - the database itself is gone
        warnings.warn(f"COCO import: the samples added before the failure could not all be removed: {e}", stacklevel=3)


def _sample(
    image: Mapping[str, Any], anns: Iterable[Mapping[str, Any]], categories: Mapping[Any, Mapping[str, Any]],
    images_dir: str, types: Tuple[str, ...], label_field: str, report: CocoImportReport,
) -> Sample:
    width, height = int(image["width"]), int(image["height"])
    dets: List[Detection] = []
    kps: List[Keypoint] = []
    for ann in anns:
        det = _detection(ann, categories[ann["category_id"]]["name"], width, height, "segmentations" in types, report)
        if det is None:
            continue
        if "detections" in types or "segmentations" in types:
            dets.append(det)
        if "keypoints" in types and ann.get("keypoints"):
            kps.append(_keypoint(ann, det, width, height))
    fields: Dict[str, Any] = {}
    if "detections" in types or "segmentations" in types:
        fields[label_field] = Detections(detections=dets)
    if "keypoints" in types:
        fields[label_field + "_keypoints"] = Keypoints(keypoints=kps)
    report.annotations += len(dets)
    report.keypoints += len(kps)
    filepath = inside(images_dir, image["file_name"])
    assert filepath is not None  # check_coco kept only such images
    return Sample(
        filepath=filepath,
        metadata=ImageMetadata(width=width, height=height),
        coco_id=image["id"],
        **fields,
    )


def _detection(
    ann: Mapping[str, Any], name: str, width: int, height: int, with_mask: bool, report: CocoImportReport
) -> Optional[Detection]:
    x, y, w, h = (float(v) for v in ann.get("bbox") or (0, 0, 0, 0))
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    if (x1, y1, x2, y2) != (x, y, x + w, y + h):
        report.clipped += 1
    box = [x1 / width, y1 / height, (x2 - x1) / width, (y2 - y1) / height]
    attributes: Dict[str, Any] = {"iscrowd": int(ann.get("iscrowd", 0) or 0), "coco_id": ann.get("id")}
    if ann.get("area") is not None:
        attributes["area"] = float(ann["area"])
    score = ann.get("score")
    det = Detection.from_trusted(  # ~5x faster than Detection(...) for the many annotations of a file
        label=str(name), bounding_box=check_box(box, f"COCO annotation {ann.get('id')!r}: bbox"),
        confidence=None if score is None else float(score), attributes=attributes,
    )
    if with_mask and ann.get("segmentation"):
        mask, lost = crop_to_box(coco_mask(ann["segmentation"], width, height), box)
        report.mask_pixels_outside_box += lost
        det.mask = mask
    return det


def _keypoint(ann: Mapping[str, Any], det: Detection, width: int, height: int) -> Keypoint:
    flat = [float(v) for v in ann["keypoints"]]
    points, visibility = [], []
    for i in range(0, len(flat) - 2, 3):
        px, py, v = flat[i : i + 3]
        visibility.append(int(v))
        points.append([px / width, py / height] if v > 0 else [float("nan"), float("nan")])
    return Keypoint(
        label=det.label, points=points, bounding_box=det.bounding_box,
        attributes={"coco_id": ann.get("id"), "visibility": visibility},
    )


def _category_ids(dataset: Any, names: Iterable[str]) -> Dict[str, Dict[str, Any]]:
    known = {c["name"]: dict(c) for c in (dataset.info.get("coco_categories") or [])} if hasattr(dataset, "info") else {}
    next_id = max([c["id"] for c in known.values()], default=0) + 1
    for name in sorted(set(names) - set(known)):
        known[name] = {"id": next_id, "name": name}
        next_id += 1
    return known


def export_coco(
    collection: Any,
    path: Any,
    label_field: str,
    keypoints_field: Optional[str] = None,
    images_root: Optional[str] = None,
) -> int:
    """Writes a collection's ``label_field`` (Detections) as a COCO JSON file.

    Masks are written as compressed RLE (image-sized), keypoints from
    ``keypoints_field`` are attached to the detection with the same
    ``coco_id`` attribute; ``iscrowd`` and ``area`` come from the attributes
    (area: the mask's pixels, else the box's, when absent); a confidence
    becomes ``score``. The images keep their ``coco_id`` when they have one.

    Args:
        collection: a dataset or view.
        path: the JSON file to write.
        label_field: a Detections field.
        keypoints_field: a Keypoints field, optional.
        images_root: ``file_name`` is relative to this (default: the common
            directory of the images).

    Returns:
        the number of annotations written.
    """
    fields = ["filepath", "metadata", "coco_id", label_field] + ([keypoints_field] if keypoints_field else [])
    rows = list(zip(*(collection.values(f) for f in fields)))
    if images_root is None:
        paths = [r[0] for r in rows]
        images_root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    names = [d.label for r in rows if r[3] is not None for d in r[3].detections]
    cats = _category_ids(collection.dataset if hasattr(collection, "dataset") else collection, names)
    used_image_ids = {r[2] for r in rows if r[2] is not None}
    next_image = max([i for i in used_image_ids if isinstance(i, int)], default=0) + 1
    images, annotations = [], []
    next_ann = 1
    for filepath, meta, coco_id, dets, *kp in rows:
        width, height = _size(filepath, meta)
        if coco_id is None:
            coco_id, next_image = next_image, next_image + 1
        images.append({"id": coco_id, "file_name": os.path.relpath(filepath, images_root), "width": width, "height": height})
        by_coco_id = {}
        if kp and kp[0] is not None:
            by_coco_id = {k.attributes.get("coco_id"): k for k in kp[0].keypoints if k.attributes.get("coco_id") is not None}
        for det in dets.detections if dets is not None else ():
            ann, next_ann = _annotation(det, coco_id, cats, width, height, next_ann)
            keypoint = by_coco_id.get(det.attributes.get("coco_id"))
            if keypoint is not None:
                ann["keypoints"], ann["num_keypoints"] = _coco_keypoints(keypoint, width, height)
            annotations.append(ann)
    out = {"images": images, "annotations": annotations, "categories": sorted(cats.values(), key=lambda c: c["id"])}
    with atomic_write(path) as f:
        json.dump(out, f)
    return len(annotations)


def _size(filepath: str, meta: Any) -> Tuple[int, int]:
    if meta is not None and getattr(meta, "width", None) and getattr(meta, "height", None):
        return int(meta.width), int(meta.height)
    info = read_image_metadata(filepath)
    return info.width, info.height


def _annotation(
    det: Detection, image_id: Any, cats: Mapping[str, Mapping[str, Any]], width: int, height: int, next_id: int
) -> Tuple[Dict[str, Any], int]:
    x, y, w, h = det.bounding_box or (0.0, 0.0, 0.0, 0.0)
    attrs = det.attributes or {}
    ann_id = attrs.get("coco_id")
    if ann_id is None:
        ann_id, next_id = next_id, next_id + 1
    else:
        next_id = max(next_id, int(ann_id) + 1) if isinstance(ann_id, int) else next_id
    ann: Dict[str, Any] = {
        "id": ann_id, "image_id": image_id, "category_id": cats[det.label]["id"],
        "bbox": [x * width, y * height, w * width, h * height], "iscrowd": int(attrs.get("iscrowd", 0) or 0),
    }
    if det.mask is not None:
        api = _mask_api()
        rle = api.encode(np.asfortranarray(full_mask(det.mask, det.bounding_box, width, height).astype(np.uint8)))
        ann["segmentation"] = {"size": [height, width], "counts": rle["counts"].decode()}
        area = float(api.area(rle))
    else:
        area = w * width * h * height
    ann["area"] = float(attrs["area"]) if attrs.get("area") is not None else area
    if det.confidence is not None:
        ann["score"] = float(det.confidence)
    return ann, next_id


def _coco_keypoints(kp: Keypoint, width: int, height: int) -> Tuple[List[float], int]:
    visibility = (kp.attributes or {}).get("visibility")
    flat: List[float] = []
    for i, (px, py) in enumerate(kp.points):
        missing = px != px or py != py  # NaN
        v = 0 if missing else int(visibility[i]) if visibility and i < len(visibility) else 2
        flat += [0.0, 0.0, 0] if missing else [px * width, py * height, v]
    return flat, sum(1 for i in range(2, len(flat), 3) if flat[i] > 0)
