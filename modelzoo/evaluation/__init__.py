"""Scoring predictions against ground truth, and remembering the scores.

* :func:`evaluate_classifications`: accuracy, per-class precision / recall /
  F1 / support, confusion matrix, top-k (the numbers of ``sklearn.metrics``);
* :func:`evaluate_detections`: COCO mAP@[.5:.95], AP per class, PR curves
  (the numbers of ``pycocotools``), per-object tp / fp / fn;
* :func:`evaluate_segmentations`: pixel accuracy, per-class IoU, mIoU;
* :func:`list_evaluations` / :func:`load_evaluation` / :func:`delete_evaluation`.

The dataset methods of the same names delegate here.
"""

from .evaluate import evaluate_classifications, evaluate_detections, evaluate_segmentations
from .results import (
    ClassificationResults,
    DetectionResults,
    EvaluationResults,
    SegmentationResults,
    results_from_dict,
)
from .store import delete_evaluation, evaluation_record, list_evaluations, load_evaluation, match_eval

__all__ = [
    "evaluate_classifications",
    "evaluate_detections",
    "evaluate_segmentations",
    "EvaluationResults",
    "ClassificationResults",
    "DetectionResults",
    "SegmentationResults",
    "results_from_dict",
    "list_evaluations",
    "load_evaluation",
    "delete_evaluation",
    "evaluation_record",
    "match_eval",
]
