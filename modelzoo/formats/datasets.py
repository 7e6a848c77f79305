"""New datasets from ground-truth files: what ``Dataset.from_coco`` and
``Dataset.from_image_classification_dir`` do (those classmethods hand over
here; the core knows no file format, docs/architecture.md)."""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Type, TypeVar, Union

from .coco import COCO_LABEL_TYPES, import_coco
from .folders import image_classification_classes, import_image_classification_dir

__all__ = ["dataset_from_coco", "dataset_from_image_classification_dir"]

D = TypeVar("D")


def dataset_from_image_classification_dir(
    cls: Type[D], root: Union[str, os.PathLike], name: Optional[str] = None, label_field: str = "ground_truth",
    overwrite: bool = False,
) -> D:
    """A new ``cls`` dataset of a folder-per-class tree, its import report in
    ``dataset.ingest_report``; the tree is checked before anything is created.
    See :func:`~modelzoo.formats.import_image_classification_dir`."""
    image_classification_classes(os.path.abspath(os.fspath(root)))  # fail before creating anything
    dataset: Any = cls(name, overwrite=overwrite)  # type: ignore[call-arg]
    dataset.ingest_report = import_image_classification_dir(dataset, root, label_field)
    return dataset


def dataset_from_coco(
    cls: Type[D], labels_json: Any, images_dir: Union[str, os.PathLike], name: Optional[str] = None,
    label_types: Sequence[str] = COCO_LABEL_TYPES, label_field: str = "ground_truth", skip_unknown: bool = False,
    overwrite: bool = False,
) -> D:
    """A new ``cls`` dataset of a COCO file's images and annotations, its
    import report in ``dataset.coco_report``; the dataset is deleted again
    when the import fails. See :func:`~modelzoo.formats.import_coco`."""
    dataset: Any = cls(name, overwrite=overwrite)  # type: ignore[call-arg]
    try:
        dataset.coco_report = import_coco(dataset, labels_json, images_dir, label_types, label_field, skip_unknown)
    except Exception:
        dataset.delete()
        raise
    return dataset
