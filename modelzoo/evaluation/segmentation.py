"""Semantic segmentation evaluation: pixel accuracy, per-class IoU, mean IoU.

Both fields hold :class:`~modelzoo.labels.Segmentation` masks of class
indices; a prediction of another size is resized to the ground truth's
(nearest neighbour). Class names come from ``mask_targets`` (index -> name).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..labels import stored_array
from .reading import check_fields, iter_docs

__all__ = ["segmentation_metrics", "compare_segmentations"]


def _resize_nearest(mask: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    rows = (np.arange(shape[0]) * mask.shape[0] // shape[0]).clip(0, mask.shape[0] - 1)
    cols = (np.arange(shape[1]) * mask.shape[1] // shape[1]).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def segmentation_metrics(confusion: np.ndarray, values: Sequence[int], names: Sequence[str]) -> Dict[str, Any]:
    """Metrics of a pixel confusion matrix (rows: truth, columns: prediction).

    Returns:
        ``{"pixel_accuracy", "per_class_iou": {name: iou}, "mIoU", "confusion_matrix", "classes"}``;
        a class absent from both sides has no IoU and is left out of the mean.
    """
    cm = confusion.astype(np.float64)
    inter = np.diag(cm)
    union = cm.sum(axis=0) + cm.sum(axis=1) - inter
    per_class = {str(n): float(inter[i] / union[i]) for i, n in enumerate(names) if union[i] > 0}
    total = cm.sum()
    return {
        "pixel_accuracy": float(inter.sum() / total) if total else 0.0,
        "per_class_iou": per_class,
        "mIoU": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "confusion_matrix": confusion.astype(np.int64).tolist(),
        "classes": [str(n) for n in names],
        "values": [int(v) for v in values],
    }


def compare_segmentations(
    samples: Any, pred_field: str, gt_field: str, mask_targets: Optional[Dict[Any, str]] = None
) -> Tuple[Dict[str, Any], List[Any], List[float]]:
    """Compares the semantic masks of ``pred_field`` with ``gt_field``.

    Returns:
        ``(metrics, sample ids, per-sample pixel accuracy)``.
    """
    check_fields(samples, {"pred_field": pred_field, "gt_field": gt_field}, ["Segmentation"], "evaluate_segmentations")
    pairs: List[Tuple[np.ndarray, np.ndarray]] = []
    ids: List[Any] = []
    targets: Dict[int, str] = {int(k): str(v) for k, v in (mask_targets or {}).items()}
    for doc in iter_docs(samples, [pred_field, gt_field]):
        gt, pred = doc.get(gt_field), doc.get(pred_field)
        if not gt or (gt.get("mask") is None and not gt.get("mask_path")):
            continue
        g_mask = stored_array(gt)  # in the label, or its PNG (apply_model(output_dir=...))
        assert g_mask is not None  # checked above
        g = g_mask.astype(np.int64)
        p_mask = stored_array(pred) if pred else None
        p = p_mask.astype(np.int64) if p_mask is not None else np.full_like(g, -1)
        pairs.append((g, _resize_nearest(p, g.shape)))
        ids.append(doc["_id"])
        if mask_targets is None:
            for label in (gt, pred):
                for k, v in ((label or {}).get("mask_targets") or {}).items():
                    targets.setdefault(int(k), str(v))
    values = sorted({int(v) for g, p in pairs for v in np.unique(np.concatenate([g.ravel(), p.ravel()])) if v >= 0} | set(targets))
    index = {v: i for i, v in enumerate(values)}
    n = len(values)
    lookup_size = (max(values) + 2) if values else 1
    lookup = np.full(lookup_size, n, dtype=np.int64)  # n: no prediction (-1)
    for v, i in index.items():
        lookup[v] = i
    confusion = np.zeros((n, n + 1), dtype=np.int64)
    per_sample = []
    for g, p in pairs:
        gi, pi = lookup[g.ravel()], lookup[p.ravel()]
        cm = np.bincount(gi * (n + 1) + pi, minlength=n * (n + 1)).reshape(n, n + 1)
        confusion += cm
        per_sample.append(float(np.trace(cm[:, :n]) / max(g.size, 1)))
    names = [targets.get(v, str(v)) for v in values]
    metrics = segmentation_metrics(confusion[:, :n], values, names)
    # pixels with no prediction are wrong: count them in the accuracy's total
    total = confusion.sum()
    metrics["pixel_accuracy"] = float(np.trace(confusion[:, :n]) / total) if total else 0.0
    return metrics, ids, per_sample
