"""Reading what we need to know about image files, without decoding pixels."""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from typing import Iterator, List, Tuple

from PIL import Image

__all__ = ["IMAGE_EXTENSIONS", "is_image_path", "list_image_files", "read_image_metadata"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm"}
)


def is_image_path(path: str) -> bool:
    """Whether ``path`` has an image file extension (case-insensitive)."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(root: str, recursive: bool = True) -> Tuple[List[str], List[str]]:
    """Lists the image files under ``root``, sorted, and the other files skipped.

    Returns:
        ``(image_paths, skipped_paths)``, absolute paths.
    """
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
            (images if is_image_path(path) else skipped).append(path)
    return images, skipped


@dataclass
class ImageInfo:
    width: int
    height: int
    channels: int
    size_bytes: int
    mime_type: str
    mode: str


def read_image_metadata(path: str) -> ImageInfo:
    """Reads an image's size, channels and type from its header.

    Raises:
        OSError: the file is missing or unreadable, or PIL cannot identify it.
    """
    size_bytes = os.path.getsize(path)
    with Image.open(path) as img:
        width, height = img.size
        mode = img.mode
        channels = len(img.getbands())
        fmt = img.format
    mime = Image.MIME.get(fmt or "") or mimetypes.guess_type(path)[0] or "application/octet-stream"
    return ImageInfo(width, height, channels, size_bytes, mime, mode)
