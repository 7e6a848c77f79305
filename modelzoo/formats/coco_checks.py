"""A COCO file, checked whole before anything is imported: :func:`check_coco`.

A COCO file comes from elsewhere (a download, a labelling tool), so every
entry is checked before one sample is written: keys present and of the
right type, each ``file_name`` inside the images folder, each mask against
its image's size (:func:`modelzoo.masks.check_rle`, :func:`modelzoo.masks.check_polygon`)
before pycocotools decodes it. The first malformed entry raises
:class:`~modelzoo.errors.FormatError` naming the file, the entry and the key,
e.g. ``instances.json: annotations[12]['bbox']: ...``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import DatasetError, FormatError
from ..masks import check_polygon, check_rle

__all__ = ["CheckedCoco", "check_coco", "inside"]

_LISTED = 5


@dataclass
class CheckedCoco:
    """A checked COCO file: what to import.

    Attributes:
        images: the image entries to import, in file order.
        categories: category id -> its entry.
        by_image: image id -> its annotations (known image and category only).
        skipped_unknown_image / skipped_unknown_category / skipped_outside_images_dir: counts, as in the report.
    """

    images: List[Mapping[str, Any]] = field(default_factory=list)
    categories: Dict[Any, Mapping[str, Any]] = field(default_factory=dict)
    by_image: Dict[Any, List[Mapping[str, Any]]] = field(default_factory=dict)
    skipped_unknown_image: int = 0
    skipped_unknown_category: int = 0
    skipped_outside_images_dir: int = 0


def inside(images_dir: str, file_name: str) -> Optional[str]:
    """The path of ``file_name`` in ``images_dir`` (an absolute folder), or
    None when it leads out of it (``..``, an absolute path). Decided on the
    names, as the file says them: a symlink inside the folder is the folder
    owner's, and is followed."""
    path = os.path.normpath(os.path.join(images_dir, file_name))
    root = images_dir.rstrip(os.sep) or os.sep
    if path != root and path.startswith(root if root.endswith(os.sep) else root + os.sep):
        return path
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _first(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_LISTED])
    return shown + (f" (and {len(items) - _LISTED} more)" if len(items) > _LISTED else "")


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, section: str, index: int, key: Optional[str], reason: str) -> FormatError:
        return FormatError(self.where, reason, section, index, key)

    def entries(self, data: Mapping[str, Any], section: str, required: bool) -> List[Any]:
        value = data.get(section)
        if value is None and not required:
            return []
        if not isinstance(value, list):
            raise FormatError(self.where, f"'{section}' must be a list of objects, got {type(value).__name__}")
        for i, entry in enumerate(value):
            if not isinstance(entry, dict):
                raise self.fail(section, i, None, f"expected an object, got {type(entry).__name__}")
        return value

    def need(self, entry: Mapping[str, Any], section: str, index: int, key: str) -> Any:
        if key not in entry:
            raise self.fail(section, index, key, f"missing (an entry of '{section}' needs {key!r})")
        return entry[key]

    def category(self, i: int, cat: Mapping[str, Any]) -> None:
        if not _is_id(self.need(cat, "categories", i, "id")):
            raise self.fail("categories", i, "id", f"expected an integer or a string, got {cat['id']!r:.60}")
        if not isinstance(self.need(cat, "categories", i, "name"), str):
            raise self.fail("categories", i, "name", f"expected a string, got {cat['name']!r:.60}")

    def image(self, i: int, image: Mapping[str, Any]) -> None:
        if not _is_id(self.need(image, "images", i, "id")):
            raise self.fail("images", i, "id", f"expected an integer or a string, got {image['id']!r:.60}")
        name = self.need(image, "images", i, "file_name")
        if not isinstance(name, str) or not name or "\x00" in name:
            raise self.fail("images", i, "file_name", f"expected a file name, got {name!r:.100}")
        for key in ("width", "height"):
            v = self.need(image, "images", i, key)
            if not _is_number(v) or v != int(v) or v < 1:
                raise self.fail("images", i, key, f"expected a whole number of pixels >= 1, got {v!r:.60}")

    def annotation(self, i: int, ann: Mapping[str, Any], image: Mapping[str, Any], types: Tuple[str, ...]) -> None:
        bbox = ann.get("bbox")
        if bbox is not None and not (
            isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox) and bbox[2] >= 0 and bbox[3] >= 0
        ):
            raise self.fail("annotations", i, "bbox",
                            f"expected [x, y, width, height], 4 finite numbers, width and height >= 0; got {bbox!r:.100}")
        for key in ("score", "area"):
            if ann.get(key) is not None and not _is_number(ann[key]):
                raise self.fail("annotations", i, key, f"expected a number, got {ann[key]!r:.60}")
        if ann.get("iscrowd") is not None and ann["iscrowd"] not in (0, 1):
            raise self.fail("annotations", i, "iscrowd", f"expected 0 or 1, got {ann['iscrowd']!r:.60}")
        keypoints = ann.get("keypoints")
        if "keypoints" in types and keypoints:
            if not (isinstance(keypoints, list) and len(keypoints) % 3 == 0 and all(_is_number(v) for v in keypoints)):
                raise self.fail("annotations", i, "keypoints",
                                "expected [x1, y1, v1, x2, y2, v2, ...], finite numbers in threes")
        segmentation = ann.get("segmentation")
        if "segmentations" in types and segmentation:
            width, height = int(image["width"]), int(image["height"])
            try:
                if isinstance(segmentation, list):
                    check_polygon(segmentation, width, height)
                elif isinstance(segmentation, dict):
                    check_rle(segmentation, width, height)
                else:
                    raise ValueError(f"expected polygons or an RLE dict, got {type(segmentation).__name__}")
            except ValueError as e:
                raise self.fail("annotations", i, "segmentation", f"{e} (image {image['id']!r})") from None


def check_coco(
    data: Mapping[str, Any], where: str, images_dir: str, types: Tuple[str, ...], skip_unknown: bool
) -> CheckedCoco:
    """Checks a parsed COCO file whole (see the module docstring).

    Args:
        data: the parsed file.
        where: the file's name, for messages.
        images_dir: the absolute images folder.
        types: the label types imported (masks are checked only when imported).
        skip_unknown: skip (and count) annotations of unknown images or
            categories and images outside ``images_dir``, instead of raising.

    Raises:
        FormatError: a malformed entry, or a ``file_name`` outside the images folder.
        DatasetError: annotations of unknown images or categories (the first few listed).
    """
    check = _Checker(where)
    out = CheckedCoco()
    for i, cat in enumerate(check.entries(data, "categories", required=False)):
        check.category(i, cat)
        if cat["id"] in out.categories:
            raise check.fail("categories", i, "id", f"the id {cat['id']!r} is used by another category already")
        out.categories[cat["id"]] = cat
    images: Dict[Any, Mapping[str, Any]] = {}
    outside: set = set()
    for i, image in enumerate(check.entries(data, "images", required=True)):
        check.image(i, image)
        if image["id"] in images or image["id"] in outside:
            raise check.fail("images", i, "id", f"the id {image['id']!r} is used by another image already")
        if inside(images_dir, image["file_name"]) is None:
            if not skip_unknown:
                raise check.fail(
                    "images", i, "file_name",
                    f"{image['file_name']!r:.200} leads out of the images folder {images_dir!r}; "
                    "fix the file, or pass skip_unknown=True to skip such images (they are counted in the report)",
                )
            outside.add(image["id"])
            out.skipped_outside_images_dir += 1
            continue
        images[image["id"]] = image
        out.images.append(image)
    unknown_images: List[Any] = []
    unknown_categories: List[Any] = []
    for i, ann in enumerate(check.entries(data, "annotations", required=False)):
        image_id = check.need(ann, "annotations", i, "image_id")
        category_id = check.need(ann, "annotations", i, "category_id")
        if image_id in outside:
            continue
        try:
            image = images.get(image_id)
            known_category = category_id in out.categories
        except TypeError:  # an unhashable id: a list or an object
            raise check.fail("annotations", i, "image_id" if not _is_id(image_id) else "category_id",
                             "expected an integer or a string") from None
        if image is None:
            unknown_images.append(ann.get("id"))
            continue
        if not known_category:
            unknown_categories.append(ann.get("id"))
            continue
        check.annotation(i, ann, image, types)
        out.by_image.setdefault(image_id, []).append(ann)
    if (unknown_images or unknown_categories) and not skip_unknown:
        parts = []
        if unknown_images:
            parts.append(f"{len(unknown_images)} annotations point at images not in 'images' (ids {_first(unknown_images)})")
        if unknown_categories:
            parts.append(
                f"{len(unknown_categories)} annotations point at categories not in 'categories' "
                f"(ids {_first(unknown_categories)})"
            )
        raise DatasetError(
            f"COCO file {where}: " + "; ".join(parts)
            + ". Fix the file, or pass skip_unknown=True to skip them (they are counted in the report)."
        )
    out.skipped_unknown_image = len(unknown_images)
    out.skipped_unknown_category = len(unknown_categories)
    return out
