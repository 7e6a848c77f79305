"""scikit-learn's handwritten digits as image files, with the fixed split the
``digits-cnn-torch`` zoo model was trained and evaluated on.

The split is stratified, 25% held out, by ``random_state=0``: the training
script (``training/train_digits.py``), the tests and the demo all use
:func:`digits_split`, so the held-out images are never trained on.
"""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np

__all__ = ["CLASSES", "SPLIT_SEED", "digits_split", "write_digit_images"]

CLASSES = [str(i) for i in range(10)]
SPLIT_SEED = 0
TEST_FRACTION = 0.25


def digits_split(seed: int = SPLIT_SEED) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_images, train_labels, test_images, test_labels)``; images are
    uint8 ``(N, 8, 8)`` in ``[0, 255]`` (the dataset's 0-16 scaled), labels int64.

    Needs scikit-learn (bundled data, no download).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    train, test = train_test_split(idx, test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    return images[train], labels[train], images[test], labels[test]


def write_digit_images(images: np.ndarray, labels: np.ndarray, directory: str, scale: int = 1) -> List[Tuple[str, str]]:
    """Writes each image as a grayscale PNG ``<i>_label<k>.png``; returns ``(path, label)`` pairs.

    Args:
        scale: enlarge each image by this integer factor (nearest neighbour), for viewing.
    """
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    out = []
    for i, (img, label) in enumerate(zip(images, labels)):
        path = os.path.join(directory, f"{i:04d}_label{int(label)}.png")
        pil = Image.fromarray(img, mode="L")
        if scale > 1:
            pil = pil.resize((8 * scale, 8 * scale), Image.Resampling.NEAREST)
        pil.save(path)
        out.append((path, CLASSES[int(label)]))
    return out
