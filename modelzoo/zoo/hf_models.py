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
    "depth-estimation": ("AutoModelForDepthEstimation", "HeatmapOutputProcessor", "Heatmap"),
    "keypoints": ("VitPoseForPoseEstimation", "KeypointDetectorOutputProcessor", "Keypoints"),
    "image-feature-extraction": ("AutoModel", None, "embeddings"),
}

_ZERO_SHOT_CLASSIFIERS = {"clip", "siglip", "siglip2", "chinese_clip", "altclip", "align", "metaclip_2"}
_ZERO_SHOT_DETECTORS = {"owlvit", "owlv2", "grounding-dino", "mm-grounding-dino"}
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
    if model_type in ("mask2former", "maskformer"):
        return hint if hint in ("semantic-segmentation", "instance-segmentation") else "semantic-segmentation"
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
        ids = torch.ones(len(text), self.max_length, dtype=torch.long)
        mask = torch.zeros(len(text), self.max_length, dtype=torch.long)
        for i, t in enumerate(text):
            codes = [2 + (ord(c) % (self.vocab_size - 2)) for c in t][: self.max_length]
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
        tokenizer: the text tokenizer of a zero-shot model.
        prompts: a zero-shot detector's class prompts.
        top_k: detections kept per image.
    """

    def __init__(self, model: torch.nn.Module, task: str, tokenizer: Any = None,
                 prompts: Optional[Sequence[str]] = None, top_k: int = 100):
        super().__init__()
        self.model = model
        self.task = task
        self.tokenizer = tokenizer
        self.top_k = top_k
        self.model_type = getattr(model.config, "model_type", "")
        self.prompts = list(prompts or [])
        self._text: Dict[str, torch.Tensor] = {}
        self._token_class: Optional[torch.Tensor] = None
        if task == "zero-shot-object-detection":
            self._tokenize_prompts()

    # -- zero-shot --------------------------------------------------------------------------
    def _tokenize_prompts(self) -> None:
        if not self.prompts:
            raise ConfigError("A zero-shot detector needs classes: load_zoo_model(name, classes=[...])")
        if self.model_type in ("grounding-dino", "mm-grounding-dino"):
            # one text for all classes, "a. b. c."; each token remembers its class
            text = ". ".join(p.lower() for p in self.prompts) + "."
            enc = self.tokenizer([text], return_tensors="pt", padding=True)
            token_class = torch.full((enc["input_ids"].shape[1],), -1, dtype=torch.long)
            offsets = self._class_token_spans(text, enc)
            for c, (a, b) in enumerate(offsets):
                token_class[a:b] = c
            self._token_class = token_class
        else:
            enc = self.tokenizer(self.prompts, return_tensors="pt", padding="max_length" if self.model_type == "owlv2" else True,
                                 truncation=True, max_length=16)
        self._text = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def _class_token_spans(self, text: str, enc: Any) -> List[Tuple[int, int]]:
        """Token ranges of each class in the joined Grounding DINO text."""
        spans = []
        ids = enc["input_ids"][0].tolist()
        pos = 1  # after [CLS]
        for p in self.prompts:
            n = len(self.tokenizer([p.lower()], add_special_tokens=False)["input_ids"][0]) if not isinstance(self.tokenizer, _CharTokenizer) else len(p)
            spans.append((pos, min(pos + n, len(ids))))
            pos += n + 1  # the "." after each class
        return spans

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
    def forward(self, pixel_values: torch.Tensor) -> Any:
        task = self.task
        n, _, h, w = pixel_values.shape
        if task == "zero-shot-image-classification":
            return self.encode_image(pixel_values)
        if task == "zero-shot-object-detection":
            return self._zero_shot_detect(pixel_values)
        if task == "keypoints":
            kwargs = {}
            if getattr(getattr(self.model.config, "backbone_config", None), "num_experts", 1) > 1:
                kwargs["dataset_index"] = torch.zeros(n, dtype=torch.long, device=pixel_values.device)
            heatmaps = self.model(pixel_values=pixel_values, **kwargs).heatmaps
            return _keypoints(heatmaps, (w, h))
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
        if task == "instance-segmentation":
            return _instances(out.class_queries_logits, out.masks_queries_logits, (w, h), self.top_k)
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

    def _zero_shot_detect(self, pixel_values: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        n, _, h, w = pixel_values.shape
        text = {k: v.to(pixel_values.device) for k, v in self._text.items()}
        if self._token_class is not None:  # Grounding DINO: one text per image, logits over its tokens
            text = {k: v.expand(n, -1) for k, v in text.items()}
            out = self.model(pixel_values=pixel_values, **text)
            token_class = self._token_class.to(pixel_values.device)
            per_token = out.logits.sigmoid()  # (N, Q, T)
            c = len(self.prompts)
            scores = torch.zeros(*per_token.shape[:2], c, device=per_token.device)
            for k in range(c):
                cols = (token_class[: per_token.shape[-1]] == k).nonzero().flatten()
                if len(cols):
                    scores[..., k] = per_token[..., cols].max(-1).values
            boxes = out.pred_boxes
            return _detections_from_scores(scores, boxes, (w, h), self.top_k)
        text = {k: v.repeat(n, 1) for k, v in text.items()}
        out = self.model(pixel_values=pixel_values, **text)
        scores = out.logits.sigmoid()  # (N, Q, C)
        return _detections_from_scores(scores, out.pred_boxes, (w, h), self.top_k)


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
                            top_k: int) -> List[Dict[str, torch.Tensor]]:
    out = []
    for s, b in zip(scores, boxes):
        flat = s.flatten()
        k = min(top_k, flat.numel())
        values, idx = flat.topk(k)
        q, c = idx // s.shape[-1], idx % s.shape[-1]
        out.append({"boxes": _xyxy(b[q].float(), size), "labels": c.long(), "scores": values.float()})
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
    if model_type in ("mask2former", "maskformer", "oneformer"):
        name = "AutoModelForUniversalSegmentation"  # one head for semantic and instance outputs
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
    if model_type in ("detr", "rt_detr", "rt_detr_v2", "d_fine", "conditional_detr", "deformable_detr", "yolos",
                      "grounding-dino", "mm-grounding-dino", "mask2former", "segformer", "depth_anything", "dpt") \
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


def build_hf(
    repo: str,
    task: str,
    pretrained: bool = False,
    model_type: Optional[str] = None,
    hf_config: Any = None,
    prompts: Optional[Sequence[str]] = None,
    top_k: int = 100,
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
        prompts: a zero-shot detector's classes.
    """
    import transformers

    tokenizer: Any = None
    if pretrained:
        model = _auto_class(task, model_type or "").from_pretrained(repo)
        processor = transformers.AutoImageProcessor.from_pretrained(repo)
        tokenizer = transformers.AutoTokenizer.from_pretrained(repo) if task.startswith("zero-shot") else None
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
        if task.startswith("zero-shot"):
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(repo, local_files_only=True)
            except (OSError, ValueError):
                text = getattr(config, "text_config", None)
                tokenizer = _CharTokenizer(getattr(text, "vocab_size", None) or 1000)
    model.eval()
    return HFNet(model, task, tokenizer=tokenizer, prompts=prompts, top_k=top_k), processor


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
    """

    model_cls = "modelzoo.zoo.hf_models.HFImageModel"

    repo: str = ""
    task: Optional[str] = None
    pretrained: bool = True
    model_type: Optional[str] = None
    hf_config: Any = None
    top_k: int = 100

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
        prompts = self._classes if task == "zero-shot-object-detection" else None
        net, processor = build_hf(cfg.repo, task, pretrained=cfg.pretrained, model_type=cfg.model_type,
                                  hf_config=cfg.hf_config, prompts=prompts, top_k=cfg.top_k)
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

    @staticmethod
    def _default_classes(net: HFNet, task: str) -> Optional[List[str]]:
        if task == "keypoints":
            return ["person"]
        if task.startswith("zero-shot") or task in ("depth-estimation", "image-feature-extraction"):
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
            self._processor.classes = list(classes)
        if task == "zero-shot-image-classification":
            self._embed_class_prompts()
        else:
            net = self._module
            assert isinstance(net, HFNet)
            net.prompts = list(classes)
            net._tokenize_prompts()

    def build_input_loader(self) -> Any:
        from ..transforms import ImageFileLoader

        return ImageFileLoader(self._transform, False, defer_normalize=False, exif_orientation=self.config.exif_orientation)

    def __repr__(self) -> str:
        return f"HFImageModel({self.config.repo!r}, task={self.config.task!r})"
