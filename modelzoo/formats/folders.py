"""A folder per class (the ImageNet / torchvision ``ImageFolder`` layout) in.

::

    root/cat/001.jpg
    root/cat/sub/002.png
    root/dog/003.jpg

Every image under ``root/<class>/`` (at any depth) becomes a sample whose
``label_field`` is ``Classification(label="<class>")``; the classes are the
sorted subdirectory names, as ``ImageFolder`` sorts them.
"""

from __future__ import annotations

import os
from typing import Any, List

from ..errors import DatasetError
from ..labels import Classification
from ..media import list_image_files

__all__ = ["image_classification_classes", "import_image_classification_dir"]


def image_classification_classes(root: str) -> List[str]:
    """The class names of an image-classification tree: its subdirectories, sorted."""
    if not os.path.isdir(root):
        raise DatasetError(f"Image classification directory {root!r} does not exist or is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DatasetError(
            f"{root!r} has no class subdirectories: expected root/<class>/<image> "
            "(use Dataset.from_images_dir for a folder of unlabelled images)"
        )
    return classes


def import_image_classification_dir(dataset: Any, root: Any, label_field: str = "ground_truth") -> Any:
    """Adds the images of an ``ImageFolder`` tree to ``dataset`` with their classes.

    Returns:
        the ingest report of :meth:`Dataset.add_images`; the classes are kept
        in ``dataset.info["classes"]``.
    """
    root = os.path.abspath(os.fspath(root))
    classes = image_classification_classes(root)
    paths, labels, skipped = [], [], []
    for name in classes:
        images, others = list_image_files(os.path.join(root, name), recursive=True)
        paths += images
        labels += [name] * len(images)
        skipped += others
    report = dataset.add_images(paths, _skipped=skipped)
    dataset.set_values(label_field, dict(zip(report.sample_ids, (Classification(label=c) for c in labels))))
    dataset.info["classes"] = classes
    dataset.save_info()
    return report
