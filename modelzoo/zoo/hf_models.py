"""The models of the transformers zoo source: a Hugging Face vision model as a
:class:`~modelzoo.TorchImageModel` (``modelzoo[transformers]``).

* :class:`HFImageTransform` runs the repository's image processor on each
  image in the engine's loader workers (the collate stacks same-size
  outputs into a batch); picklable.
* :class:`HFNet` wraps the transformers module so that its forward takes
  ``pixel_values`` and returns what the zoo's output processors take:
  logits (classification), torchvision-style per-image dicts (detection,
  instance segmentation, keypoints), per-class scores (semantic
  segmentation), a depth map (depth, as a :class:`~modelzoo.Heatmap`) or
  pooled features (embeddings). Zero-shot models (CLIP/SigLIP classifiers,
  OWL-ViT/OWLv2/Grounding DINO detectors) take their classes as text
  prompts, tokenized and (for classifiers) embedded once, when the model is
  built.
* :func:`build_hf` builds it from a repository (its weights through the
  Hugging Face hub cache: ``HF_HOME``, ``HF_HUB_OFFLINE``) or, for
  ``pretrained=False``, from a config with seeded random weights.

The task of a repository comes from its config (:func:`task_of`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError
from ..mixins import ClassPrompts
from ..torch_image import TorchImageModel
from ..torch_image_config import TorchImageModelConfig
from ..transforms import ImageInput, ImageTransform, Size

__all__ = [
    "HFImageModel",
    "HFImageModelConfig",
    "TASKS",
    "task_of",
    "HFImageTransform",
    "HFNet",
    "build_hf",
    "load_hf_config",
    "COCO_KEYPOINTS",
]

#: the zoo's task -> (transformers Auto class, output processor, label type)
TASKS: Dict[str, Tuple[str, Optional[str], str]] = {
    "image-classification": ("AutoModelForImageClassification", "ClassifierOutputProcessor", "Classification"),
    "object-detection": ("AutoModelForObjectDetection", "DetectorOutputProcessor", "Detections"),
    "zero-shot-object-detection": ("AutoModelForZeroShotObjectDetection", "DetectorOutputProcessor", "Detections"),
    "zero-shot-image-classification": ("AutoModel", None, "Classification"),
    "semantic-segmentation": ("AutoModelForSemanticSegmentation", "SemanticSegmenterOutputProcessor", "Segmentation"),
    "universal-segmentation": ("AutoModelForUniversalSegmentation", "SemanticSegmenterOutputProcessor", "Segmentation"),
    "instance-segmentation": ("AutoModelForUniversalSegmentation", "InstanceSegmenterOutputProcessor", "Detections"),
    "panoptic-segmentation": ("AutoModelForUniversalSegmentation", "InstanceSegmenterOutputProcessor", "Detections"),
    "zero-shot-semantic-segmentation": ("AutoModel", "SemanticSegmenterOutputProcessor", "Segmentation"),
    "promptable-segmentation": ("AutoModel", None, "Detections"),
    "depth-estimation": ("AutoModelForDepthEstimation", "HeatmapOutputProcessor", "Heatmap"),
    "keypoints": ("VitPoseForPoseEstimation", "KeypointDetectorOutputProcessor", "Keypoints"),
    "image-feature-extraction": ("AutoModel", None, "embeddings"),
}

_ZERO_SHOT_CLASSIFIERS = {"clip", "siglip", "siglip2", "chinese_clip", "altclip", "align", "metaclip_2"}
_ZERO_SHOT_DETECTORS = {"owlvit", "owlv2", "grounding-dino", "mm-grounding-dino", "omdet-turbo"}
#: Segment Anything and its successors: masks from box or point prompts (:mod:`modelzoo.zoo.hf_sam`)
PROMPTABLE_SEGMENTERS = {"sam", "sam_hq", "sam2", "sam3_tracker", "edgetam"}
#: universal segmenters: one head, the task chosen by the entry (OneFormer's also by a task token)
_UNIVERSAL = ("mask2former", "maskformer", "oneformer")
_UNIVERSAL_TASKS = ("semantic-segmentation", "instance-segmentation", "panoptic-segmentation")
_SIGMOID_DETECTORS = {"conditional_detr", "deformable_detr", "rt_detr", "rt_detr_v2", "d_fine", "dab-detr", "deimv2", "lw_detr", "rf_detr"}

COCO_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
]
COCO_SKELETON = [[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8], [7, 9],
                 [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6]]


def task_of(config: Any, hint: Optional[str] = None) -> str:
    """The zoo's task for a transformers config: from its model type and
    architecture (``config.architectures``), or ``hint`` when the config
    names none (a Mask2Former repository's semantic or instance head).

    Raises:
        ConfigError: a config of no vision task the zoo maps.
    """
    model_type = getattr(config, "model_type", "")
    archs = list(getattr(config, "architectures", None) or [])
    arch = archs[0] if archs else ""
    if model_type in _ZERO_SHOT_CLASSIFIERS:
        return "zero-shot-image-classification"
    if model_type in _ZERO_SHOT_DETECTORS:
        return "zero-shot-object-detection"
    if model_type == "vitpose":
        return "keypoints"
    if model_type == "groupvit":
        return "zero-shot-semantic-segmentation"
    if model_type in PROMPTABLE_SEGMENTERS:
        return "promptable-segmentation"
    if model_type in _UNIVERSAL:
        return hint if hint in _UNIVERSAL_TASKS else "semantic-segmentation"
    if model_type == "rf_detr":  # one architecture, two heads
        segments = hint == "instance-segmentation" or arch.endswith("InstanceSegmentation")
        return "instance-segmentation" if segments else "object-detection"
    from transformers.models.auto import modeling_auto as ma

    table = [
        ("object-detection", ma.MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES),
        ("semantic-segmentation", ma.MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES),
        ("depth-estimation", ma.MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES),
    ]
    if hint in TASKS and hint != "image-feature-extraction":
        return hint
    for task, mapping in table:
        if model_type in mapping and (not arch or arch == mapping[model_type]):
            return task
    if arch.endswith("ForImageClassification") or (not arch and hint == "image-classification"):
        return "image-classification"
    if model_type in ma.MODEL_FOR_IMAGE_MAPPING_NAMES or arch.endswith("Model") or hint == "image-feature-extraction":
        return "image-feature-extraction"
    raise ConfigError(
        f"transformers model type {model_type!r} (architecture {arch or 'unnamed'}) is no vision task the zoo maps; "
        f"the tasks are {', '.join(TASKS)}"
    )


def load_hf_config(repo: str, model_type: Optional[str] = None, local_only: bool = False) -> Any:
    """The repository's config from the hub (or, ``local_only``, its cache
    alone); when it is not there, transformers' default config of
    ``model_type``."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(repo, local_files_only=local_only)
    except (OSError, ValueError) as e:
        if model_type is None:
            raise ConfigError(
                f"Cannot read the config of Hugging Face repository {repo!r} ({e}); connect to the hub once, "
                "or pass hf_config= (a transformers config) to build it without weights"
            ) from None
        return AutoConfig.for_model(model_type)


class HFImageTransform(ImageTransform):
    """A transformers image processor as the zoo's per-image transform
    (run in the loader workers): uint8 pixels -> ``pixel_values[0]``.
    ViTPose's processor gets the whole image as the person box."""

    def __init__(self, processor: Any, whole_image_box: bool = False):
        super().__init__(None, None, None, None, None)
        self.processor = processor
        self.whole_image_box = whole_image_box

    def target_size(self, width: int, height: int) -> Size:
        return (width, height)

    def apply_tensor(self, pixels: torch.Tensor, image_size: Size, defer_normalize: bool = False) -> ImageInput:
        kwargs: Dict[str, Any] = {"return_tensors": "pt"}
        h, w = int(pixels.shape[1]), int(pixels.shape[2])
        if self.whole_image_box:
            kwargs["boxes"] = [[[0.0, 0.0, float(w), float(h)]]]
        out = self.processor(images=pixels.contiguous(), **kwargs)
        values = out["pixel_values"][0].float().contiguous()
        return ImageInput(values, (int(image_size[0]), int(image_size[1])))

    def __repr__(self) -> str:
        return f"HFImageTransform({type(self.processor).__name__})"


def _features(out: Any) -> torch.Tensor:
    """A tensor, or a model output's pooled features (transformers 5 returns outputs from get_*_features)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(out, key, None)
        if value is not None:
            return value
    return out[0]


class _CharTokenizer:
    """A stand-in tokenizer for ``pretrained=False`` zero-shot models whose
    tokenizer files are not on this machine: characters -> ids below the
    vocabulary size (random weights read them as well as real tokens)."""

    def __init__(self, vocab_size: int, max_length: int = 16):
        self.vocab_size = int(vocab_size)
        self.max_length = max_length

    def __call__(self, text: Sequence[str], **kwargs: Any) -> Dict[str, torch.Tensor]:
        length = int(kwargs["max_length"]) if kwargs.get("padding") == "max_length" and kwargs.get("max_length") else self.max_length
        ids = torch.ones(len(text), length, dtype=torch.long)
        mask = torch.zeros(len(text), length, dtype=torch.long)
        for i, t in enumerate(text):
            codes = [2 + (ord(c) % (self.vocab_size - 2)) for c in t][: length]
            ids[i, : len(codes)] = torch.tensor(codes or [2])
            mask[i, : max(len(codes), 1)] = 1
        return {"input_ids": ids, "attention_mask": mask}


class HFNet(torch.nn.Module):
    """A transformers vision module whose forward takes ``pixel_values``
    ``FloatTensor[N, 3, H, W]`` and returns the zoo processor's input for
    ``task`` (see the module's docstring).

    Args:
        model: the transformers model.
        task: a key of :data:`TASKS`.
        tokenizer: the text tokenizer of a zero-shot model (and OneFormer's task token).
        prompts: a zero-shot detector's or segmenter's class prompts.
        top_k: detections kept per image.
        query_thresh: a panoptic segment's least class score (transformers' default, 0.5).
    """

    def __init__(self, model: torch.nn.Module, task: str, tokenizer: Any = None,
                 prompts: Optional[Sequence[str]] = None, top_k: int = 100, query_thresh: float = 0.5):
        super().__init__()
        self.model = model
        self.task = task
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.query_thresh = float(query_thresh)
        self.model_type = getattr(model.config, "model_type", "")
        self.prompts = list(prompts or [])
        self._text: Dict[str, torch.Tensor] = {}
        self._task_inputs: Optional[torch.Tensor] = None
        if self.model_type == "oneformer":
            self._task_inputs = self._oneformer_task(task)
        if task in ("zero-shot-object-detection", "zero-shot-semantic-segmentation"):
            self._tokenize_prompts()

    # -- zero-shot --------------------------------------------------------------------------
    def _tokenize_prompts(self) -> None:
        if not self.prompts:
            raise ConfigError("A zero-shot detector or segmenter needs classes: load_zoo_model(name, classes=[...])")
        self._text = self.text_state(self.prompts)

    def text_state(self, prompts: Sequence[str]) -> Dict[str, torch.Tensor]:
        """What the forward takes for ``prompts`` (a zero-shot detector's or
        segmenter's classes): their tokens, or (GroupViT) their embeddings.
        Computed once per set of classes; the module is not changed."""
        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ConfigError("A zero-shot detector or segmenter needs at least one class")
        if self.model_type in ("grounding-dino", "mm-grounding-dino"):
            # one text for all classes, "a. b. c."; each token remembers its class
            text = ". ".join(p.lower() for p in prompts) + "."
            enc = self.tokenizer([text], return_tensors="pt", padding=True)
            token_class = torch.full((enc["input_ids"].shape[1],), -1, dtype=torch.long)
            for c, (a, b) in enumerate(self._class_token_spans(prompts, enc)):
                token_class[a:b] = c
            return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "token_class": token_class,
                    "num_classes": torch.tensor(len(prompts))}
        if self.model_type == "omdet-turbo":
            kwargs: Dict[str, Any] = {"return_tensors": "pt", "padding": "max_length", "truncation": True, "max_length": 77}
            if isinstance(self.tokenizer, _CharTokenizer):
                kwargs["max_length"] = self.tokenizer.max_length
            classes = self.tokenizer(prompts, **kwargs)
            task = self.tokenizer([f"Detect {', '.join(prompts)}."], **kwargs)
            return {"classes_input_ids": classes["input_ids"], "classes_attention_mask": classes["attention_mask"],
                    "tasks_input_ids": task["input_ids"], "tasks_attention_mask": task["attention_mask"]}
        if self.model_type == "groupvit":
            enc = self.tokenizer([f"a photo of a {p}" for p in prompts], return_tensors="pt", padding=True)
            device = next(self.model.parameters()).device
            with torch.inference_mode():
                out = self.model.text_model(input_ids=enc["input_ids"].to(device),  # type: ignore[operator]
                                            attention_mask=enc["attention_mask"].to(device))
                embeds = self.model.text_projection(out.pooler_output)  # type: ignore[operator]
            return {"text_embeds": torch.nn.functional.normalize(embeds, dim=-1).cpu()}
        enc = self.tokenizer(prompts, return_tensors="pt", padding="max_length" if self.model_type == "owlv2" else True,
                             truncation=True, max_length=16)
        return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _class_token_spans(self, prompts: Sequence[str], enc: Any) -> List[Tuple[int, int]]:
        """Token ranges of each class in the joined Grounding DINO text."""
        spans = []
        ids = enc["input_ids"][0].tolist()
        pos = 1  # after [CLS]
        for p in prompts:
            n = len(self.tokenizer([p.lower()], add_special_tokens=False)["input_ids"][0]) if not isinstance(self.tokenizer, _CharTokenizer) else len(p)
            spans.append((pos, min(pos + n, len(ids))))
            pos += n + 1  # the "." after each class
        return spans

    def _oneformer_task(self, task: str) -> torch.Tensor:
        """OneFormer's task token, ``"the task is semantic"`` (instance, panoptic), tokenized once."""
        name = {"instance-segmentation": "instance", "panoptic-segmentation": "panoptic"}.get(task, "semantic")
        length = int(getattr(self.model.config, "task_seq_len", 77))
        enc = self.tokenizer([f"the task is {name}"], return_tensors="pt", padding="max_length", truncation=True,
                             max_length=length)
        return enc["input_ids"]

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixel_values))  # type: ignore[operator]

    def encode_text(self, prompts: Sequence[str]) -> torch.Tensor:
        kwargs: Dict[str, Any] = {"return_tensors": "pt", "padding": "max_length" if self.model_type.startswith("siglip") else True}
        if not isinstance(self.tokenizer, _CharTokenizer):
            kwargs["truncation"] = True
        enc = self.tokenizer(list(prompts), **kwargs)
        params = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        if self.model_type.startswith("siglip"):
            params.pop("attention_mask", None)
        return _features(self.model.get_text_features(**params))  # type: ignore[operator]

    @property
    def logit_scale(self) -> Optional[torch.Tensor]:
        return getattr(self.model, "logit_scale", None)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, pixel_values: torch.Tensor, prompts: Any = None) -> Any:
        """``prompts``: a run's :class:`~modelzoo.mixins.ClassPrompts` (its
        ``text`` from :meth:`text_state`) instead of the module's own classes."""
        task = self.task
        n, _, h, w = pixel_values.shape
        if task == "zero-shot-image-classification":
            return self.encode_image(pixel_values)
        text = self._text if prompts is None or prompts.text is None else prompts.text
        if task == "zero-shot-object-detection":
            return self._zero_shot_detect(pixel_values, text)
        if task == "zero-shot-semantic-segmentation":
            return self._zero_shot_segment(pixel_values, text["text_embeds"])
        if task == "keypoints":
            kwargs = {}
            if getattr(getattr(self.model.config, "backbone_config", None), "num_experts", 1) > 1:
                kwargs["dataset_index"] = torch.zeros(n, dtype=torch.long, device=pixel_values.device)
            heatmaps = self.model(pixel_values=pixel_values, **kwargs).heatmaps
            return _keypoints(heatmaps, (w, h))
        if self._task_inputs is not None:
            out = self.model(pixel_values=pixel_values, task_inputs=self._task_inputs.to(pixel_values.device).expand(n, -1))
        else:
            out = self.model(pixel_values=pixel_values)
        if task == "image-classification":
            return out.logits
        if task == "object-detection":
            return _detections(out.logits, out.pred_boxes, (w, h), self.model_type in _SIGMOID_DETECTORS or
                               bool(getattr(self.model.config, "use_focal_loss", False)), self.top_k)
        if task == "semantic-segmentation" and hasattr(out, "logits"):
            return torch.nn.functional.interpolate(out.logits, size=(h, w), mode="bilinear", align_corners=False)
        if task in ("semantic-segmentation", "universal-segmentation"):
            classes = out.class_queries_logits.softmax(-1)[..., :-1]
            masks = torch.nn.functional.interpolate(out.masks_queries_logits, size=(h, w), mode="bilinear",
                                                    align_corners=False).sigmoid()
            return torch.einsum("bqc,bqhw->bchw", classes, masks)
        if task == "instance-segmentation" and getattr(out, "pred_masks", None) is not None:  # RF-DETR
            return _box_instances(out.logits, out.pred_boxes, out.pred_masks, (w, h), self.top_k)
        if task == "instance-segmentation":
            return _instances(out.class_queries_logits, out.masks_queries_logits, (w, h), self.top_k)
        if task == "panoptic-segmentation":
            return _panoptic(out.class_queries_logits, out.masks_queries_logits, (w, h), self.query_thresh)
        if task == "depth-estimation":
            depth = out.predicted_depth
            if depth.shape[-2:] != (h, w):
                depth = torch.nn.functional.interpolate(depth.unsqueeze(1), size=(h, w), mode="bilinear",
                                                        align_corners=False).squeeze(1)
            return depth
        if task == "image-feature-extraction":
            pooled = getattr(out, "pooler_output", None)
            return pooled if pooled is not None else out.last_hidden_state[:, 0]
        raise ConfigError(f"Unknown task {task!r}; the tasks are {', '.join(TASKS)}")

    def _zero_shot_detect(self, pixel_values: torch.Tensor, text: Dict[str, torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        n, _, h, w = pixel_values.shape
        device = pixel_values.device
        if "token_class" in text:  # Grounding DINO: one text per image, logits over its tokens
            inputs = {k: text[k].to(device).expand(n, -1) for k in ("input_ids", "attention_mask")}
            out = self.model(pixel_values=pixel_values, **inputs)
            token_class = text["token_class"].to(device)
            per_token = out.logits.sigmoid()  # (N, Q, T)
            c = int(text["num_classes"])
            scores = torch.zeros(*per_token.shape[:2], c, device=per_token.device)
            for k in range(c):
                cols = (token_class[: per_token.shape[-1]] == k).nonzero().flatten()
                if len(cols):
                    scores[..., k] = per_token[..., cols].max(-1).values
            return _detections_from_scores(scores, out.pred_boxes, (w, h), self.top_k)
        if "classes_input_ids" in text:  # OmDet-Turbo: every class's tokens and the task sentence
            c = int(text["classes_input_ids"].shape[0])
            out = self.model(
                pixel_values=pixel_values,
                classes_input_ids=text["classes_input_ids"].to(device).repeat(n, 1),
                classes_attention_mask=text["classes_attention_mask"].to(device).repeat(n, 1),
                tasks_input_ids=text["tasks_input_ids"].to(device).expand(n, -1),
                tasks_attention_mask=text["tasks_attention_mask"].to(device).expand(n, -1),
                classes_structure=torch.full((n,), c, dtype=torch.long, device=device),
            )
            scores = out.decoder_class_logits[..., :c].sigmoid()  # (N, Q, C)
            found = _detections_from_scores(scores, out.decoder_coord_logits, (w, h), self.top_k)
            return [_nms(d) for d in found]
        inputs = {k: v.to(device).repeat(n, 1) for k, v in text.items()}
        out = self.model(pixel_values=pixel_values, **inputs)
        scores = out.logits.sigmoid()  # (N, Q, C)
        return _detections_from_scores(scores, out.pred_boxes, (w, h), self.top_k)

    def _zero_shot_segment(self, pixel_values: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """GroupViT: each group's similarity to each class's text, spread over
        the pixels the group attends to: ``(N, C, H, W)`` at the input size."""
        from transformers.models.groupvit.modeling_groupvit import get_grouping_from_attentions

        model: Any = self.model
        vision = model.vision_model(pixel_values=pixel_values, output_attentions=True, return_dict=True)
        groups = vision.last_hidden_state  # (N, G, hidden)
        group_embeds = model.visual_projection(groups.reshape(-1, groups.shape[-1]))
        group_embeds = torch.nn.functional.normalize(group_embeds, dim=-1)
        scale = model.logit_scale.exp()
        text = text_embeds.to(pixel_values.device, group_embeds.dtype)
        logits = (group_embeds @ text.T * scale).reshape(groups.shape[0], groups.shape[1], -1).permute(0, 2, 1)
        grouping = get_grouping_from_attentions(vision.attentions, pixel_values.shape[2:])  # (N, G, H, W)
        seg = torch.matmul(logits, grouping.flatten(2)) * scale
        return seg.reshape(seg.shape[0], seg.shape[1], *grouping.shape[2:])


def _nms(found: Dict[str, torch.Tensor], iou: float = 0.5) -> Dict[str, torch.Tensor]:
    """Per-class non-maximum suppression (OmDet-Turbo's post-processing)."""
    from torchvision.ops import batched_nms

    keep = batched_nms(found["boxes"], found["scores"], found["labels"], iou)
    return {k: v[keep] for k, v in found.items()}


def _xyxy(boxes: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Relative ``cx, cy, w, h`` -> absolute ``x1, y1, x2, y2`` in an input of ``size`` (w, h)."""
    w, h = size
    cx, cy, bw, bh = boxes.unbind(-1)
    return torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], dim=-1)


def _detections(logits: torch.Tensor, boxes: torch.Tensor, size: Tuple[int, int], sigmoid: bool,
                top_k: int) -> List[Dict[str, torch.Tensor]]:
    """DETR-style outputs: ``logits (N, Q, C[+1])``, ``pred_boxes (N, Q, 4)``."""
    scores = logits.sigmoid() if sigmoid else logits.softmax(-1)[..., :-1]  # softmax: the last class is "no object"
    return _detections_from_scores(scores, boxes, size, top_k)


def _detections_from_scores(scores: torch.Tensor, boxes: torch.Tensor, size: Tuple[int, int],
                            top_k: int, with_queries: bool = False) -> List[Dict[str, torch.Tensor]]:
    """The top-k (query, class) scores ``(N, Q, C)`` with their queries' boxes
    ``(N, Q, 4)`` -> one torchvision-style dict per image (``queries``: the
    query of each, when asked)."""
    out = []
    for s, b in zip(scores, boxes):
        flat = s.flatten()
        k = min(top_k, flat.numel())
        values, idx = flat.topk(k)
        q, c = idx // s.shape[-1], idx % s.shape[-1]
        found = {"boxes": _xyxy(b[q].float(), size), "labels": c.long(), "scores": values.float()}
        if with_queries:
            found["queries"] = q
        out.append(found)
    return out


def _instances(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: Tuple[int, int],
               top_k: int) -> List[Dict[str, torch.Tensor]]:
    """Mask2Former queries -> instance dicts with boxes from the masks."""
    w, h = size
    out = []
    probs = class_logits.softmax(-1)[..., :-1]
    masks = torch.nn.functional.interpolate(mask_logits, size=(h, w), mode="bilinear", align_corners=False).sigmoid()
    for p, m in zip(probs, masks):
        flat = p.flatten()
        values, idx = flat.topk(min(top_k, flat.numel()))
        q, c = idx // p.shape[-1], idx % p.shape[-1]
        mm = m[q]
        binary = mm > 0.5
        mask_score = (mm * binary).flatten(1).sum(1) / binary.flatten(1).sum(1).clamp(min=1)
        boxes = torch.zeros(len(q), 4)
        for j, bm in enumerate(binary):
            ys, xs = bm.nonzero(as_tuple=True)
            if len(xs):
                boxes[j] = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        out.append({"boxes": boxes, "labels": c.long(), "scores": (values * mask_score).float(), "masks": mm.unsqueeze(1)})
    return out


def _box_instances(logits: torch.Tensor, boxes: torch.Tensor, mask_logits: torch.Tensor, size: Tuple[int, int],
                   top_k: int) -> List[Dict[str, torch.Tensor]]:
    """RF-DETR's instances (transformers' ``post_process_instance_segmentation``):
    the top-k (query, class) sigmoid scores, each query's box ``(cx, cy, w,
    h)`` relative, its mask logits at a quarter of the input -> instance
    dicts with mask probabilities over the input of ``size`` (w, h)."""
    w, h = size
    out = []
    for i, d in enumerate(_detections_from_scores(logits.sigmoid(), boxes, size, top_k, with_queries=True)):
        q = d.pop("queries")
        masks = torch.nn.functional.interpolate(mask_logits[i, q][:, None].float(), size=(h, w), mode="bilinear",
                                                align_corners=False).sigmoid()
        out.append({**d, "masks": masks})
    return out


def _panoptic(class_logits: torch.Tensor, mask_logits: torch.Tensor, size: Tuple[int, int],
              thresh: float, overlap: float = 0.8) -> List[Dict[str, torch.Tensor]]:
    """Mask2Former/OneFormer queries -> panoptic segments, as transformers'
    ``post_process_panoptic_segmentation`` makes them (unfused): the queries
    whose best class (not "no object") scores above ``thresh`` compete for
    each pixel (score x mask probability); a query keeps the pixels it wins
    when they are more than ``overlap`` of its own (score-weighted) mask.
    Each segment is an instance dict (its box from its pixels, its binary
    mask over the input of ``size`` (w, h)), so segments never overlap."""
    w, h = size
    out = []
    probs = class_logits.softmax(-1)
    masks = torch.nn.functional.interpolate(mask_logits.sigmoid(), size=(h, w), mode="bilinear", align_corners=False)
    no_object = class_logits.shape[-1] - 1
    for p, m in zip(probs, masks):
        scores, labels = p.max(-1)
        keep = (labels != no_object) & (scores > thresh)
        scores, labels = scores[keep], labels[keep]
        weighted = m[keep] * scores[:, None, None]
        boxes, kept = [], []
        if len(scores):
            winner = weighted.argmax(0)  # (H, W): the query each pixel goes to
            for q in range(len(scores)):
                region = winner == q
                area, own_area = int(region.sum()), int((weighted[q] >= 0.5).sum())
                if area == 0 or own_area == 0 or not area / own_area > overlap:
                    continue
                ys, xs = region.nonzero(as_tuple=True)
                boxes.append(torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32))
                kept.append((q, region))
        out.append({
            "boxes": torch.stack(boxes) if kept else torch.zeros(0, 4),
            "labels": labels[[q for q, _ in kept]].long() if kept else torch.zeros(0, dtype=torch.long),
            "scores": scores[[q for q, _ in kept]].float() if kept else torch.zeros(0),
            "masks": torch.stack([r.float() for _, r in kept]).unsqueeze(1) if kept else torch.zeros(0, 1, h, w),
        })
    return out


def _keypoints(heatmaps: torch.Tensor, size: Tuple[int, int]) -> List[Dict[str, torch.Tensor]]:
    """ViTPose heatmaps ``(N, K, h, w)`` over the whole input -> one person per
    image, each point at its heatmap's maximum."""
    w, h = size
    n, k, hh, ww = heatmaps.shape
    flat = heatmaps.flatten(2)
    peak, idx = flat.max(-1)
    xs = (idx % ww).float().add(0.5) * (w / ww)
    ys = (idx // ww).float().add(0.5) * (h / hh)
    out = []
    for i in range(n):
        points = torch.stack([xs[i], ys[i], torch.ones(k)], dim=-1).unsqueeze(0)
        conf = peak[i].clamp(1e-6, 1 - 1e-6)
        out.append({
            "boxes": torch.tensor([[0.0, 0.0, float(w), float(h)]]),
            "labels": torch.zeros(1, dtype=torch.long),
            "scores": conf.mean().reshape(1),
            "keypoints": points,
            "keypoints_scores": torch.log(conf / (1 - conf)).unsqueeze(0),
        })
    return out


def _auto_class(task: str, model_type: str) -> Any:
    import transformers

    name = TASKS[task][0]
    if model_type in _UNIVERSAL:
        name = "AutoModelForUniversalSegmentation"  # one head for semantic, instance and panoptic outputs
    if model_type == "rf_detr":
        name = "RfDetrForInstanceSegmentation" if task == "instance-segmentation" else "RfDetrForObjectDetection"
    if task == "keypoints":
        from transformers.models.auto import modeling_auto as ma

        name = ma.MODEL_FOR_POSE_ESTIMATION_MAPPING_NAMES.get(model_type, name) if hasattr(ma, "MODEL_FOR_POSE_ESTIMATION_MAPPING_NAMES") else name
    if task == "zero-shot-object-detection":
        name = "AutoModelForZeroShotObjectDetection"
    return getattr(transformers, name)


#: model types whose repositories use another type's image processor
_PROCESSOR_OF = {"rt_detr_v2": "rt_detr", "d_fine": "rt_detr", "mm-grounding-dino": "grounding-dino",
                 "dinov2_with_registers": "dinov2"}


def _default_processor(model_type: str, config: Any) -> Any:
    """transformers' default image processor of ``model_type`` (no files needed)."""
    import transformers
    from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING_NAMES

    names = IMAGE_PROCESSOR_MAPPING_NAMES.get(_PROCESSOR_OF.get(model_type, model_type))
    if isinstance(names, dict):
        name = names.get("torchvision") or names.get("pil")
    elif isinstance(names, (list, tuple)):
        name = next((n for n in names if n), None)
    else:
        name = names
    if not name:
        raise ConfigError(f"transformers has no image processor for model type {model_type!r}")
    cls = getattr(transformers, name)
    default = cls()
    inner = getattr(config, "vision_config", None) or getattr(config, "backbone_config", None) or config
    image_size = getattr(inner, "image_size", None)
    if model_type in ("omdet-turbo", "rf_detr"):  # a fixed square input (OmDet-Turbo's 640, RF-DETR's backbone's)
        given: Any = getattr(config, "image_size", None) or getattr(getattr(config, "backbone_config", None), "image_size", None)
        side = int(given if isinstance(given, int) else given[0]) if given else 640
        return cls(size={"height": side, "width": side})
    if model_type in PROMPTABLE_SEGMENTERS:  # sized by the vision tower's input
        return _promptable_processor(cls, default, config)
    if model_type in ("detr", "rt_detr", "rt_detr_v2", "d_fine", "conditional_detr", "deformable_detr", "yolos",
                      "grounding-dino", "mm-grounding-dino", "mask2former", "oneformer", "segformer", "depth_anything",
                      "dpt") \
            or image_size is None:
        return default  # sizes free of the architecture: the processor's defaults hold
    h, w = (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))
    kwargs: Dict[str, Any] = {}
    for key in ("size", "crop_size"):
        current = getattr(default, key, None)
        if current is None:
            continue
        if isinstance(current, dict):
            keys = [k for k in current if current[k]]
        else:  # transformers 5's SizeDict
            keys = [k for k in ("shortest_edge", "height", "width") if getattr(current, k, None)]
        if "height" in keys and "width" in keys:
            kwargs[key] = {"height": h, "width": w}
        elif "shortest_edge" in keys:
            kwargs[key] = {"shortest_edge": min(h, w)}
    return cls(**kwargs) if kwargs else default


def _promptable_processor(cls: Any, default: Any, config: Any) -> Any:
    """A SAM-family image processor for the vision tower's input size
    (SAM: longest edge then padding to a square; SAM 2: a square resize)."""
    vision = getattr(config, "vision_config", None)
    size = getattr(vision, "image_size", None)
    if size is None:
        size = getattr(getattr(vision, "backbone_config", None), "image_size", None)
    if size is None:
        return default
    side = int(size if isinstance(size, int) else size[0])
    current = getattr(default, "size", None)
    if getattr(current, "longest_edge", None) or (isinstance(current, dict) and current.get("longest_edge")):
        return cls(size={"longest_edge": side}, pad_size={"height": side, "width": side})
    return cls(size={"height": side, "width": side})


def build_hf(
    repo: str,
    task: str,
    pretrained: bool = False,
    model_type: Optional[str] = None,
    hf_config: Any = None,
    prompts: Optional[Sequence[str]] = None,
    top_k: int = 100,
    query_thresh: float = 0.5,
) -> Tuple[HFNet, Any]:
    """The wrapped module and its image processor.

    Args:
        repo: the Hugging Face repository (``"facebook/detr-resnet-50"``).
        task: a key of :data:`TASKS`.
        pretrained: the repository's weights (hub cache), or a config's
            architecture with random weights.
        model_type: for ``pretrained=False`` offline: the model type whose
            default config stands in when the repository's is not cached.
        hf_config: a transformers config (or its dict) to build from (``pretrained=False``).
        prompts: a zero-shot detector's or segmenter's classes.
        top_k: detections kept per image.
        query_thresh: a panoptic segment's least class score.
    """
    import transformers

    tokenizer: Any = None
    if pretrained:
        model = _auto_class(task, model_type or "").from_pretrained(repo)
        processor = transformers.AutoImageProcessor.from_pretrained(repo)
        tokenizer = transformers.AutoTokenizer.from_pretrained(repo) if _needs_text(task, model.config) else None
    else:
        config = hf_config
        if isinstance(config, dict):
            config = transformers.AutoConfig.for_model(str(config.get("model_type", model_type)), **{k: v for k, v in config.items() if k != "model_type"})
        if config is None:
            config = load_hf_config(repo, model_type, local_only=True)
        mt = config.model_type
        cls = _auto_class(task, mt)
        model = cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(repo, local_files_only=True)
        except (OSError, ValueError):
            processor = _default_processor(mt, config)
        if _needs_text(task, config):
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(repo, local_files_only=True)
            except (OSError, ValueError):
                text = getattr(config, "text_config", None)
                vocab = getattr(text, "vocab_size", None) or getattr(config, "text_encoder_vocab_size", None) or 1000
                tokenizer = _CharTokenizer(vocab)
    model.eval()
    return HFNet(model, task, tokenizer=tokenizer, prompts=prompts, top_k=top_k, query_thresh=query_thresh), processor


def _needs_text(task: str, config: Any) -> bool:
    """Whether the model takes text: a zero-shot model's prompts, OneFormer's task token."""
    return task.startswith("zero-shot") or getattr(config, "model_type", "") == "oneformer"


# -- the zoo's model ------------------------------------------------------------------------

@dataclasses.dataclass(init=False)
class HFImageModelConfig(TorchImageModelConfig):
    """:class:`~modelzoo.TorchImageModelConfig` for a Hugging Face vision model.

    Attributes:
        repo: the Hugging Face repository (``"google/vit-base-patch16-224"``).
        task: a key of :data:`TASKS` (None: read from the repository's config).
        pretrained: the repository's weights, or random ones (``hf_config``,
            the cached config, or ``model_type``'s default config).
        model_type: the transformers model type standing in offline.
        hf_config: a transformers config (or its dict) for ``pretrained=False``.
        top_k: detections kept per image before ``confidence_thresh``.
        query_thresh: a panoptic segment's least class score (transformers' 0.5).
    """

    model_cls = "modelzoo.zoo.hf_models.HFImageModel"

    repo: str = ""
    task: Optional[str] = None
    pretrained: bool = True
    model_type: Optional[str] = None
    hf_config: Any = None
    top_k: int = 100
    query_thresh: float = 0.5

    def validate(self) -> None:
        if self.entrypoint_fcn is None:
            self.entrypoint_fcn = "modelzoo.zoo.hf_models.build_hf"  # built by HFImageModel itself
        super().validate()
        if not self.repo:
            raise ConfigError("HFImageModelConfig needs repo (a Hugging Face repository, e.g. 'facebook/detr-resnet-50')")
        if self.task is not None and self.task not in TASKS:
            from ..errors import did_you_mean

            raise ConfigError(f"Unknown task {self.task!r}." + did_you_mean(self.task, list(TASKS)) + f" The tasks are: {', '.join(TASKS)}")


class HFImageModel(TorchImageModel):
    """A Hugging Face vision model run by the zoo's engine (see the module's
    docstring): the image processor in the loader workers, the forward on
    the device, the zoo's output processors after."""

    config_cls = HFImageModelConfig
    config: HFImageModelConfig

    def _build_module(self) -> torch.nn.Module:
        cfg = self.config
        task = cfg.task
        if task is None:
            config = cfg.hf_config if cfg.hf_config is not None and not isinstance(cfg.hf_config, dict) else load_hf_config(cfg.repo, cfg.model_type, local_only=not cfg.pretrained)
            task = task_of(config)
            cfg.task = task
        if task == "promptable-segmentation" and not self._promptable:
            raise ConfigError(
                f"{cfg.repo!r} is a promptable segmenter (Segment Anything): it segments the boxes or points of a "
                "prompt field; load it with modelzoo.zoo.hf_sam.HFSamModel (its FiftyOne names do)"
            )
        prompts = self._classes if task in ("zero-shot-object-detection", "zero-shot-semantic-segmentation") else None
        net, processor = build_hf(cfg.repo, task, pretrained=cfg.pretrained, model_type=cfg.model_type,
                                  hf_config=cfg.hf_config, prompts=prompts, top_k=cfg.top_k,
                                  query_thresh=cfg.query_thresh)
        self._hf_processor = processor
        if self._classes is None:
            self._classes = self._default_classes(net, task)
        if task == "zero-shot-image-classification" and cfg.text_prompt is None:
            cfg.text_prompt = "a photo of a"
        if task == "keypoints" and cfg.skeleton is None and getattr(net.model.config, "num_labels", 17) == 17:
            cfg.skeleton = {"labels": list(COCO_KEYPOINTS), "edges": [list(e) for e in COCO_SKELETON]}
        if cfg.output_processor_cls is None and TASKS[task][1] is not None:
            cfg.output_processor_cls = TASKS[task][1]
        return net.eval().to(device=self._device, dtype=self._dtype)

    #: whether this class segments prompts (:class:`~modelzoo.zoo.hf_sam.HFSamModel`)
    _promptable = False

    @staticmethod
    def _default_classes(net: HFNet, task: str) -> Optional[List[str]]:
        if task == "keypoints":
            return ["person"]
        if task.startswith("zero-shot") or task in ("depth-estimation", "image-feature-extraction", "promptable-segmentation"):
            return None
        id2label = getattr(net.model.config, "id2label", None) or {}
        if not id2label:
            return None
        n = max(int(k) for k in id2label) + 1
        return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(n)]

    def _build_transform(self) -> ImageTransform:
        return HFImageTransform(self._hf_processor, whole_image_box=self.config.task == "keypoints")

    @property
    def ragged_batches(self) -> bool:
        return True

    @property
    def has_embeddings(self) -> bool:
        return self.config.task in ("image-feature-extraction", "zero-shot-image-classification") or super().has_embeddings

    def set_classes(self, classes: Sequence[str]) -> None:
        """Replaces a zero-shot model's classes: they become its text prompts,
        tokenized (and, for a classifier, embedded) once, here.

        Raises:
            ModelError: the model is not zero-shot.
        """
        from ..errors import ModelError

        task = self.config.task or ""
        if not task.startswith("zero-shot"):
            raise ModelError(f"{self!r} is not zero-shot: its classes are its head's ({len(self._classes or [])})")
        classes = [str(c) for c in classes]
        if not classes:
            raise ConfigError("set_classes needs at least one class")
        self._classes = classes
        if self._processor is not None:
            self._processor = self._processor.with_classes(classes)
        if task == "zero-shot-image-classification":
            self._embed_class_prompts()
        else:
            net = self._module
            assert isinstance(net, HFNet)
            net.prompts = list(classes)
            net._tokenize_prompts()
            if self._runner is not self._net:  # a traced graph holds the old prompts as constants
                self._runner, self._channels_last, self.optimization = self._net, False, "eager"

    @property
    def takes_classes(self) -> bool:
        """A zero-shot model takes a run's classes as its prompts (``apply_model(classes=...)``)."""
        return (self.config.task or "").startswith("zero-shot")

    def prompts_for(self, classes: Sequence[str]) -> ClassPrompts:
        """The prompts of ``classes`` for one run, prepared once: a classifier's
        embedded, a detector's or segmenter's tokenized (GroupViT's
        embedded); the model is not changed.

        Raises:
            ModelError: the model is not zero-shot.
        """
        from ..errors import ModelError

        task = self.config.task or ""
        if not task.startswith("zero-shot"):
            raise ModelError(f"{self!r} is not zero-shot: its classes are its head's ({len(self._classes or [])})")
        if task == "zero-shot-image-classification":
            return super().prompts_for(classes)
        net = self._module
        assert isinstance(net, HFNet)
        classes = [str(c) for c in classes]
        return ClassPrompts(tuple(classes), text=net.text_state(classes))

    def build_input_loader(self) -> Any:
        from ..transforms import ImageFileLoader

        return ImageFileLoader(self._transform, False, defer_normalize=False, exif_orientation=self.config.exif_orientation)

    def __repr__(self) -> str:
        return f"HFImageModel({self.config.repo!r}, task={self.config.task!r})"
