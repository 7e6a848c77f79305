"""Object detection and instance segmentation: torchvision-style per-image dicts -> Detections."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ModelError
from ..labels import Detection, Detections, check_box
from .base import ImageSize, OutputProcessor, check_tensor

__all__ = ["DetectorOutputProcessor", "InstanceSegmenterOutputProcessor", "relative_boxes"]


def relative_boxes(boxes: torch.Tensor, size: ImageSize) -> np.ndarray:
    """Absolute ``x1, y1, x2, y2`` boxes ``(K, 4)`` in an image of ``size`` ->
    relative ``x, y, w, h`` ``(K, 4)`` float64, clipped to the image."""
    w, h = size
    b = boxes.detach().to(torch.float64).cpu().numpy().reshape(-1, 4)
    x1 = np.clip(b[:, 0], 0, w)
    y1 = np.clip(b[:, 1], 0, h)
    x2 = np.clip(b[:, 2], 0, w)
    y2 = np.clip(b[:, 3], 0, h)
    return np.stack(
        [x1 / w, y1 / h, np.maximum(x2 - x1, 0) / w, np.maximum(y2 - y1, 0) / h], axis=1
    )


class DetectorOutputProcessor(OutputProcessor):
    """Detector outputs to :class:`~modelzoo.labels.Detections`.

    Tensor contract: ``output`` is a list of ``N`` dicts (torchvision's
    detection models), one per image, each with

    - ``boxes``: ``FloatTensor[K, 4]``, absolute ``x1, y1, x2, y2`` in the
      pixels of the model's input tensor,
    - ``labels``: ``Int64Tensor[K]``, indices into ``classes``,
    - ``scores``: ``FloatTensor[K]``.

    Boxes become relative ``[x, y, w, h]`` by dividing by the input size,
    which makes them relative to the original image too.

    Args:
        classes: the class names (torchvision's COCO models put ``__background__`` at 0).
    """

    traceable = False

    def expected(self, k: int, input_size: ImageSize) -> Dict[str, Tuple[Tuple[Optional[int], ...], bool]]:
        """The tensors one image's dict must hold: key -> (shape, floating), for ``k`` objects."""
        return {"boxes": ((k, 4), True), "labels": ((k,), False), "scores": ((k,), True)}

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        if not isinstance(output, (list, tuple)) or len(output) != batch_size:
            got = type(output).__name__
            if isinstance(output, (list, tuple)):
                got += f" of length {len(output)}"
            raise ModelError(f"{self.name} expects a list of {batch_size} dicts (one per image), got a {got}")
        for i, out in enumerate(output):
            if not isinstance(out, dict):
                raise ModelError(f"{self.name} expects output[{i}] to be a dict, got {type(out).__name__}")
            boxes = out.get("boxes")
            k = boxes.shape[0] if isinstance(boxes, torch.Tensor) and boxes.dim() > 0 else None
            spec = self.expected(k, input_sizes[i])  # type: ignore[arg-type]
            missing = [key for key in spec if key not in out]
            if missing:
                raise ModelError(f"{self.name} expects output[{i}] to have keys {list(spec)}; missing {missing}")
            for key, (shape, floating) in spec.items():
                check_tensor(self.name, f"output[{i}][{key!r}]", out[key], shape, floating=floating)

    def parse(
        self, output: Sequence[Dict[str, torch.Tensor]], image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]
    ) -> List[Any]:
        labels = []
        for out, image_size, input_size in zip(output, image_sizes, input_sizes):
            boxes = relative_boxes(out["boxes"], input_size)
            classes = out["labels"].tolist()
            scores = out["scores"].tolist()
            dets = []
            for j, box in enumerate(boxes.tolist()):
                det = Detection.from_trusted(
                    label=self.class_name(int(classes[j])),
                    bounding_box=check_box(box, f"{self.name}: box {j}"),
                    confidence=float(scores[j]),
                )
                self._extra(det, out, j, image_size, input_size)
                dets.append(det)
            labels.append(Detections(detections=dets))
        return labels

    def _extra(self, det: Detection, out: Dict[str, torch.Tensor], j: int, image_size: ImageSize, input_size: ImageSize) -> None:
        """Adds task-specific data to detection ``j`` (subclasses)."""


class InstanceSegmenterOutputProcessor(DetectorOutputProcessor):
    """Instance segmenter outputs to Detections with masks.

    Tensor contract: as :class:`DetectorOutputProcessor`, plus ``masks``:
    ``FloatTensor[K, 1, H, W]`` of per-pixel probabilities over the input
    tensor (``H, W`` its size; torchvision's Mask R-CNN).

    Each mask is cropped to its box; when the input was resized, the crop is
    resized (bilinear, on probabilities) to the box's size in the original
    image; then thresholded at ``mask_thresh`` into a boolean ``(h, w)`` array.

    Args:
        classes: the class names.
        mask_thresh: the probability above which a pixel belongs to the object.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, mask_thresh: float = 0.5):
        super().__init__(classes)
        self.mask_thresh = float(mask_thresh)

    def expected(self, k: int, input_size: ImageSize) -> Dict[str, Tuple[Tuple[Optional[int], ...], bool]]:
        return {**super().expected(k, input_size), "masks": ((k, 1, input_size[1], input_size[0]), True)}

    def _extra(self, det: Detection, out: Dict[str, torch.Tensor], j: int, image_size: ImageSize, input_size: ImageSize) -> None:
        det.mask = crop_mask(out["masks"][j, 0], out["boxes"][j], image_size, input_size, self.mask_thresh)


def crop_mask(
    mask: torch.Tensor, box: torch.Tensor, image_size: ImageSize, input_size: ImageSize, thresh: float
) -> np.ndarray:
    """The part of a full-input probability mask ``(H, W)`` inside ``box``
    (absolute ``x1, y1, x2, y2`` in input pixels), at the box's size in the
    original image, as a boolean array."""
    in_w, in_h = input_size
    x1, y1, x2, y2 = (float(v) for v in box)
    c1 = min(max(int(round(x1)), 0), in_w - 1)
    r1 = min(max(int(round(y1)), 0), in_h - 1)
    c2 = min(max(int(round(x2)), c1 + 1), in_w)
    r2 = min(max(int(round(y2)), r1 + 1), in_h)
    crop = mask[r1:r2, c1:c2]
    if tuple(image_size) != tuple(input_size):
        sx, sy = image_size[0] / in_w, image_size[1] / in_h
        out_h = max(int(round((r2 - r1) * sy)), 1)
        out_w = max(int(round((c2 - c1) * sx)), 1)
        crop = F.interpolate(crop[None, None].float(), size=(out_h, out_w), mode="bilinear", align_corners=False)[0, 0]
    return (crop > thresh).numpy()
