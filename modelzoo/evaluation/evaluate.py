"""The three evaluations as the dataset runs them: compute, write the
per-sample (and per-object) results under ``eval_key``, remember the results.

Each takes any sample collection (a dataset or a view: ``name``,
``collection_name``, ``query``); ``Dataset.evaluate_*`` delegate here.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import EvaluationError
from ..fields import check_field_name
from ..storage import bulk_set
from .classification import compare_classifications
from .detection import IOU_THRESHOLDS, match_detections, object_updates
from .results import ClassificationResults, DetectionResults, EvaluationResults, SegmentationResults
from .segmentation import compare_segmentations
from .store import delete_evaluation, save_evaluation

__all__ = ["evaluate_classifications", "evaluate_detections", "evaluate_segmentations"]


def _prepare(samples: Any, eval_key: Optional[str]) -> None:
    if eval_key is None:
        return
    check_field_name(eval_key)
    if "." in eval_key:
        raise EvaluationError(f"eval_key {eval_key!r}: use a name without dots (it prefixes sample fields)")
    # re-running a key replaces it: first remove what the last run wrote
    delete_evaluation(samples.name, samples.collection_name, eval_key, missing_ok=True)


def _finish(samples: Any, results: EvaluationResults, updates: Dict[Any, Dict[str, Any]], written: Dict[str, Any]) -> None:
    if results.eval_key is None:
        return
    bulk_set(samples.collection_name, updates, samples.name)
    save_evaluation(samples.name, results, written)


def evaluate_classifications(
    samples: Any,
    pred_field: str,
    gt_field: str = "ground_truth",
    eval_key: Optional[str] = None,
    classes: Optional[Sequence[str]] = None,
    k: Optional[int] = None,
) -> ClassificationResults:
    """Scores Classification predictions against ground truth.

    Args:
        samples: a dataset or view.
        pred_field: the predictions' field.
        gt_field: the ground truth's field.
        eval_key: store the results under this key, and each sample's
            correctness (True/False) in the field ``eval_key``.
        classes: the classes, in order (the order of the logits, for top-k).
        k: also compute top-``k`` accuracy from the predictions' logits.

    Returns:
        accuracy, per-class precision/recall/F1/support, confusion matrix, top-k.

    Raises:
        EvaluationError: a field is missing or holds another label type.
    """
    _prepare(samples, eval_key)
    metrics, ids, correct = compare_classifications(samples, pred_field, gt_field, classes, k)
    metrics["samples"] = len(ids)
    config = {"pred_field": pred_field, "gt_field": gt_field, "classes": list(classes) if classes else None, "k": k}
    results = ClassificationResults(metrics, config, eval_key)
    if eval_key is not None:
        _finish(samples, results, {i: {eval_key: bool(c)} for i, c in zip(ids, correct)}, {"sample_fields": [eval_key]})
    return results


def evaluate_detections(
    samples: Any,
    pred_field: str,
    gt_field: str = "ground_truth",
    eval_key: Optional[str] = None,
    method: str = "coco",
    iou: float = 0.5,
    classwise: bool = True,
    compute_mAP: bool = True,
    use_masks: Optional[bool] = None,
    classes: Optional[Sequence[str]] = None,
) -> DetectionResults:
    """Scores Detections against ground truth, COCO style (see :mod:`.detection`).

    Args:
        samples: a dataset or view.
        pred_field: the predictions' field (Detections).
        gt_field: the ground truth's field (Detections; ``attributes["iscrowd"]``
            marks crowd regions, ``attributes["area"]`` overrides the area).
        eval_key: store the results under this key, each object's
            ``tp``/``fp``/``fn`` (with the matched id and IoU) in its
            attributes, each sample's counts in ``eval_key_tp`` / ``_fp`` / ``_fn``.
        method: ``"coco"`` (the only one).
        iou: the IoU threshold of the per-object results and report.
        classwise: match objects only within a class (per-object results).
        compute_mAP: compute mAP, AP per class and the PR curves.
        use_masks: compare instance masks; None: when both sides all have them.
        classes: the classes (default: every label seen).

    Raises:
        EvaluationError: a field is missing or holds another label type, an unknown method.
    """
    if method != "coco":
        raise EvaluationError(f"evaluate_detections: unknown method {method!r}; the method is 'coco'")
    _prepare(samples, eval_key)
    match, docs = match_detections(samples, pred_field, gt_field, iou, classwise, compute_mAP, use_masks, classes)
    metrics = _detection_metrics(match, len(docs))
    config = {
        "pred_field": pred_field, "gt_field": gt_field, "method": method, "iou": float(iou),
        "classwise": classwise, "compute_mAP": compute_mAP, "use_masks": use_masks,
    }
    results = DetectionResults(metrics, config, eval_key)
    if eval_key is not None:
        updates = object_updates(match, docs, pred_field, gt_field, eval_key)
        keys = [eval_key, eval_key + "_id", eval_key + "_iou"]
        written = {
            "sample_fields": [f"{eval_key}_{k}" for k in ("tp", "fp", "fn")],
            "object_fields": {pred_field: keys, gt_field: keys},
        }
        _finish(samples, results, updates, written)
    return results


def _detection_metrics(match: Any, n_samples: int) -> Dict[str, Any]:
    labels = sorted({c for pair in match.pairs for c in pair[:2] if c is not None})
    names = labels + ["(none)"]
    index = {c: i for i, c in enumerate(names)}
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    for g, p, _ in match.pairs:
        cm[index[g if g is not None else "(none)"], index[p if p is not None else "(none)"]] += 1
    per_class = {}
    tp_all = fp_all = fn_all = 0
    for c in labels:
        i = index[c]
        tp = int(cm[i, i])
        fp = int(cm[:, i].sum() - tp)
        fn = int(cm[i, :].sum() - tp)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": int(cm[i, :].sum())}
    counts = {
        "tp": sum(1 for r in match.pred_results for x in r if x[0] == "tp"),
        "fp": sum(1 for r in match.pred_results for x in r if x[0] == "fp"),
        "fn": sum(1 for r in match.gt_results for x in r if x is not None and x[0] == "fn"),
    }
    metrics: Dict[str, Any] = {
        "per_class": per_class, "confusion_matrix": cm.tolist(), "classes": names, "counts": counts,
        "samples": n_samples, "stats": match.stats, "pr_classes": match.classes,
    }
    if match.precision is not None:
        # area all, 100 detections: (T, R, K); the AP of a class: the mean of its precisions > -1
        precision = match.precision[:, :, :, 0, -1]
        metrics["precision"] = precision.tolist()
        metrics["iou_thresholds"] = IOU_THRESHOLDS.tolist()
        ap = {}
        for k, c in enumerate(match.classes):
            s = precision[:, :, k]
            s = s[s > -1]
            if len(s):
                ap[c] = float(np.mean(s))
        metrics["ap_per_class"] = ap
    return metrics


def evaluate_segmentations(
    samples: Any,
    pred_field: str,
    gt_field: str = "ground_truth",
    eval_key: Optional[str] = None,
    mask_targets: Optional[Dict[Any, str]] = None,
) -> SegmentationResults:
    """Scores semantic masks: pixel accuracy, per-class IoU, mIoU.

    Args:
        eval_key: store the results under this key and each sample's pixel
            accuracy in ``eval_key + "_accuracy"``.
        mask_targets: index -> class name (default: the labels' own).
    """
    _prepare(samples, eval_key)
    metrics, ids, per_sample = compare_segmentations(samples, pred_field, gt_field, mask_targets)
    metrics["samples"] = len(ids)
    results = SegmentationResults(metrics, {"pred_field": pred_field, "gt_field": gt_field}, eval_key)
    if eval_key is not None:
        field = eval_key + "_accuracy"
        _finish(samples, results, {i: {field: a} for i, a in zip(ids, per_sample)}, {"sample_fields": [field]})
    return results
