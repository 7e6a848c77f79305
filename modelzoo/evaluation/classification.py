"""Classification evaluation: accuracy, per-class precision / recall / F1 /
support, the confusion matrix, and top-k accuracy from stored logits.

The numbers are those of ``sklearn.metrics`` (``accuracy_score``,
``precision_recall_fscore_support`` with ``zero_division=0``,
``confusion_matrix``, ``top_k_accuracy_score``), computed here in numpy;
``tests/test_evaluation_classification.py`` compares them. A sample without a
prediction counts as predicting ``MISSING``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..encoding import decode_array
from ..errors import EvaluationError
from .reading import check_fields, iter_docs

__all__ = ["MISSING", "classification_metrics", "compare_classifications", "top_k_accuracy"]

#: the label of a missing prediction or ground truth
MISSING = "(none)"


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], classes: Sequence[str]) -> Dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix.

    Args:
        classes: the rows/columns of the matrix, in order (must hold every label).

    Returns:
        ``{"accuracy", "per_class": {class: {precision, recall, f1, support}},
        "confusion_matrix": (C, C) list (rows: truth, columns: prediction), "classes"}``.
    """
    index = {c: i for i, c in enumerate(classes)}
    t = np.array([index[x] for x in y_true], dtype=np.int64)
    p = np.array([index[x] for x in y_pred], dtype=np.int64)
    n = len(classes)
    cm = np.bincount(t * n + p, minlength=n * n).reshape(n, n) if len(t) else np.zeros((n, n), np.int64)
    tp = np.diag(cm).astype(np.float64)
    pred_count, support = cm.sum(axis=0).astype(np.float64), cm.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(pred_count > 0, tp / pred_count, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = {
        c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    accuracy = float(tp.sum() / len(t)) if len(t) else 0.0
    return {"accuracy": accuracy, "per_class": per_class, "confusion_matrix": cm.tolist(), "classes": list(classes)}


def top_k_accuracy(y_true: Sequence[str], logits: np.ndarray, classes: Sequence[str], k: int) -> float:
    """The fraction of samples whose true class is among the ``k`` highest
    logits; ties are broken as ``sklearn.metrics.top_k_accuracy_score`` breaks
    them (a stable sort, reversed: the later class wins)."""
    index = {c: i for i, c in enumerate(classes)}
    t = np.array([index[x] for x in y_true])
    order = np.argsort(logits, axis=1, kind="stable")[:, ::-1][:, :k]
    return float(np.mean(np.any(order == t[:, None], axis=1))) if len(t) else 0.0


def compare_classifications(
    samples: Any,
    pred_field: str,
    gt_field: str,
    classes: Optional[Sequence[str]] = None,
    k: Optional[int] = None,
) -> Tuple[Dict[str, Any], List[Any], List[bool]]:
    """Compares ``pred_field`` with ``gt_field`` (Classification labels).

    Args:
        classes: the classes in order; required for top-k (the order of the
            logits). Default: every label seen, sorted.
        k: also compute top-``k`` accuracy from the predictions' logits.

    Returns:
        ``(metrics, sample ids, per-sample correctness)``; metrics as
        :func:`classification_metrics`, plus ``"top_k"`` when ``k`` is given.
    """
    check_fields(samples, {"pred_field": pred_field, "gt_field": gt_field}, ["Classification"], "evaluate_classifications")
    ids, y_true, y_pred, logits = [], [], [], []
    for doc in iter_docs(samples, [pred_field, gt_field]):
        gt, pred = doc.get(gt_field), doc.get(pred_field)
        if gt is None or gt.get("label") is None:
            continue  # nothing to compare with
        ids.append(doc["_id"])
        y_true.append(gt["label"])
        y_pred.append(pred.get("label") if pred and pred.get("label") is not None else MISSING)
        logits.append(decode_array(pred["logits"]) if pred and pred.get("logits") is not None else None)
    labels = set(y_true) | set(y_pred)
    seen = sorted(labels - {MISSING}) + ([MISSING] if MISSING in labels else [])
    class_list = list(classes) if classes is not None else seen
    unknown = sorted(labels - set(class_list) - {MISSING})
    if unknown:
        raise EvaluationError(f"evaluate_classifications: labels {unknown[:5]} are not in classes={list(class_list)[:20]}")
    if MISSING in y_pred and MISSING not in class_list:
        class_list = class_list + [MISSING]
    metrics = classification_metrics(y_true, y_pred, class_list)
    if k is not None:
        if classes is None:
            raise EvaluationError("evaluate_classifications: top-k needs classes=[...] (the order of the logits)")
        if any(x is None for x in logits):
            raise EvaluationError(f"evaluate_classifications: top-{k} needs logits on every prediction in {pred_field!r}")
        stacked = np.stack([np.asarray(x, dtype=np.float64).ravel() for x in logits]) if logits else np.zeros((0, len(classes)))
        if stacked.shape[1] != len(classes):
            raise EvaluationError(
                f"evaluate_classifications: the logits have {stacked.shape[1]} scores, classes has {len(classes)} names"
            )
        metrics["top_k"] = {"k": int(k), "accuracy": top_k_accuracy(y_true, stacked, list(classes), int(k))}
    correct = [t == p for t, p in zip(y_true, y_pred)]
    return metrics, ids, correct
