"""Instance masks between their two forms: inside the box, and image-sized.

A :class:`~modelzoo.labels.Detection` keeps its mask at the size of its box:
the mask's top-left pixel is at ``(round(x * width), round(y * height))`` of
the image, clipped to the image (the convention of the instance segmenter's
processor): a box extending past the image has a mask of its visible part. Evaluation,
drawing and COCO export need the image-sized mask; COCO import needs the crop.

COCO's masks come from files: :func:`check_rle` and :func:`check_polygon`
check one against its image's size before anything is decoded (pycocotools
allocates what an RLE's ``size`` declares, and writes past its buffer when
the runs add up to more than that; a polygon's cost grows with its edges'
length).
"""

from __future__ import annotations

import math
from typing import Any, List, Sequence, Tuple, Union

import numpy as np

__all__ = ["box_pixels", "full_mask", "crop_to_box", "rle_counts", "check_rle", "check_polygon"]


def box_pixels(box: Sequence[float], width: int, height: int) -> Tuple[int, int, int, int]:
    """The pixel rows/columns ``(c0, r0, c1, r1)`` a relative box covers
    (rounded, clipped to the image, at least one pixel each way)."""
    x, y, w, h = (float(v) for v in box)
    c0 = min(max(int(round(x * width)), 0), max(width - 1, 0))
    r0 = min(max(int(round(y * height)), 0), max(height - 1, 0))
    c1 = min(max(int(round((x + w) * width)), c0 + 1), width)
    r1 = min(max(int(round((y + h) * height)), r0 + 1), height)
    return c0, r0, c1, r1


def full_mask(mask: np.ndarray, box: Sequence[float], width: int, height: int) -> np.ndarray:
    """The boolean ``(height, width)`` image mask of a box-sized ``mask``.

    Args:
        mask: ``(h, w)`` array covering ``box`` (any dtype; nonzero is inside).
        box: the relative ``[x, y, width, height]`` the mask belongs to.
    """
    out = np.zeros((height, width), dtype=bool)
    c0, r0, _, _ = box_pixels(box, width, height)
    m = np.asarray(mask) != 0
    h = min(m.shape[0], height - r0)
    w = min(m.shape[1], width - c0)
    if h > 0 and w > 0:
        out[r0 : r0 + h, c0 : c0 + w] = m[:h, :w]
    return out


def crop_to_box(image_mask: np.ndarray, box: Sequence[float]) -> Tuple[np.ndarray, int]:
    """The part of an image-sized mask inside ``box``, and how many of its
    pixels fell outside the box (lost by the crop).

    Returns:
        ``(mask, lost)``: a boolean ``(h, w)`` array and a pixel count.
    """
    m = np.asarray(image_mask) != 0
    height, width = m.shape
    c0, r0, c1, r1 = box_pixels(box, width, height)
    crop = m[r0:r1, c0:c1]
    lost = int(m.sum()) - int(crop.sum())
    return np.ascontiguousarray(crop), lost


def rle_counts(counts: Union[str, bytes]) -> List[int]:
    """The runs of a COCO compressed RLE string (pycocotools' ``rleFrString``),
    decoded without allocating the mask.

    Raises:
        ValueError: a character outside COCO's alphabet, a number cut off at
            the end, or a negative run.
    """
    text = counts.encode("ascii", "replace") if isinstance(counts, str) else bytes(counts)
    out: List[int] = []
    p, n = 0, len(text)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise ValueError("the RLE string ends inside a number")
            c = text[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"the RLE string holds {chr(text[p])!r} at {p}, outside COCO's alphabet ('0' to 'o')")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        if x < 0:
            raise ValueError(f"the RLE string decodes to a negative run ({x}) at run {len(out)}")
        out.append(x)
    return out


def check_rle(segmentation: Any, width: int, height: int) -> None:
    """Checks a COCO RLE dict (``{"size": [h, w], "counts": ...}``, compressed
    or not) against its image's ``width`` and ``height``: same size, runs that
    add up to exactly ``width * height``.

    Raises:
        ValueError: what is wrong, with the numbers.
    """
    size = segmentation.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)):
        raise ValueError(f"'size' must be [height, width], got {size!r:.100}")
    if [int(size[0]), int(size[1])] != [height, width]:
        raise ValueError(f"the RLE's size {list(size)} is not its image's [height, width] = [{height}, {width}]")
    counts = segmentation.get("counts")
    if isinstance(counts, (str, bytes)):
        runs = rle_counts(counts)
    elif isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts):
        runs = [int(c) for c in counts]
    else:
        raise ValueError("'counts' must be a COCO RLE string or a list of non-negative integers")
    total = sum(runs)
    if total != width * height:
        raise ValueError(f"the RLE's runs cover {total} pixels, its image has {width}x{height} = {width * height}")


def check_polygon(polygons: Any, width: int, height: int) -> None:
    """Checks COCO polygons (a list of ``[x1, y1, x2, y2, ...]``): at least
    three points each, finite, and no farther from the image than its own
    size (a point at 1e9 would cost pycocotools time and memory in
    proportion; points a little outside are kept, as COCO's own files have them).

    Raises:
        ValueError: what is wrong, naming the polygon.
    """
    if not isinstance(polygons, list) or not polygons:
        raise ValueError("polygons must be a non-empty list of [x1, y1, x2, y2, ...] lists")
    for i, poly in enumerate(polygons):
        if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
            raise ValueError(f"polygon {i} must be a list of at least 3 points, [x1, y1, x2, y2, x3, y3, ...]")
        for j, v in enumerate(poly):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"polygon {i}: coordinate {j} is {v!r:.50}, not a finite number")
            limit = width if j % 2 == 0 else height
            if not -limit <= v <= 2 * limit:
                raise ValueError(
                    f"polygon {i}: coordinate {j} ({v:g}) is far outside its {width}x{height} image"
                )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) or (isinstance(v, float) and v.is_integer())
