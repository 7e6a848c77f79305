"""``make demo`` / ``python -m modelzoo.demo``: the zoo end to end, offline.

1. Writes scikit-image's sample photographs as files and ingests them into a
   dataset in the embedded database; applies ``mobilenet-v2-imagenet-torch``
   (real ImageNet weights, found on this machine by checksum).
2. Writes the held-out handwritten digits (never trained on) as PNG files,
   in a folder per class, imports them with
   ``Dataset.from_image_classification_dir``, applies ``digits-cnn-torch``
   (weights trained by ``training/train_digits.py`` and shipped with
   modelzoo) and evaluates it (``evaluate_classifications``).
3. Writes contact sheets with the labels drawn (``modelzoo.drawing``): the
   photographs with their ImageNet labels, the digits misclassified first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List, Optional, Sequence

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


def _write_class_folders(images: np.ndarray, labels: np.ndarray, root: str) -> List[str]:
    """Writes each digit as ``root/<label>/<i>.png`` (the ImageFolder layout)."""
    from PIL import Image

    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        folder = os.path.join(root, str(int(label)))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:04d}.png")
        Image.fromarray(img, mode="L").save(path)
        paths.append(path)
    return paths


def _concat(*views: object) -> List[object]:
    return [sample for view in views for sample in view]  # type: ignore[attr-defined]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelzoo.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", default=os.path.join(os.path.expanduser("~"), ".modelzoo", "demo"),
        help="where the images and the contact sheet are written (default: ~/.modelzoo/demo)",
    )
    parser.add_argument("--digits", type=int, default=0, help="use only the first N held-out digits (default: all 450)")
    args = parser.parse_args(argv)

    import modelzoo as mz
    from modelzoo.drawing import contact_sheet
    from modelzoo.zoo.digits import digits_split

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

    # -- 2. held-out digits x our trained model, evaluated ---------------------------------
    _, _, test_images, test_labels = digits_split()
    if args.digits:
        test_images, test_labels = test_images[: args.digits], test_labels[: args.digits]
    folder = os.path.join(workdir, "digits-heldout")
    _write_class_folders(test_images, test_labels, folder)
    digit_ds = mz.Dataset.from_image_classification_dir(folder, name="demo-digits", overwrite=True)
    digits_model = mz.load_zoo_model("digits-cnn-torch")
    report = digit_ds.apply_model(digits_model, label_field="prediction", progress=False, store_logits=True)
    print(f"\ndigits-cnn-torch on {len(digit_ds)} held-out digit images (dataset 'demo-digits'): {report}\n")
    results = digit_ds.evaluate_classifications(
        "prediction", "ground_truth", eval_key="eval", classes=digits_model.classes, k=2
    )
    results.print_report()
    wrong = digit_ds.match_eval("eval", "incorrect")
    print("misclassified: " + (", ".join(
        f"{os.path.basename(p)} (true {t}) -> {q}"
        for p, t, q in zip(wrong.values("filepath"), wrong.values("ground_truth.label"), wrong.values("prediction.label"))
    ) or "none"))

    # -- 3. contact sheets ----------------------------------------------------------------------
    sheet = contact_sheet(photo_ds, os.path.join(workdir, "contact_sheet.png"), ["imagenet"], n=len(photos), tile=192)
    right = digit_ds.match_eval("eval", "correct").limit(max(0, 32 - len(wrong)))
    digits_sheet = contact_sheet(  # the misclassified first, then correct ones
        _concat(wrong, right), os.path.join(workdir, "digits_sheet.png"), ["prediction", "ground_truth"], n=32, tile=96
    )
    print(f"\ncontact sheets: {sheet}, {digits_sheet}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
