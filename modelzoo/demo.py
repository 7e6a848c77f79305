"""``make demo`` / ``python -m modelzoo.demo``: the zoo end to end, offline.

1. Writes scikit-image's sample photographs as files and ingests them into a
   dataset in the embedded database; applies ``mobilenet-v2-imagenet-torch``
   (real ImageNet weights, found on this machine by checksum).
2. Writes the held-out handwritten digits (never trained on) as PNG files,
   ingests them with their true labels, applies ``digits-cnn-torch`` (weights
   trained by ``training/train_digits.py`` and shipped with modelzoo) and
   prints the accuracy.
3. Writes a contact sheet PNG with the predicted labels drawn on the images.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .text import format_table

__all__ = ["main", "PHOTOS"]

#: scikit-image sample images that ship inside the package (no download)
PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "motorcycle_left", "camera", "hubble_deep_field", "retina")


def _write_photos(directory: str) -> List[str]:
    import skimage.data
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    paths = []
    for name in PHOTOS:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            image = loader()
        except Exception:  # a sample that would need a download: skip it (offline demo)
            continue
        path = os.path.join(directory, f"{name}.png")
        Image.fromarray(np.asarray(image)).save(path)
        paths.append(path)
    return paths


def _tile(path: str, caption: str, size: int, color: Tuple[int, int, int]):
    from PIL import Image, ImageDraw, ImageOps

    with Image.open(path) as opened:
        rgb = opened.convert("RGB")
    resample = Image.Resampling.NEAREST if max(rgb.size) < size // 2 else Image.Resampling.BILINEAR
    img = ImageOps.pad(rgb, (size, size), method=resample, color=(32, 32, 32))
    draw = ImageDraw.Draw(img)
    band = max(14, size // 9)
    draw.rectangle([0, size - band, size, size], fill=(0, 0, 0))
    draw.text((4, size - band + 2), caption[: max(4, size // 7)], fill=color)
    return img


def contact_sheet(
    items: Sequence[Tuple[str, str, Tuple[int, int, int]]], path: str, tile: int = 160, columns: int = 8
) -> str:
    """Writes a grid of ``(image path, caption, caption color)`` tiles to ``path``."""
    from PIL import Image

    rows = (len(items) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, max(rows, 1) * tile), (255, 255, 255))
    for i, (p, caption, color) in enumerate(items):
        sheet.paste(_tile(p, caption, tile, color), ((i % columns) * tile, (i // columns) * tile))
    sheet.save(path)
    return path


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelzoo.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", default=os.path.join(os.path.expanduser("~"), ".modelzoo", "demo"),
        help="where the images and the contact sheet are written (default: ~/.modelzoo/demo)",
    )
    parser.add_argument("--digits", type=int, default=0, help="use only the first N held-out digits (default: all 450)")
    args = parser.parse_args(argv)

    import modelzoo as mz
    from modelzoo.labels import Classification
    from modelzoo.zoo.digits import digits_split, write_digit_images

    t0 = time.perf_counter()
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)

    # -- 1. photographs x ImageNet ----------------------------------------------------------
    photos = _write_photos(os.path.join(workdir, "photos"))
    photo_ds = mz.Dataset.from_images(photos, name="demo-photos", overwrite=True)
    imagenet = mz.load_zoo_model("mobilenet-v2-imagenet-torch")
    photo_ds.apply_model(imagenet, label_field="imagenet", progress=False)
    rows = [
        (os.path.basename(p), lab.label if lab else "-", f"{lab.confidence:.2f}" if lab else "-")
        for p, lab in zip(photo_ds.values("filepath"), photo_ds.values("imagenet"))
    ]
    print(f"mobilenet-v2-imagenet-torch on {len(rows)} scikit-image photographs (dataset 'demo-photos'):\n")
    print(format_table(("IMAGE", "PREDICTION", "CONFIDENCE"), rows, rule=True))

    # -- 2. held-out digits x our trained model ----------------------------------------------
    _, _, test_images, test_labels = digits_split()
    if args.digits:
        test_images, test_labels = test_images[: args.digits], test_labels[: args.digits]
    written = write_digit_images(test_images, test_labels, os.path.join(workdir, "digits-heldout"))
    digit_ds = mz.Dataset("demo-digits", overwrite=True)
    ids = digit_ds.add_samples([p for p, _ in written])
    digit_ds.set_values("ground_truth", {i: Classification(label=t) for i, (_, t) in zip(ids, written)})
    digits_model = mz.load_zoo_model("digits-cnn-torch")
    report = digit_ds.apply_model(digits_model, label_field="prediction", progress=False)
    truth = [l.label for l in digit_ds.values("ground_truth")]
    preds = [l.label if l else None for l in digit_ds.values("prediction")]
    paths = digit_ds.values("filepath")
    correct = sum(p == t for p, t in zip(preds, truth))
    accuracy = correct / max(len(truth), 1)
    print(f"\ndigits-cnn-torch on {len(truth)} held-out digit images (dataset 'demo-digits'): {report}\n")
    shown = list(range(min(12, len(paths))))
    print(format_table(("IMAGE", "TRUE", "PREDICTED"), [(os.path.basename(paths[i]), truth[i], preds[i] or "-") for i in shown], rule=True))
    wrong = [i for i, (p, t) in enumerate(zip(preds, truth)) if p != t]
    print(f"\nheld-out accuracy: {accuracy:.2%} ({correct}/{len(truth)}); misclassified: "
          + (", ".join(f"{os.path.basename(paths[i])}->{preds[i]}" for i in wrong[:10]) or "none"))

    # -- 3. contact sheet ---------------------------------------------------------------------
    green, red, white = (90, 230, 90), (255, 80, 80), (255, 255, 255)
    items = [(p, lab, white) for p, (_, lab, _) in zip(photo_ds.values("filepath"), rows)]
    digit_items = wrong + [i for i in range(len(paths)) if i not in wrong]
    items += [
        (paths[i], f"{preds[i]} (true {truth[i]})" if preds[i] != truth[i] else f"pred {preds[i]}", red if preds[i] != truth[i] else green)
        for i in digit_items[: 32 - len(items) % 8]
    ]
    sheet = contact_sheet(items, os.path.join(workdir, "contact_sheet.png"))
    print(f"\ncontact sheet: {sheet}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
