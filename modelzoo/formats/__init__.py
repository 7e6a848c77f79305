"""Ground truth in and out: COCO detection files, and a folder per class."""

from .coco import COCO_LABEL_TYPES, CocoImportReport, coco_mask, export_coco, import_coco
from .datasets import dataset_from_coco, dataset_from_image_classification_dir
from .folders import image_classification_classes, import_image_classification_dir

__all__ = [
    "COCO_LABEL_TYPES",
    "CocoImportReport",
    "coco_mask",
    "export_coco",
    "import_coco",
    "image_classification_classes",
    "import_image_classification_dir",
    "dataset_from_coco",
    "dataset_from_image_classification_dir",
]
