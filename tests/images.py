"""Real image files for tests: scikit-image's photographs, and broken ones."""

from __future__ import annotations

import os
from typing import Dict, List, Sequence

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def photo(name: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, name)()


def write_good_images(root: str, n: int = 6, size=(96, 72)) -> List[str]:
    """``n`` JPEG/PNG files made from real photographs (crops, resized)."""
    os.makedirs(root, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.fromarray(photo(PHOTOS[i % len(PHOTOS)])).convert("RGB")
        if i >= len(PHOTOS):
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        img = img.resize(size)
        ext = "jpg" if i % 2 == 0 else "png"
        path = os.path.join(root, f"good_{i:03d}.{ext}")
        img.save(path)
        paths.append(path)
    return paths


def write_photos(root: str, names: Sequence[str], scale: int = 4) -> List[str]:
    """One file per named photograph at ``1/scale`` of its size, in RGB,
    JPEG and PNG in turn."""
    os.makedirs(root, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        img = Image.fromarray(photo(name)).convert("RGB")
        img = img.resize((img.width // scale, img.height // scale))
        path = os.path.join(root, f"{name}.{'jpg' if i % 2 == 0 else 'png'}")
        img.save(path)
        paths.append(path)
    return paths


def write_odd_images(root: str) -> Dict[str, str]:
    """Unusual but valid images: grayscale, RGBA, palette, 16-bit, CMYK."""
    os.makedirs(root, exist_ok=True)
    base = Image.fromarray(photo("chelsea")).convert("RGB").resize((80, 60))
    out = {}
    out["grayscale"] = os.path.join(root, "gray.png")
    base.convert("L").save(out["grayscale"])
    out["rgba"] = os.path.join(root, "rgba.png")
    base.convert("RGBA").save(out["rgba"])
    out["palette"] = os.path.join(root, "palette.png")
    base.convert("P").save(out["palette"])
    out["16bit"] = os.path.join(root, "depth16.png")
    arr16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(arr16).save(out["16bit"])
    out["cmyk"] = os.path.join(root, "cmyk.jpg")
    base.convert("CMYK").save(out["cmyk"])
    return out


def write_bad_images(root: str) -> Dict[str, str]:
    """Files that look like images and are not readable ones."""
    os.makedirs(root, exist_ok=True)
    good = Image.fromarray(photo("coffee")).convert("RGB").resize((64, 48))
    out = {}
    out["corrupt_jpeg"] = os.path.join(root, "corrupt.jpg")
    with open(out["corrupt_jpeg"], "wb") as f:
        f.write(b"\xff\xd8\xff\xe0" + os.urandom(2000))
    out["truncated_png"] = os.path.join(root, "truncated.png")
    good.save(out["truncated_png"])
    data = open(out["truncated_png"], "rb").read()
    with open(out["truncated_png"], "wb") as f:
        f.write(data[: len(data) // 2])
    out["zero_bytes"] = os.path.join(root, "empty.jpg")
    open(out["zero_bytes"], "wb").close()
    out["missing"] = os.path.join(root, "missing.jpg")  # never written
    return out
