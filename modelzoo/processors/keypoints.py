"""Keypoint detection: torchvision Keypoint R-CNN dicts -> Detections + Keypoints."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from ..labels import Keypoint, Keypoints
from ..skeleton import check_skeleton
from .base import ImageSize
from .detector import DetectorOutputProcessor, relative_boxes

__all__ = ["KeypointDetectorOutputProcessor", "check_skeleton"]


class KeypointDetectorOutputProcessor(DetectorOutputProcessor):
    """Keypoint detector outputs to ``{"detections": Detections, "keypoints": Keypoints}``.

    Tensor contract: as :class:`DetectorOutputProcessor`, plus

    - ``keypoints``: ``FloatTensor[K, P, 3]``, absolute ``x, y, visibility``
      in input pixels, ``P`` points per object,
    - ``keypoints_scores``: ``FloatTensor[K, P]``, heatmap scores (logits).

    ``detections[i]`` and ``keypoints[i]`` describe the same object. Points
    are relative ``[x, y]``; each point's confidence is the sigmoid of its
    score. ``confidence_thresh`` applies to the object's box score and drops
    the box and its points together.

    Args:
        classes: the class names.
        skeleton: ``{"labels": [point names], "edges": [[i, j], ...]}``;
            when it names its points, ``P`` must match.
    """

    def __init__(self, classes: Optional[Sequence[str]] = None, skeleton: Optional[Mapping[str, Any]] = None):
        super().__init__(classes)
        self.skeleton = check_skeleton(skeleton)

    def expected(self, k: int, input_size: ImageSize) -> Dict[str, Tuple[Tuple[Optional[int], ...], bool]]:
        points = None
        if self.skeleton is not None and self.skeleton["labels"] is not None:
            points = len(self.skeleton["labels"])
        return {
            **super().expected(k, input_size),
            "keypoints": ((k, points, 3), True),
            "keypoints_scores": ((k, points), True),
        }

    def parse(
        self, output: Sequence[Dict[str, torch.Tensor]], image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]
    ) -> List[Any]:
        dets = super().parse(output, image_sizes, input_sizes)
        labels = []
        for out, detections, (in_w, in_h) in zip(output, dets, input_sizes):
            pts = out["keypoints"].to(torch.float64).numpy()
            rel = np.stack([np.clip(pts[..., 0] / in_w, 0, 1), np.clip(pts[..., 1] / in_h, 0, 1)], axis=-1)
            conf = torch.sigmoid(out["keypoints_scores"].float()).numpy()
            boxes = relative_boxes(out["boxes"], (in_w, in_h))
            kps = [
                Keypoint(
                    label=det.label,
                    points=rel[j].tolist(),
                    confidence=conf[j].tolist(),
                    bounding_box=boxes[j].tolist(),
                )
                for j, det in enumerate(detections.detections)
            ]
            labels.append({"detections": detections, "keypoints": Keypoints(keypoints=kps)})
        return labels
