"""Tiny, seeded torch models for every task, for tests and plugin authors.

Each ``tiny_*`` factory returns a randomly initialised (seeded, so
deterministic) ``torch.nn.Module`` in eval mode that runs in milliseconds on
a CPU, and can be named as an ``entrypoint_fcn``::

    config = {"entrypoint_fcn": "modelzoo.testing.tiny_classifier",
              "entrypoint_args": {"num_classes": 5},
              "output_processor_cls": "ClassifierOutputProcessor"}

:func:`tiny_model` builds a ready :class:`~modelzoo.torch_image.TorchImageModel`
for a task, with the matching processor and class names::

    model = tiny_model("detection")
    labels = model.predict(image)     # Detections
"""

from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

__all__ = [
    "TASKS",
    "TinyClassifier",
    "TinySegmenter",
    "tiny_classifier",
    "tiny_segmenter",
    "tiny_detector",
    "tiny_instance_segmenter",
    "tiny_keypoint_detector",
    "tiny_classes",
    "tiny_model",
]


class TinyClassifier(nn.Module):
    """``(N, 3, H, W)`` -> logits ``(N, num_classes)``.

    Modules: ``features`` (two strided convs), ``pool``, ``head`` (a
    ``Linear(16, num_classes)``); ``"<head"`` is a 16-d embeddings layer.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class TinySegmenter(nn.Module):
    """``(N, 3, H, W)`` -> ``{"out": (N, num_classes, H, W)}``, like torchvision's segmenters."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(16, num_classes, 1)

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        scores = self.classifier(self.backbone(x))
        return {"out": nn.functional.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _seeded(seed: int, build: Any) -> nn.Module:
    # fork_rng keeps the caller's global RNG untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
    return module.eval()


def tiny_classifier(num_classes: int = 10, seed: int = 0) -> TinyClassifier:
    """A seeded :class:`TinyClassifier`."""
    return _seeded(seed, lambda: TinyClassifier(num_classes))  # type: ignore[return-value]


def tiny_segmenter(num_classes: int = 4, seed: int = 0) -> TinySegmenter:
    """A seeded :class:`TinySegmenter`."""
    return _seeded(seed, lambda: TinySegmenter(num_classes))  # type: ignore[return-value]


class _TinyBackbone(nn.Sequential):
    out_channels = 16

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
        )


def _rcnn_kwargs(num_classes: int, min_size: int, max_size: int) -> Dict[str, Any]:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    return dict(
        num_classes=None,  # given by box_predictor
        box_head=TwoMLPHead(_TinyBackbone.out_channels * 7 * 7, 64),
        box_predictor=FastRCNNPredictor(64, num_classes),
        min_size=min_size,
        max_size=max_size,
        rpn_anchor_generator=AnchorGenerator(sizes=((16, 32, 64),), aspect_ratios=((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        # random weights score every class about equally: keep low scores so
        # that the model returns boxes to test with
        box_score_thresh=0.01,
        box_detections_per_img=10,
        rpn_post_nms_top_n_test=100,
    )


def tiny_detector(num_classes: int = 3, seed: int = 0, min_size: int = 128, max_size: int = 256) -> nn.Module:
    """A seeded torchvision ``FasterRCNN`` on a two-conv backbone (class 0 is background)."""
    from torchvision.models.detection import FasterRCNN

    return _seeded(seed, lambda: FasterRCNN(_TinyBackbone(), **_rcnn_kwargs(num_classes, min_size, max_size)))


def tiny_instance_segmenter(num_classes: int = 3, seed: int = 0, min_size: int = 128, max_size: int = 256) -> nn.Module:
    """A seeded torchvision ``MaskRCNN`` on a two-conv backbone."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    return _seeded(
        seed,
        lambda: MaskRCNN(
            _TinyBackbone(),
            mask_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(_TinyBackbone.out_channels, [16, 16], 1),
            mask_predictor=MaskRCNNPredictor(16, 16, num_classes),
            **_rcnn_kwargs(num_classes, min_size, max_size),
        ),
    )


def tiny_keypoint_detector(
    num_classes: int = 2, num_keypoints: int = 5, seed: int = 0, min_size: int = 128, max_size: int = 256
) -> nn.Module:
    """A seeded torchvision ``KeypointRCNN`` on a two-conv backbone."""
    from torchvision.models.detection import KeypointRCNN
    from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    return _seeded(
        seed,
        lambda: KeypointRCNN(
            _TinyBackbone(),
            num_keypoints=None,  # given by keypoint_predictor
            keypoint_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=14, sampling_ratio=2),
            keypoint_head=KeypointRCNNHeads(_TinyBackbone.out_channels, [32, 32]),
            keypoint_predictor=KeypointRCNNPredictor(32, num_keypoints),
            **_rcnn_kwargs(num_classes, min_size, max_size),
        ),
    )


def tiny_classes(n: int, background: bool = False) -> List[str]:
    """``["class0", "class1", ...]``; with ``background`` index 0 is ``"__background__"``."""
    names = [f"class{i}" for i in range(n)]
    if background:
        names[0] = "__background__"
    return names


#: task -> (entrypoint, output processor, classes, extra config)
TASKS: Dict[str, Dict[str, Any]] = {
    "classification": {
        "entrypoint_fcn": "modelzoo.testing.tiny_classifier",
        "entrypoint_args": {"num_classes": 10},
        "output_processor_cls": "ClassifierOutputProcessor",
        "classes": tiny_classes(10),
        "image_size": 64,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "embeddings_layer": "<head",
    },
    "detection": {
        "entrypoint_fcn": "modelzoo.testing.tiny_detector",
        "entrypoint_args": {"num_classes": 3},
        "output_processor_cls": "DetectorOutputProcessor",
        "classes": tiny_classes(3, background=True),
        "raw_inputs": True,
    },
    "instance_segmentation": {
        "entrypoint_fcn": "modelzoo.testing.tiny_instance_segmenter",
        "entrypoint_args": {"num_classes": 3},
        "output_processor_cls": "InstanceSegmenterOutputProcessor",
        "classes": tiny_classes(3, background=True),
        "raw_inputs": True,
    },
    "keypoints": {
        "entrypoint_fcn": "modelzoo.testing.tiny_keypoint_detector",
        "entrypoint_args": {"num_classes": 2, "num_keypoints": 5},
        "output_processor_cls": "KeypointDetectorOutputProcessor",
        "classes": tiny_classes(2, background=True),
        "skeleton": {"labels": ["a", "b", "c", "d", "e"], "edges": [[0, 1], [1, 2], [2, 3], [3, 4]]},
        "raw_inputs": True,
    },
    "segmentation": {
        "entrypoint_fcn": "modelzoo.testing.tiny_segmenter",
        "entrypoint_args": {"num_classes": 4},
        "output_processor_cls": "SemanticSegmenterOutputProcessor",
        "classes": tiny_classes(4),
        "image_max_dim": 128,
    },
}


def tiny_model(task: str = "classification", **overrides: Any) -> Any:
    """A ready :class:`~modelzoo.torch_image.TorchImageModel` for ``task``
    (one of :data:`TASKS`), on the CPU unless ``device`` is overridden.

    Args:
        task: ``"classification"``, ``"detection"``, ``"instance_segmentation"``,
            ``"keypoints"`` or ``"segmentation"``.
        overrides: config settings that replace the task's defaults.
    """
    from .errors import ConfigError, did_you_mean
    from .torch_image import TorchImageModel

    if task not in TASKS:
        raise ConfigError(f"Unknown tiny model task {task!r}." + did_you_mean(task, TASKS) + f" Tasks: {', '.join(TASKS)}")
    config: Dict[str, Any] = {**TASKS[task], "device": "cpu", **overrides}
    return TorchImageModel(config)
