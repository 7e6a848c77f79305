"""Instance masks between their two forms: inside the box, and image-sized.

A :class:`~modelzoo.labels.Detection` keeps its mask at the size of its box:
the mask's top-left pixel is at ``(round(x * width), round(y * height))`` of
the image, clipped to the image (the convention of the instance segmenter's
processor): a box extending past the image has a mask of its visible part. Evaluation,
drawing and COCO export need the image-sized mask; COCO import needs the crop.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

__all__ = ["box_pixels", "full_mask", "crop_to_box"]


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
