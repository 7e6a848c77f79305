"""Classification: logits ``(N, C)`` -> a top-1 Classification (or Classifications)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import torch

from ..labels import Classification, Classifications
from .base import ImageSize, OutputProcessor, check_classes, check_tensor

__all__ = ["ClassifierOutputProcessor"]


class ClassifierOutputProcessor(OutputProcessor):
    """Classifier logits to labels.

    Tensor contract: ``output`` is ``FloatTensor[N, C]`` of logits (before
    softmax), ``C == len(classes)`` when classes are given.

    Single-label (default): the top-1 class as a :class:`Classification`,
    its confidence the softmax probability. Multilabel: a
    :class:`Classifications` holding every class whose sigmoid probability is
    at least ``multilabel_thresh``. With :attr:`store_logits` the label keeps
    the image's raw logits row as a float32 array.

    Args:
        classes: the class names, one per logit.
        multilabel: score each class independently with a sigmoid.
        multilabel_thresh: the probability a class needs to be reported (multilabel only).
        store_logits: keep the logits on the labels.
    """

    has_logits = True

    def __init__(
        self,
        classes: Optional[Sequence[str]] = None,
        multilabel: bool = False,
        multilabel_thresh: float = 0.5,
        store_logits: bool = False,
    ):
        super().__init__(classes)
        self.multilabel = bool(multilabel)
        self.multilabel_thresh = float(multilabel_thresh)
        self.store_logits = bool(store_logits)

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        width = len(self.classes) if self.classes is not None else None
        if isinstance(output, torch.Tensor) and output.dim() == 2:
            check_classes(self.name, self.classes, output.shape[1], "logits")
        check_tensor(self.name, "logits", output, (batch_size, width), floating=True)

    def parse(
        self, output: torch.Tensor, image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]
    ) -> List[Any]:
        logits = output.float()
        if self.multilabel:
            return self._multilabel(logits)
        # torch.softmax subtracts the row maximum before exponentiating, so
        # large logits do not overflow
        probs = torch.softmax(logits, dim=1)
        conf, idx = probs.max(dim=1)
        labels = []
        for i, (c, k) in enumerate(zip(conf.tolist(), idx.tolist())):
            label = Classification(label=self.class_name(k), confidence=c)
            if self.store_logits:
                label.logits = logits[i].numpy().copy()
            labels.append(label)
        return labels

    def _multilabel(self, logits: torch.Tensor) -> List[Any]:
        probs = torch.sigmoid(logits)
        labels = []
        for i in range(probs.shape[0]):
            row = probs[i]
            keep = torch.nonzero(row >= self.multilabel_thresh).flatten()
            # most confident first
            keep = keep[torch.argsort(row[keep], descending=True)]
            items = [Classification(label=self.class_name(k), confidence=row[k].item()) for k in keep.tolist()]
            label = Classifications(classifications=items)
            if self.store_logits:
                label.logits = logits[i].numpy().copy()
            labels.append(label)
        return labels
