"""Segment Anything (SAM, SAM-HQ, SAM 2 / 2.1, EdgeTAM, SAM 3's tracker)
through transformers: promptable segmentation, as FiftyOne's SAM models do.

Each sample's prompts come from a field named for the run, as in FiftyOne::

    dataset.apply_model(model, label_field="masks", prompt_field="ground_truth")

A :class:`~modelzoo.Detections` field prompts with its boxes (each box gives
one Detection: the prompt's label and box, the mask inside the box, the
predicted IoU as its confidence); a :class:`~modelzoo.Keypoints` field with
the points of each keypoint set (a Detection boxed around its mask). Of SAM's
three candidate masks, the one of highest predicted IoU is kept. A sample
without prompts gets empty Detections.

The image processor runs in the loader workers; the image encoder runs
batched; the prompt encoder and mask decoder run once per image with all its
prompts. ``pretrained=False`` builds from a config with random weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import ModelError
from ..labels import Detection, Detections, Keypoints
from ..mixins import SamplesMixin
from ..models import Call
from ..transforms import ImageBatch
from .hf_models import HFImageModel, HFImageModelConfig

__all__ = ["HFSamModel", "HFSamModelConfig", "PROMPT_KEYS"]

#: the sample inputs a prompt comes from (FiftyOne's names)
PROMPT_KEYS = ("prompt_field", "box_prompt_field", "point_prompt_field")


@dataclasses.dataclass(init=False)
class HFSamModelConfig(HFImageModelConfig):
    """:class:`~modelzoo.zoo.hf_models.HFImageModelConfig` of a promptable segmenter.

    Attributes:
        mask_thresh: the mask probability above which a pixel is the object's.
        mask_index: which of SAM's three candidate masks to keep (None: the
            one of highest predicted IoU).
    """

    model_cls = "modelzoo.zoo.hf_sam.HFSamModel"

    mask_thresh: float = 0.5
    mask_index: Optional[int] = None

    def validate(self) -> None:
        if self.task is None:
            self.task = "promptable-segmentation"
        super().validate()
        if self.mask_index is not None and self.mask_index not in (0, 1, 2):
            from ..errors import ConfigError

            raise ConfigError(f"mask_index must be 0, 1, 2 or None (the best by predicted IoU), got {self.mask_index!r}")


class HFSamModel(SamplesMixin, HFImageModel):
    """A Segment Anything model of transformers (see the module's docstring)."""

    config_cls = HFSamModelConfig
    config: HFSamModelConfig
    _promptable = True

    @property
    def has_embeddings(self) -> bool:
        return False

    def predict(self, arg: Any, sample: Optional[Dict[str, Any]] = None) -> Any:
        """Segments the prompts of ``sample`` (``{"prompt_field": Detections or Keypoints}``) in one image."""
        return self.predict_all([arg], [sample])[0]

    def predict_all(self, args: Any, samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> List[Any]:
        return self._segment(self._as_batch(args), samples)

    def run_batch(self, inputs: Any, call: Call, samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> Any:
        if call.mode == "embed":
            raise ModelError(f"{self!r} computes no embeddings")
        return self._segment(self._as_batch(inputs, preprocess=self.preprocess and not call.loaded), samples)

    # -- the work ---------------------------------------------------------------------------
    def _segment(self, batch: ImageBatch, samples: Optional[Sequence[Optional[Dict[str, Any]]]]) -> List[Any]:
        given = list(samples) if samples is not None else [None] * len(batch)
        if len(given) != len(batch):
            raise ModelError(f"{self!r}: {len(batch)} images but {len(given)} samples of prompts")
        model: Any = self._module.model  # type: ignore[union-attr]
        results: List[Any] = [None] * len(batch)
        for indices, x in self._groups(batch):
            with torch.inference_mode():
                pixels = self._to_device(x, batch.normalize)
                embeddings = model.get_image_embeddings(pixels)
                for j, i in enumerate(indices):
                    one = [e[j: j + 1] for e in embeddings] if isinstance(embeddings, (list, tuple)) else embeddings[j: j + 1]
                    in_h, in_w = int(pixels.shape[-2]), int(pixels.shape[-1])
                    results[i] = self._segment_one(model, one, batch.image_sizes[i], (in_w, in_h), given[i])
        return results

    @property
    def _padded(self) -> bool:
        """SAM's processor pads the resized image to a square; SAM 2's stretches it."""
        return getattr(self._hf_processor, "pad_size", None) is not None

    def _resized(self, image_size: Tuple[int, int], input_size: Tuple[int, int]) -> Tuple[int, int]:
        """The ``(w, h)`` the image has inside the model's input: SAM resizes
        the longest edge and pads to a square; SAM 2 resizes to the square."""
        w, h = image_size
        in_w, in_h = input_size
        if self._padded:
            scale = max(in_w, in_h) / max(w, h)
            return int(w * scale + 0.5), int(h * scale + 0.5)
        return in_w, in_h

    def _segment_one(self, model: Any, embeddings: Any, image_size: Tuple[int, int], input_size: Tuple[int, int],
                     sample: Optional[Dict[str, Any]]) -> Detections:
        prompt = _prompt_of(sample)
        if prompt is None:
            return Detections()
        w, h = image_size
        rw, rh = self._resized(image_size, input_size)
        sx, sy = rw / w, rh / h
        device = self._device
        if isinstance(prompt, Detections):
            dets = [d for d in prompt.detections if d.bounding_box is not None]
            if not dets:
                return Detections()
            boxes = np.array([d.bounding_box for d in dets], dtype=np.float64) * [w, h, w, h]
            boxes[:, 2:] += boxes[:, :2]  # absolute x1, y1, x2, y2 in the original image
            scaled = torch.tensor(boxes * [sx, sy, sx, sy], dtype=torch.float32, device=device)
            out = model(image_embeddings=embeddings, input_boxes=scaled[None], multimask_output=True)
            labels = [d.label for d in dets]
            kept_boxes: List[Optional[np.ndarray]] = list(boxes)
        else:
            sets = [k for k in prompt.keypoints if any(p is not None and np.isfinite(p).all() for p in (k.points or []))]
            if not sets:
                return Detections()
            n = max(len([p for p in k.points if np.isfinite(p).all()]) for k in sets)
            points = torch.zeros(1, len(sets), n, 2)
            point_labels = torch.full((1, len(sets), n), -10, dtype=torch.long)  # -10: padding, as transformers pads
            for s, k in enumerate(sets):
                valid = [p for p in k.points if np.isfinite(p).all()]
                for t, (px, py) in enumerate(valid):
                    points[0, s, t] = torch.tensor([px * w * sx, py * h * sy])
                    point_labels[0, s, t] = 1
            out = model(image_embeddings=embeddings, input_points=points.to(device), input_labels=point_labels.to(device),
                        multimask_output=True)
            labels = [k.label for k in sets]
            kept_boxes = [None] * len(sets)
        masks, scores = _best_masks(out.pred_masks[0], out.iou_scores[0], self.config.mask_index)
        logits = _to_image(masks, input_size, (rw, rh), (w, h), self._padded)
        thresh = min(max(float(self.config.mask_thresh), 1e-12), 1 - 1e-12)
        cut = math.log(thresh / (1 - thresh))  # on the logits: a sigmoid rounds values near 0 to exactly 0.5
        found = []
        for label, box, logit, score in zip(labels, kept_boxes, logits, scores.tolist()):
            mask = (logit > cut).numpy()
            det = _detection(label, box, mask, float(min(score, 1.0)), (w, h))
            if det is not None:
                found.append(det)
        return Detections(detections=found)

    def __repr__(self) -> str:
        return f"HFSamModel({self.config.repo!r})"


def _prompt_of(sample: Optional[Dict[str, Any]]) -> Any:
    """The sample's box or point prompts (a Detections or Keypoints), or None."""
    sample = sample or {}
    for key in PROMPT_KEYS:
        if key not in sample:
            continue
        value = sample[key]
        if value is None:  # this sample has no prompts
            return None
        if isinstance(value, (Detections, Keypoints)):
            return value
        raise ModelError(
            f"the {key} of a Segment Anything run must be a Detections (box prompts) or Keypoints (point prompts) "
            f"field, got {type(value).__name__}: apply_model(..., prompt_field='<a Detections or Keypoints field>')"
        )
    raise ModelError(
        "a Segment Anything model segments prompts: pass the field they come from, "
        "apply_model(..., prompt_field='ground_truth') (a Detections or Keypoints field), "
        f"or predict(image, {{'prompt_field': Detections(...)}}); the sample gave {sorted(sample) or 'no fields'}"
    )


def _best_masks(masks: torch.Tensor, iou: torch.Tensor, index: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Of each prompt's candidate masks ``(K, M, h, w)`` (scores ``(K, M)``), the chosen one: ``(K, h, w)``, ``(K,)``."""
    rows = torch.arange(masks.shape[0], device=masks.device)
    pick = torch.full_like(rows, index) if index is not None else iou.argmax(1)
    return masks[rows, pick].float().cpu(), iou[rows, pick].float().cpu()


def _to_image(masks: torch.Tensor, input_size: Tuple[int, int], resized: Tuple[int, int],
              image_size: Tuple[int, int], padded: bool) -> torch.Tensor:
    """Low-resolution mask logits ``(K, h, w)`` -> logits ``(K, H, W)`` at
    the image's size: up to the input, the padding cut, down to the image
    (transformers' ``post_process_masks``)."""
    f = torch.nn.functional
    in_w, in_h = input_size
    rw, rh = resized
    w, h = image_size
    up = masks[:, None]
    if padded:  # SAM: cut the padding at the input's scale (SAM 2 pads nothing: one resize)
        up = f.interpolate(up, size=(in_h, in_w), mode="bilinear", align_corners=False)[..., :rh, :rw]
    return f.interpolate(up, size=(h, w), mode="bilinear", align_corners=False)[:, 0]


def _detection(label: Optional[str], box: Optional[np.ndarray], mask: np.ndarray, score: float,
               size: Tuple[int, int]) -> Optional[Detection]:
    """A box prompt keeps its box (the mask inside it); a point prompt's box is its mask's extent."""
    w, h = size
    if box is None:
        ys, xs = np.nonzero(mask)
        if not len(xs):
            return None
        x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    else:
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
        x2, y2 = min(max(x2, x1 + 1), w), min(max(y2, y1 + 1), h)
    crop = mask[y1:y2, x1:x2]
    return Detection(label=label, bounding_box=[x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h],
                     confidence=score, mask=crop)
