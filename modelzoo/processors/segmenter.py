"""Semantic segmentation: per-class scores ``(N, C, H, W)`` -> a Segmentation at the original size."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..labels import Segmentation
from .base import ImageSize, OutputProcessor, check_classes, check_tensor

__all__ = ["SemanticSegmenterOutputProcessor"]


class SemanticSegmenterOutputProcessor(OutputProcessor):
    """Semantic segmenter outputs to :class:`~modelzoo.labels.Segmentation`.

    Tensor contract: ``output`` is ``FloatTensor[N, C, H, W]`` of per-class
    scores over the input tensor (``H, W`` its size), or a dict holding it
    under ``"out"`` (torchvision's segmentation models). ``C == 1`` is read as
    a binary foreground logit.

    The mask is the argmax over classes at the input size, resized to the
    original image size with nearest-exact interpolation (so memory stays
    ``H x W``, not ``C x H x W``, at the original size); uint8 when the
    classes fit, else int32.

    Args:
        classes: the class names, one per channel.
        mask_targets: class index -> name, stored on each Segmentation
            (string keys, as the database needs); defaults to the classes.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, mask_targets: Optional[Mapping[Any, str]] = None):
        super().__init__(classes)
        if mask_targets is not None:
            if not isinstance(mask_targets, Mapping):
                raise ConfigError(f"mask_targets must be a dict {{class index: name}}, got {type(mask_targets).__name__}")
            try:
                mask_targets = {str(int(k)): str(v) for k, v in mask_targets.items()}
            except (TypeError, ValueError):
                raise ConfigError(f"mask_targets keys must be class indices (ints), got {list(mask_targets)!r:.200}") from None
        elif self.classes is not None:
            mask_targets = {str(i): c for i, c in enumerate(self.classes)}
        self._targets_from_classes = mask_targets is not None and self.classes is not None and \
            mask_targets == {str(i): c for i, c in enumerate(self.classes)}
        self.mask_targets: Optional[Dict[str, str]] = mask_targets

    def with_classes(self, classes: Sequence[str]) -> "SemanticSegmenterOutputProcessor":
        other = super().with_classes(classes)
        assert isinstance(other, SemanticSegmenterOutputProcessor)
        if self._targets_from_classes or self.mask_targets is None:
            other.mask_targets = {str(i): c for i, c in enumerate(other.classes or [])}
            other._targets_from_classes = True
        return other

    @staticmethod
    def _scores(output: Any) -> Any:
        if isinstance(output, Mapping) and "out" in output:
            return output["out"]
        return output

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        scores = self._scores(output)
        if isinstance(scores, torch.Tensor) and scores.dim() == 4 and scores.shape[1] > 1:
            check_classes(self.name, self.classes, scores.shape[1], "class score maps")
        w, h = input_sizes[0] if len(set(input_sizes)) == 1 else (None, None)
        check_tensor(self.name, "scores" if not isinstance(output, Mapping) else "output['out']", scores, (batch_size, None, h, w), floating=True)

    def parse(self, output: Any, image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]) -> List[Any]:
        scores = self._scores(output)
        if scores.shape[1] == 1:
            masks = (scores[:, 0] > 0).to(torch.uint8)
        else:
            masks = scores.argmax(dim=1)
        dtype = torch.uint8 if scores.shape[1] <= 256 else torch.int32
        labels = []
        for mask, (w, h) in zip(masks, image_sizes):
            if tuple(mask.shape) != (h, w):
                mask = F.interpolate(mask[None, None].float(), size=(h, w), mode="nearest-exact")[0, 0]
            labels.append(Segmentation(mask=mask.to(dtype).numpy(), mask_targets=dict(self.mask_targets or {})))
        return labels
