"""Decoding images to what models take: uint8 RGB, whatever the file holds.

Grayscale, palette, RGBA/LA, CMYK and 16-bit images are converted, not
rejected. Images are decoded upright: their EXIF orientation (phone photos)
is applied, as OpenCV-based tools do, so boxes refer to the upright image;
``exif_orientation=False`` (on :func:`read_image`, :class:`DecodeImage`, the
loaders and ``TorchImageModelConfig``) keeps the stored pixel order. Errors (missing, truncated, not an image) raise ``OSError`` or
``ValueError`` with the path in the message; the engine records them per
sample.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import numpy as np
from PIL import Image

from .media import exif_orientation_of

__all__ = ["open_image", "to_rgb", "decode_rgb", "upright", "read_image", "DecodeImage"]


def open_image(path: str) -> Image.Image:
    """Opens ``path`` lazily (header only), with a message naming the file on failure."""
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: {path}") from None
    except Exception as e:
        raise OSError(f"Cannot open image {path}: {type(e).__name__}: {e}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB (16-bit and 32-bit ints are scaled, not clipped)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr8 = ((arr - lo) / (hi - lo or 1.0) * 255.0).round()
        elif mode == "I" and arr.max(initial=0) <= 255:
            arr8 = arr
        else:
            arr8 = arr.astype(np.float64) / 257.0  # 65535 -> 255
        arr8 = np.clip(arr8, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_rgb(img: Image.Image, path: str) -> Image.Image:
    """Decodes the pixels of an opened image and converts them to RGB; the
    one place a decoding error gets its message (naming ``path``)."""
    try:
        img.load()
    except Exception as e:
        raise OSError(f"Cannot decode image {path}: {type(e).__name__}: {e}") from None
    return to_rgb(img)


def upright(img: Image.Image, orientation: int) -> Image.Image:
    """``img`` (decoded) turned the way EXIF ``orientation`` (1-8) says is up."""
    method = _TRANSPOSE.get(orientation)
    return img if method is None else img.transpose(method)


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def read_image(
    path: str, draft_size: Optional[Tuple[int, int]] = None, exif_orientation: bool = True
) -> np.ndarray:
    """Reads an image file as a uint8 ``(H, W, 3)`` RGB array, upright.

    Args:
        path: the file.
        draft_size: for JPEGs, let libjpeg decode at a reduced scale no smaller
            than this ``(width, height)`` (fast, slightly different pixels).
        exif_orientation: apply the EXIF orientation; False keeps the stored
            pixel order.
    """
    with open_image(path) as img:
        orientation = exif_orientation_of(img) if exif_orientation else 1
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        return np.asarray(upright(decode_rgb(img, path), orientation))


class DecodeImage:
    """filepath -> uint8 HWC RGB array (upright), then ``transforms`` if
    given. Picklable, so DataLoader workers can run it.

    Args:
        transforms: applied to the decoded array.
        exif_orientation: apply the EXIF orientation (False: stored pixel order).
    """

    def __init__(self, transforms: Optional[Callable[[Any], Any]] = None, exif_orientation: bool = True):
        self.transforms = transforms
        self.exif_orientation = exif_orientation

    def __call__(self, filepath: str) -> Any:
        if not filepath:
            raise ValueError("sample has no filepath")
        image = read_image(filepath, exif_orientation=getattr(self, "exif_orientation", True))
        return self.load_array(image)

    def load_array(self, image: np.ndarray) -> Any:
        """An already decoded uint8 ``(H, W, 3)`` array (a video frame) -> the input."""
        return self.transforms(image) if self.transforms is not None else image
