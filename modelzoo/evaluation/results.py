"""Evaluation results as objects: a report, the headline numbers, plots.

Each results class holds plain data (what :mod:`.store` keeps in MongoDB
and gives back with ``load_evaluation``) and knows how to print and plot
itself. Plots need matplotlib (``pip install modelzoo[plot]``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..text import format_table

__all__ = ["EvaluationResults", "ClassificationResults", "DetectionResults", "SegmentationResults", "results_from_dict"]


def _per_class_rows(per_class: Dict[str, Dict[str, Any]]) -> List[Sequence[str]]:
    return [
        (c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
        for c, m in per_class.items()
    ]


class EvaluationResults:
    """Base of the results of one evaluation.

    Attributes:
        eval_key: the key it is stored under (None when not stored).
        config: what was evaluated and how (fields, settings).
        metrics: the numbers, plain data.
    """

    kind = ""

    def __init__(self, metrics: Dict[str, Any], config: Dict[str, Any], eval_key: Optional[str] = None):
        self.metrics = metrics
        self.config = dict(config)
        self.eval_key = eval_key

    def report(self) -> Dict[str, Any]:
        """The per-class numbers: ``{class: {precision, recall, f1, support}}``."""
        return dict(self.metrics.get("per_class", {}))

    def print_report(self) -> None:
        """Prints :meth:`report` as a table, with the headline numbers."""
        print(self.report_text())

    def report_text(self) -> str:
        rows = _per_class_rows(self.report())
        return format_table(("CLASS", "PRECISION", "RECALL", "F1", "SUPPORT"), rows)

    def confusion_matrix(self) -> np.ndarray:
        """``(C, C)`` counts, rows: truth, columns: prediction (see :attr:`classes`)."""
        return np.asarray(self.metrics["confusion_matrix"], dtype=np.int64)

    @property
    def classes(self) -> List[str]:
        """The rows/columns of :meth:`confusion_matrix`."""
        return list(self.metrics["classes"])

    def plot_confusion_matrix(self, path: str) -> str:
        """Writes the confusion matrix as a PNG; returns ``path``."""
        from ..plots import plot_confusion_matrix

        return plot_confusion_matrix(self.confusion_matrix(), self.classes, path)

    def to_dict(self) -> Dict[str, Any]:
        return {"kind": self.kind, "metrics": self.metrics, "config": self.config, "eval_key": self.eval_key}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.eval_key!r}: {self.summary()}>"

    def summary(self) -> str:
        raise NotImplementedError


class ClassificationResults(EvaluationResults):
    """Accuracy, per-class precision/recall/F1/support, confusion matrix, top-k."""

    kind = "classification"

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def top_k(self) -> Optional[float]:
        """Top-k accuracy, when it was computed (``k=``)."""
        top = self.metrics.get("top_k")
        return None if top is None else float(top["accuracy"])

    def summary(self) -> str:
        text = f"accuracy {self.accuracy:.4f}"
        if self.metrics.get("top_k"):
            text += f", top-{self.metrics['top_k']['k']} {self.top_k():.4f}"
        return text

    def report_text(self) -> str:
        return super().report_text() + f"\n\n{self.summary()} over {self.metrics.get('samples', 0)} samples"


class DetectionResults(EvaluationResults):
    """COCO metrics (mAP, AP per class, PR curves) and per-class numbers at one IoU."""

    kind = "detection"

    def mAP(self) -> float:
        """COCO mAP@[.5:.95] (area all, 100 detections); -1 when not computed or no ground truth."""
        stats = self.metrics.get("stats")
        return -1.0 if not stats else float(stats[0])

    def stats(self) -> List[float]:
        """The 12 numbers of ``COCOeval.summarize()``."""
        return list(self.metrics.get("stats") or [])

    def ap_per_class(self) -> Dict[str, float]:
        """AP@[.5:.95] per class (classes without ground truth left out)."""
        return dict(self.metrics.get("ap_per_class") or {})

    def pr_curve(self, label: str, iou: Optional[float] = None) -> np.ndarray:
        """Interpolated precision at the 101 recall points for ``label`` at
        ``iou`` (default: the evaluation's per-object IoU)."""
        from .detection import IOU_THRESHOLDS

        precision = np.asarray(self.metrics["precision"])
        t = int(np.argmin(np.abs(IOU_THRESHOLDS - (iou or self.config.get("iou", 0.5)))))
        return precision[t, :, self.metrics["pr_classes"].index(label)]

    def summary(self) -> str:
        return f"mAP {self.mAP():.4f}" if self.metrics.get("stats") else "no mAP (compute_mAP=False)"

    def report_text(self) -> str:
        text = super().report_text()
        stats = self.stats()
        if stats:
            names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
            text += "\n\n" + format_table(names, [[f"{v:.3f}" for v in stats]])
        counts = self.metrics.get("counts") or {}
        text += f"\n\ntp {counts.get('tp', 0)}, fp {counts.get('fp', 0)}, fn {counts.get('fn', 0)} at IoU {self.config.get('iou')}"
        return text

    def plot_pr_curves(self, path: str, classes: Optional[Sequence[str]] = None, iou: Optional[float] = None) -> str:
        """Writes the precision-recall curve of each class (at ``iou``) as a PNG; returns ``path``."""
        from ..plots import plot_pr_curves
        from .detection import RECALL_THRESHOLDS

        names = list(classes) if classes is not None else [c for c in self.metrics["pr_classes"] if c in self.ap_per_class()]
        curves = {c: self.pr_curve(c, iou) for c in names}
        return plot_pr_curves(RECALL_THRESHOLDS, curves, path, title=f"IoU {iou or self.config.get('iou', 0.5)}")


class SegmentationResults(EvaluationResults):
    """Pixel accuracy, per-class IoU and mean IoU."""

    kind = "segmentation"

    def mIoU(self) -> float:
        return float(self.metrics["mIoU"])

    @property
    def pixel_accuracy(self) -> float:
        return float(self.metrics["pixel_accuracy"])

    def report(self) -> Dict[str, Any]:
        return {c: {"iou": v} for c, v in self.metrics["per_class_iou"].items()}

    def report_text(self) -> str:
        rows = [(c, f"{v:.4f}") for c, v in self.metrics["per_class_iou"].items()]
        return format_table(("CLASS", "IOU"), rows) + f"\n\n{self.summary()}"

    def summary(self) -> str:
        return f"pixel accuracy {self.pixel_accuracy:.4f}, mIoU {self.mIoU():.4f}"


_KINDS = {c.kind: c for c in (ClassificationResults, DetectionResults, SegmentationResults)}


def results_from_dict(d: Dict[str, Any]) -> EvaluationResults:
    """The results object that :meth:`EvaluationResults.to_dict` wrote."""
    return _KINDS[d["kind"]](d["metrics"], d.get("config") or {}, d.get("eval_key"))
