"""Dense single-channel outputs (depth, saliency) -> a Heatmap at the original size."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..labels import Heatmap
from .base import ImageSize, OutputProcessor, check_tensor

__all__ = ["HeatmapOutputProcessor"]


class HeatmapOutputProcessor(OutputProcessor):
    """Dense single-channel model outputs to :class:`~modelzoo.labels.Heatmap`.

    Tensor contract: ``output`` is ``FloatTensor[N, 1, H, W]`` or
    ``FloatTensor[N, H, W]`` over the input tensor (``H, W`` its size; a depth
    or saliency map), or a dict holding it under ``"out"``. Each map is
    resized to the original image size (bilinear) and stored as float32.

    Args:
        classes: unused (heatmaps have none); accepted as every processor's.
        range: ``[min, max]`` stored on each Heatmap; default: the map's own
            min and max.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, range: Optional[Sequence[float]] = None):
        super().__init__(classes)
        if range is not None:
            try:
                lo, hi = (float(v) for v in range)
            except (TypeError, ValueError):
                raise ConfigError(f"HeatmapOutputProcessor: range must be [min, max], got {range!r}") from None
            if not lo <= hi:
                raise ConfigError(f"HeatmapOutputProcessor: range must be [min, max] with min <= max, got {range!r}")
            range = [lo, hi]
        self.range = range

    @staticmethod
    def _maps(output: Any) -> Any:
        if isinstance(output, Mapping) and "out" in output:
            output = output["out"]
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] == 1:
            output = output[:, 0]
        return output

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        w, h = input_sizes[0] if len(set(input_sizes)) == 1 else (None, None)
        check_tensor(self.name, "maps", self._maps(output), (batch_size, h, w), floating=True)

    def parse(self, output: Any, image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]) -> List[Any]:
        labels = []
        for m, (w, h) in zip(self._maps(output), image_sizes):
            if tuple(m.shape) != (h, w):
                m = F.interpolate(m[None, None].float(), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
            arr = m.float().numpy()
            rng = self.range or [float(arr.min()), float(arr.max())]
            labels.append(Heatmap(map=arr, range=rng))
        return labels
