"""Reading what we need to know about media files, without decoding pixels.

Image sizes are those of the upright image: a JPEG whose EXIF orientation
says "rotated 90 degrees" (a phone photo held upright) reports the rotated
width and height, as it is decoded (see :mod:`modelzoo.image_io`), unless
``exif_orientation=False`` keeps the stored pixel order. Videos are probed
with PyAV (:func:`modelzoo.video.read_video_metadata`).
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Tuple

from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "is_image_path",
    "is_video_path",
    "list_image_files",
    "list_media_files",
    "read_image_metadata",
    "exif_orientation_of",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv", ".flv", ".ts", ".mts", ".3gp", ".ogv"}
)

#: EXIF orientations (2-8) whose upright image swaps width and height
_TRANSPOSED = frozenset({5, 6, 7, 8})


def is_video_path(path: str) -> bool:
    """Whether ``path`` has a video file extension (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def is_image_path(path: str) -> bool:
    """Whether ``path`` has an image file extension (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(root: str, recursive: bool = True) -> Tuple[List[str], List[str]]:
    """Lists the image files under ``root``, sorted, and the other files skipped.

    Returns:
        ``(image_paths, skipped_paths)``, absolute paths.
    """
    return _list_files(root, recursive, is_image_path)


def list_media_files(root: str, recursive: bool = True) -> Tuple[List[str], List[str], List[str]]:
    """Lists the image and video files under ``root``, sorted, and the other files.

    Returns:
        ``(image_paths, video_paths, skipped_paths)``, absolute paths.
    """
    images, others = _list_files(root, recursive, is_image_path)
    videos = [p for p in others if is_video_path(p)]
    return images, videos, [p for p in others if not is_video_path(p)]


def _list_files(root: str, recursive: bool, wanted: Callable[[str], bool]) -> Tuple[List[str], List[str]]:
    images: List[str] = []
    skipped: List[str] = []
    if recursive:
        walker: Iterator = os.walk(root)
    else:
        walker = iter([(root, [], [e.name for e in os.scandir(root) if e.is_file()])])
    for dirpath, dirnames, filenames in walker:
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.abspath(os.path.join(dirpath, name))
            (images if wanted(path) else skipped).append(path)
    return images, skipped


@dataclass
class ImageInfo:
    width: int
    height: int
    channels: int
    size_bytes: int
    mime_type: str
    mode: str


def exif_orientation_of(img: Any) -> int:
    """The EXIF orientation (1-8) of an opened PIL image; 1 when it has none.
    Reads the already parsed header only (no EXIF, no cost)."""
    if "exif" not in img.info:
        return 1
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block: decode as stored
        return 1
    return value if 1 <= value <= 8 else 1


def read_image_metadata(path: str, exif_orientation: bool = True) -> ImageInfo:
    """Reads an image's size, channels and type from its header.

    Args:
        path: the image file.
        exif_orientation: report the size of the upright image (EXIF
            orientation applied, as the decoders do); False: as stored.

    Raises:
        OSError: the file is missing or unreadable, or PIL cannot identify it.
    """
    size_bytes = os.path.getsize(path)
    with Image.open(path) as img:
        width, height = img.size
        if exif_orientation and exif_orientation_of(img) in _TRANSPOSED:
            width, height = height, width
        mode = img.mode
        channels = len(img.getbands())
        fmt = img.format
    mime = Image.MIME.get(fmt or "") or mimetypes.guess_type(path)[0] or "application/octet-stream"
    return ImageInfo(width, height, channels, size_bytes, mime, mode)
