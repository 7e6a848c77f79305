"""PNG plots of evaluation results: PR curves and confusion matrices.

matplotlib is an optional extra (``pip install "modelzoo[plot]"``), imported
on first use with the file-only Agg backend.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Sequence

import numpy as np

from .errors import RequirementsError

__all__ = ["pyplot", "plot_pr_curves", "plot_confusion_matrix"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend.

    Raises:
        RequirementsError: matplotlib is not installed (the message names the extra).
    """
    try:
        import matplotlib
    except ImportError:
        raise RequirementsError(
            'Plotting needs matplotlib: pip install "modelzoo[plot]" (or pip install matplotlib)'
        ) from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str) -> str:
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return path


def plot_pr_curves(recall: np.ndarray, curves: Dict[str, np.ndarray], path: str, title: Optional[str] = None) -> str:
    """One precision-recall curve per class.

    Args:
        recall: the recall points ``(R,)``.
        curves: class -> precision at those points ``(R,)``.
        path: the PNG to write.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, precision in curves.items():
        p = np.asarray(precision, dtype=float)
        ax.plot(recall, np.where(p < 0, np.nan, p), label=f"{name} (AP {np.mean(p[p > -1]) if (p > -1).any() else 0:.2f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    if title:
        ax.set_title(title)
    if curves:
        ax.legend(loc="lower left", fontsize="small", ncol=1 + len(curves) // 12)
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str) -> str:
    """The confusion matrix (rows: truth, columns: prediction) with its counts."""
    plt = pyplot()
    m = np.asarray(matrix)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(labels) <= 30:
        high = m.max() if m.size else 0
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > high / 2 else "black")
    return _save(fig, path)
