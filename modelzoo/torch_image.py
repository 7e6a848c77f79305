"""Run any torch image model: :class:`TorchImageModelConfig` and :class:`TorchImageModel`.

The three steps are kept apart, as the engine runs them in different places:

1. **preprocess** (DataLoader workers): :class:`ImageFileLoader` decodes a
   file, :class:`ImageTransform` resizes it as a uint8 tensor and normalizes
   it into an :class:`ImageInput` that remembers the original size;
   :class:`ImageCollate` stacks same-size inputs into an :class:`ImageBatch`.
   These live in :mod:`modelzoo.transforms` and are re-exported here.
2. **forward** (main process, the only step on the device): same-size
   inputs run as one NCHW batch (ragged batches are split into same-size
   groups), under :func:`torch.inference_mode`, through the optimized graph.
3. **postprocess**: an :class:`~modelzoo.processors.OutputProcessor` turns
   CPU outputs plus the original image sizes into Labels.

Example::

    model = TorchImageModel({
        "entrypoint_fcn": "torchvision.models.mobilenet_v2",
        "weights_path": "mobilenet_v2-b0353104.pth",
        "output_processor_cls": "ClassifierOutputProcessor",
        "labels_path": "imagenet-labels-no-background.txt",
        "image_min_dim": 224, "image_max_dim": 2048,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
        "embeddings_layer": "<classifier.1",
    })
    label = model.predict(image)          # uint8 HWC array or PIL image
    vectors = model.embed_all(images)     # (N, 1280) float32
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .checkpoints import load_state_dict
from .errors import ConfigError, ModelError, did_you_mean
from .fast_detectors import FastDetector, is_torchvision_detector, make_fast_detector
from .imports import import_object
from .mixins import ClassPrompts, EmbeddingsMixin, LogitsMixin, PromptMixin, TorchModelMixin
from .models import Call, Model
from .optimize import OptimizeDecision, Timer, interleaved_seconds, optimize_module
from .processors import OutputProcessor, get_output_processor_cls
from .skeleton import check_skeleton
from .tensors import to_channels_last, to_cpu_float
from .torch_image_config import (
    DETECTOR_OPTIMIZE_MIN_SAMPLES,
    ENV_OPTIMIZE_MIN_SAMPLES,
    OPTIMIZE_MIN_SAMPLES,
    TorchImageModelConfig,
    optimize_min_samples,
    size_wh,
)
from .transforms import ImageBatch, ImageCollate, ImageFileLoader, ImageInput, ImageTransform, Normalize, Size

__all__ = [
    "TorchImageModelConfig",
    "TorchImageModel",
    "ImageInput",
    "ImageBatch",
    "ImageTransform",
    "ImageFileLoader",
    "ImageCollate",
    "load_classes",
    "OPTIMIZE_MIN_SAMPLES",
    "ENV_OPTIMIZE_MIN_SAMPLES",
    "optimize_min_samples",
]

logger = logging.getLogger("modelzoo.torch_image")

# -- classes ------------------------------------------------------------------------------


def load_classes(
    classes: Optional[Sequence[str]] = None,
    labels_string: Optional[str] = None,
    labels_path: Optional[str] = None,
) -> Optional[List[str]]:
    """The class names from whichever source is given.

    ``labels_path`` holds one class per line, either ``name`` or
    ``index:name`` (ETA's format; missing indices get their number as name).
    """
    if classes is not None:
        return [str(c) for c in classes]
    if labels_string is not None:
        return [c.strip() for c in labels_string.split(",")]
    if labels_path is None:
        return None
    try:
        with open(labels_path, encoding="utf-8") as f:
            lines = [line.rstrip("\r\n") for line in f if line.strip()]
    except OSError as e:
        raise ConfigError(f"Cannot read labels_path {labels_path!r}: {e}") from None
    indexed: Dict[int, str] = {}
    for line in lines:
        head, sep, tail = line.partition(":")
        if sep and head.strip().isdigit():
            indexed[int(head)] = tail.strip()
        elif indexed:
            raise ConfigError(f"labels_path {labels_path!r}: line {line!r} mixes 'index:name' and plain names")
    if not indexed:
        return [line.strip() for line in lines]
    return [indexed.get(i, str(i)) for i in range(max(indexed) + 1)]


# -- the model ------------------------------------------------------------------------------


class _EmbeddingTap(torch.nn.Module):
    """Wraps a model so that its forward returns ``(output, embeddings)``:
    the output (or the input, ``use_input``) of one of its modules, captured
    during this very forward pass. Traceable."""

    def __init__(self, model: torch.nn.Module, layer: str, use_input: bool):
        super().__init__()
        self.model = model
        self.layer = layer
        self.use_input = use_input

    def forward(self, x: Any) -> Tuple[Any, torch.Tensor]:
        captured: List[torch.Tensor] = []

        def hook(module: torch.nn.Module, inputs: Tuple[Any, ...], output: Any) -> None:
            value = inputs[0] if self.use_input else output
            captured.append(value[0] if isinstance(value, (tuple, list)) else value)

        handle = self.model.get_submodule(self.layer).register_forward_hook(hook)
        try:
            out = self.model(x)
        finally:
            handle.remove()
        if not captured:
            raise ModelError(f"embeddings_layer {self.layer!r} did not run in the forward pass")
        return out, captured[-1]


def _resolve_device(device: Optional[str]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was requested but CUDA is not available")
    return dev


def _example_image(width: int, height: int, seed: int) -> np.ndarray:
    """A deterministic photo-like uint8 image (smooth shapes, edges, noise)
    for checking an optimized model against eager at load time."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack(
        [
            128 + 100 * np.sin(xx / (7 + seed) + yy / 23),
            128 + 100 * np.cos(yy / (11 + seed) - xx / 31),
            255 * ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2),
        ],
        axis=-1,
    )
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


class _ImageEncoder(torch.nn.Module):
    """A CLIP-like module's ``encode_image`` as a forward (what a zero-shot
    TorchImageModel runs, traces and embeds with)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Any) -> torch.Tensor:
        return self.model.encode_image(x)  # type: ignore[operator]


class TorchImageModel(TorchModelMixin, EmbeddingsMixin, PromptMixin, LogitsMixin, Model):
    """A torch image model built from a :class:`TorchImageModelConfig`.

    The model is built, its weights loaded and checked, and (with
    ``optimize``) its optimized form verified when it is constructed, so
    configuration errors surface here. Usable with or without ``with``.

    Args:
        config: a :class:`TorchImageModelConfig` or a dict of its settings.

    Raises:
        ConfigError: a bad setting (unimportable entrypoint, unknown
            processor, unknown embeddings layer, weights that do not fit...).
        ChecksumError: ``weights_path`` does not have ``weights_sha256``.
    """

    config_cls = TorchImageModelConfig
    config: TorchImageModelConfig

    def __init__(self, config: Union[TorchImageModelConfig, Mapping[str, Any], None] = None):
        super().__init__(config)
        cfg = self.config
        self._device = _resolve_device(cfg.device)
        self._dtype = torch.float16 if cfg.use_half_precision else torch.float32
        self._classes = load_classes(cfg.classes, cfg.labels_string, cfg.labels_path)
        self._module = self._build_module()
        self._net: torch.nn.Module = self._module
        self._zero_shot = cfg.text_prompt is not None
        if self._zero_shot:
            self._net = self._zero_shot_encoder()
        if cfg.embeddings_layer is not None:
            self._net = self._make_tap(cfg.embeddings_layer)
        self._processor = self._build_processor()
        if self._zero_shot:
            self._embed_class_prompts()
        self._transform = self._build_transform()
        self._runner: Callable[..., Any] = self._net
        self._auto_tried = False
        self._channels_last = False
        self.optimization = "eager"
        self.optimization_notes: List[str] = []
        #: with ``optimize="auto"``, what was measured when the graph was
        #: considered (None until then); :attr:`optimization_reason` says it in a line
        self.optimization_decision: Optional[OptimizeDecision] = None
        self.optimization_reason = (
            "optimize=False" if cfg.optimize is False
            else "optimize='auto': eager until a run long enough for the graph (prepare)" if cfg.optimize == "auto"
            else ""
        )
        if cfg.optimize in (True, "trace", "compile"):
            self._optimize("compile" if cfg.optimize == "compile" else "trace")
        else:  # eager for now; a contract error still surfaces at load
            self._check_processor(self._examples()[1:])
        self._saved_cudnn: List[bool] = []

    def prepare(self, num_samples: int) -> None:
        """With ``optimize="auto"``, considers the optimized graph before a
        run of ``num_samples`` samples when the run is long enough to pay for
        its build (``optimize_min_samples``): builds it, verifies it against
        eager and times both on the example batch; the graph runs only if it
        is faster by :data:`~modelzoo.optimize.MIN_GAIN`. Otherwise, and on
        later calls, does nothing. The outcome is in :attr:`optimization`,
        :attr:`optimization_reason` and :attr:`optimization_decision`."""
        if self.config.optimize != "auto" or self.optimization != "eager" or self._auto_tried:
            return
        default = DETECTOR_OPTIMIZE_MIN_SAMPLES if is_torchvision_detector(self._net) else OPTIMIZE_MIN_SAMPLES
        threshold = optimize_min_samples(self.config.optimize_min_samples, default)
        if num_samples < threshold:
            logger.debug("optimize=auto: %d samples < %d, staying eager", num_samples, threshold)
            self.optimization_reason = f"optimize='auto': eager for a run of {num_samples} samples (< {threshold})"
            return
        self._auto_tried = True
        logger.debug("optimize=auto: considering the optimized graph for a run of %d samples", num_samples)
        # a test's own timer measures every time; the default keeps its decision for the next process
        self._optimize("trace", check_processor=False, timer=self.optimize_timer or interleaved_seconds,
                       keep=self.optimize_timer is None)

    #: how ``optimize="auto"`` times eager against a candidate (None:
    #: :func:`~modelzoo.optimize.interleaved_seconds`); set it on an instance
    #: or a subclass to measure otherwise (a test's fixed numbers)
    optimize_timer: Optional[Timer] = None

    # -- building ---------------------------------------------------------------------------
    def _build_module(self) -> torch.nn.Module:
        cfg = self.config
        fn = cfg.entrypoint_fcn
        if isinstance(fn, str):
            fn = import_object(fn, "entrypoint_fcn")
        if not callable(fn):
            raise ConfigError(f"entrypoint_fcn {cfg.entrypoint_fcn!r} is not callable")
        try:
            module = fn(**(cfg.entrypoint_args or {}))
        except TypeError as e:
            raise ConfigError(f"entrypoint_fcn {cfg.entrypoint_fcn!r} rejected entrypoint_args {cfg.entrypoint_args!r}: {e}") from e
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"entrypoint_fcn {cfg.entrypoint_fcn!r} returned {type(module).__name__}, not a torch.nn.Module")
        if cfg.weights_path is not None:
            state = load_state_dict(os.fspath(cfg.weights_path), cfg.weights_sha256)
            result = module.load_state_dict(state, strict=False)
            if result.missing_keys or result.unexpected_keys:
                raise ConfigError(
                    f"weights_path {cfg.weights_path!r} does not fit the model built by {cfg.entrypoint_fcn!r}: "
                    f"missing keys {result.missing_keys[:5]}{'...' if len(result.missing_keys) > 5 else ''}, "
                    f"unexpected keys {result.unexpected_keys[:5]}{'...' if len(result.unexpected_keys) > 5 else ''}"
                )
        return module.eval().to(device=self._device, dtype=self._dtype)

    def _build_transform(self) -> ImageTransform:
        """The preprocessing of each image (a subclass may resize and crop otherwise)."""
        cfg = self.config
        return ImageTransform(
            size_wh(cfg.image_size), cfg.image_min_dim, cfg.image_max_dim, cfg.image_mean, cfg.image_std,
            preprocessing=cfg.preprocessing,
        )

    def _make_tap(self, layer: str) -> torch.nn.Module:
        use_input = layer.startswith("<")
        name = layer.lstrip("<")
        names = [n for n, _ in self._module.named_modules() if n]
        if name not in names:
            raise ConfigError(
                f"embeddings_layer {layer!r}: the model has no module {name!r}." + did_you_mean(name, names)
                + " Module names are those of model.named_modules()."
            )
        return _EmbeddingTap(self._module, name, use_input)

    # -- zero-shot (text_prompt) -------------------------------------------------------------
    def _zero_shot_encoder(self) -> torch.nn.Module:
        missing = [m for m in ("encode_image", "encode_text") if not callable(getattr(self._module, m, None))]
        if missing:
            raise ConfigError(
                f"text_prompt makes a zero-shot classifier, which needs a CLIP-like module with encode_image(images) "
                f"and encode_text(prompts); {self.config.entrypoint_fcn!r} built {type(self._module).__name__}, "
                f"which lacks {' and '.join(missing)}"
            )
        return _ImageEncoder(self._module)

    def _embed_class_prompts(self) -> None:
        """Embeds each class's prompt once, for the zero-shot processor."""
        if not self._classes:
            raise ConfigError("text_prompt (zero-shot) needs classes: give classes, labels_string or labels_path")
        prompts = [f"{self.config.text_prompt} {c}".strip() for c in self._classes]
        setter = getattr(self._processor, "set_prompt_embeddings", None)
        if setter is None:
            raise ConfigError(
                f"text_prompt (zero-shot) needs a processor that takes prompt embeddings "
                f"(ZeroShotClassifierOutputProcessor), got {type(self._processor).__name__}"
            )
        setter(self.embed_prompts(prompts))

    @property
    def can_embed_prompts(self) -> bool:
        """Whether the module embeds text (a zero-shot model, ``text_prompt``)."""
        return self._zero_shot

    def embed_prompts(self, args: Sequence[Any]) -> np.ndarray:
        """The text embeddings of ``args`` (strings), float32 ``(N, D)``, from
        the module's ``encode_text``."""
        if not self._zero_shot:
            raise ModelError("This model embeds no prompts: it is zero-shot only with text_prompt in its config")
        with torch.inference_mode():
            out = self._module.encode_text(list(args))  # type: ignore[operator]
        return np.asarray(to_cpu_float(out).reshape(len(args), -1), dtype=np.float32)

    def embed_prompt(self, arg: Any) -> np.ndarray:
        return self.embed_prompts([arg])[0]

    @property
    def takes_classes(self) -> bool:
        """A zero-shot classifier (``text_prompt``) takes a run's classes as its prompts."""
        return self._zero_shot

    def prompts_for(self, classes: Sequence[str]) -> ClassPrompts:
        """The classes' prompts (``f"{text_prompt} {class}"``) embedded once,
        for a run (``apply_model(classes=...)``); the model is not changed."""
        if not self._zero_shot:
            raise ModelError("This model takes no classes per run: it is zero-shot only with text_prompt in its config")
        classes = [str(c) for c in classes]
        if not classes:
            raise ConfigError("a zero-shot run needs at least one class")
        embeddings = self.embed_prompts([f"{self.config.text_prompt} {c}".strip() for c in classes])
        return ClassPrompts(tuple(classes), embeddings=embeddings)

    def _processor_for(self, prompts: Optional[ClassPrompts]) -> Optional[OutputProcessor]:
        """The output processor of a run over ``prompts``' classes (a copy;
        the model's own is unchanged), or the model's own."""
        if prompts is None or self._processor is None:
            return self._processor
        processor = self._processor.with_classes(list(prompts.classes))
        if prompts.embeddings is not None:
            setter = getattr(processor, "set_prompt_embeddings", None)
            if setter is not None:
                setter(prompts.embeddings)
        return processor

    def _build_processor(self) -> Optional[OutputProcessor]:
        cfg = self.config
        if cfg.output_processor_cls is None and cfg.text_prompt is not None:
            from .processors import ZeroShotClassifierOutputProcessor

            kwargs = dict(cfg.output_processor_args or {})
            kwargs.setdefault("classes", self._classes)
            scale = getattr(self._module, "logit_scale", None)
            if scale is not None and "logit_scale" not in kwargs:  # CLIP keeps log(scale) as a parameter
                kwargs["logit_scale"] = float(torch.as_tensor(scale).detach().float().exp())
            return ZeroShotClassifierOutputProcessor(**kwargs)
        if cfg.output_processor_cls is None:
            return None
        cls = get_output_processor_cls(cfg.output_processor_cls)
        kwargs = dict(cfg.output_processor_args or {})
        kwargs.setdefault("classes", self._classes)
        import inspect

        params = inspect.signature(cls.__init__).parameters
        if cfg.mask_targets is not None:
            kwargs.setdefault("mask_targets", cfg.mask_targets)
        if cfg.skeleton is not None:
            kwargs.setdefault("skeleton", cfg.skeleton)
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in ("mask_targets", "skeleton"):
            if key in kwargs and key not in params and not accepts_any:
                raise ConfigError(f"{key} is set but {cls.__name__} does not take it")
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise ConfigError(f"Cannot build {cls.__name__} with output_processor_args {cfg.output_processor_args!r}: {e}") from e

    def _examples(self) -> List[ImageBatch]:
        """Two batches of different sizes, as the model will be fed them."""
        batches = []
        for n, (w, h), seed in ((2, (320, 240), 0), (1, (256, 300), 1)):
            items = [self._transform(_example_image(w, h, seed + i)) for i in range(n)]
            batches.append(ImageCollate(stack=not self.config.raw_inputs)(items))
        return batches

    def _check_processor(self, examples: List[ImageBatch], references: Optional[List[Any]] = None) -> None:
        """Runs the processor once on the eager output of ``examples[0]``, so
        that a contract error (e.g. classes of the wrong length) surfaces at
        load time."""
        if self._processor is None or not examples:
            return
        batch = examples[0]
        if references is None:
            with torch.inference_mode():
                references = [to_cpu_float(self._net(self._to_device(batch.tensors)))]
        out = references[0]
        if self.config.embeddings_layer is not None:
            out = out[0]
        self._processor(out, batch.image_sizes, _input_sizes(batch.tensors, len(batch)))

    def _optimize(self, mode: str, check_processor: bool = True, timer: Optional[Timer] = None, keep: bool = False) -> None:
        graph = not self.config.raw_inputs and (self._processor is None or self._processor.traceable)
        examples = self._examples()
        if graph:
            result = optimize_module(
                self._net,
                [self._to_device(b.tensors) for b in examples],
                mode=mode,
                fuse=not self.ragged_batches,  # a fused graph compiles itself per input shape
                timer=timer,
                keep=keep,
            )
            references = result.references
            self._runner = result.module
            self._channels_last = result.channels_last
            self.optimization = result.kind
            self.optimization_notes = result.notes
            self.optimization_decision = result.decision
            self.optimization_reason = (
                result.decision.reason if result.decision is not None
                else f"optimize={self.config.optimize!r}: {result.kind}" + (f" [{'; '.join(result.notes)}]" if result.notes else "")
            )
        else:
            # Models whose outputs cannot be traced as a whole: torchvision's
            # detectors get their backbone and box head replaced by frozen
            # graphs, each checked within 1e-4 of eager, and the whole checked
            # with detection criteria (modelzoo.fast_detectors); other models
            # stay eager.
            fast = self._fast_detector(examples, timer) if mode == "trace" else None
            if fast is not None:
                self._runner = fast.module
                self.optimization = fast.kind
                self.optimization_notes = fast.notes
                self.optimization_reason = f"running {fast.kind}: {'; '.join(fast.notes)}"
            else:
                self.optimization_notes = ["eager: the model's outputs cannot be traced"]
                self.optimization_reason = "running eager: the model's outputs cannot be traced"
                logger.info("optimize: %s", self.optimization_notes[0])
            examples = examples[1:]  # one single-image batch for the processor check
            references = None
        if check_processor:
            self._check_processor(examples, references)

    def _fast_detector(self, examples: List[ImageBatch], timer: Optional[Timer] = None) -> Optional[FastDetector]:
        """A torchvision detector's fast equivalent on the CPU, verified on ``examples``, or None."""
        if not (self.config.raw_inputs and self._device.type == "cpu" and self._dtype == torch.float32):
            return None
        if not is_torchvision_detector(self._net):
            return None
        try:
            return make_fast_detector(self._net, [self._to_device(b.tensors) for b in examples], timer=timer)
        except Exception as e:  # a model the graphs do not fit: it stays eager
            logger.warning("optimize: the detector stays eager (%s: %s)", type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            return None

    # -- properties -------------------------------------------------------------------------
    @property
    def torch_model(self) -> torch.nn.Module:
        """The eager ``torch.nn.Module`` (on :attr:`device`)."""
        return self._module

    @property
    def output_processor(self) -> Optional[OutputProcessor]:
        return self._processor

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def classes(self) -> Optional[List[str]]:
        return None if self._classes is None else list(self._classes)

    @property
    def mask_targets(self) -> Optional[Dict[str, str]]:
        return getattr(self._processor, "mask_targets", None)

    @property
    def skeleton(self) -> Optional[Dict[str, Any]]:
        return getattr(self._processor, "skeleton", None) or check_skeleton(self.config.skeleton)

    @property
    def ragged_batches(self) -> bool:
        return self.config.raw_inputs or self.config.image_size is None

    @property
    def thread_safe(self) -> bool:
        """True while a traced graph runs on the CPU (``"frozen"`` or
        ``"frozen+onednn"``: no Python state in the forward, the processors
        are pure) and neither ``predict_all`` nor ``embed_all`` is replaced:
        the eager module may hold hooks (an ``embeddings_layer`` tap does)
        or state of the user's entrypoint."""
        return (
            self.optimization in ("frozen", "frozen+onednn")
            and self._device.type == "cpu"
            and not self._replaced("predict_all")
            and not self._replaced("embed_all")
        )

    @property
    def warmup_batches(self) -> int:
        """2 while a compiled graph runs (it profiles itself on its first 2
        calls at each input shape), else 0."""
        return 0 if self.optimization in ("eager", "channels_last") else 2

    @property
    def transforms(self) -> ImageTransform:
        return self._transform

    @property
    def collate_fn(self) -> ImageCollate:
        return ImageCollate(stack=not self.config.raw_inputs, channels_last=self._channels_last)

    def build_input_loader(self) -> ImageFileLoader:
        """A picklable ``filepath -> ImageInput`` for DataLoader workers."""
        # uint8 batches from the workers, normalized by _forward on the device
        # (4x less to hand over and to copy to a GPU). Except for raw_inputs
        # models on the CPU: detectors, whose forward keeps the main process
        # busy while the workers idle, so the workers normalize.
        defer = not (self.config.raw_inputs and self._device.type == "cpu")
        return ImageFileLoader(
            self._transform, self.config.fast_decode, defer_normalize=defer,
            exif_orientation=self.config.exif_orientation,
        )

    @property
    def has_logits(self) -> bool:
        return self._processor is not None and self._processor.has_logits

    @property
    def store_logits(self) -> bool:
        return self._store_logits

    @store_logits.setter
    def store_logits(self, value: bool) -> None:
        LogitsMixin.store_logits.fset(self, value)  # type: ignore[attr-defined]
        if self._processor is not None:
            self._processor.store_logits = bool(value)

    @property
    def has_embeddings(self) -> bool:
        return self.config.embeddings_layer is not None or self._processor is None or self._zero_shot

    # -- context ----------------------------------------------------------------------------
    def __enter__(self) -> "TorchImageModel":
        self._saved_cudnn.append(torch.backends.cudnn.benchmark)
        if self.config.cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = bool(self.config.cudnn_benchmark)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved_cudnn:
            torch.backends.cudnn.benchmark = self._saved_cudnn.pop()

    # -- inference --------------------------------------------------------------------------
    def predict(self, arg: Any) -> Any:
        """Predicts on one image (uint8 HWC array or PIL image; an
        :class:`ImageInput` when :attr:`preprocess` is off)."""
        return self.predict_all([arg])[0]

    def predict_all(self, args: Any) -> List[Any]:
        """Predicts on a batch: a list of images, or an :class:`ImageBatch`
        from :attr:`collate_fn`. One label (or dict of labels) per image."""
        labels, _ = self._run(self._as_batch(args), postprocess=True)
        return labels

    def run_batch(self, inputs: Any, call: Call, samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> Any:
        """The engine's call: ``call``'s options go with this batch only (the
        model is not changed, so other callers, a
        :class:`~modelzoo.serving.Batcher`'s included, keep their own). A
        subclass (or instance) that replaces ``predict_all`` or ``embed_all``
        is called through it, as before (:meth:`Model.run_batch`)."""
        if self._replaced("embed_all" if call.mode == "embed" else "predict_all"):
            return super().run_batch(inputs, call, samples)
        batch = self._as_batch(inputs, preprocess=self.preprocess and not call.loaded)
        if call.mode == "embed":
            return self._embed(batch)
        labels, _ = self._run(batch, postprocess=True, store_logits=call.store_logits or self.store_logits,
                              prompts=call.prompts)
        return labels

    def _replaced(self, method: str) -> bool:
        """Whether ``method`` is not TorchImageModel's own (a subclass's, or set on the instance)."""
        return method in self.__dict__ or getattr(type(self), method) is not getattr(TorchImageModel, method)

    def predict_and_embed(self, args: Any) -> Tuple[List[Any], np.ndarray]:
        """The labels and the embeddings ``(N, D)`` of a batch, from one forward pass."""
        if not self.has_embeddings or self._processor is None or self.config.embeddings_layer is None:
            raise ModelError(
                "predict_and_embed needs an output processor and an embeddings_layer in the config "
                "(e.g. '<fc' for the input of the final layer)."
            )
        labels, embeddings = self._run(self._as_batch(args), postprocess=True)
        assert embeddings is not None
        return labels, embeddings

    def embed(self, arg: Any) -> np.ndarray:
        return self.embed_all([arg])[0]

    def embed_all(self, args: Any) -> np.ndarray:
        """The embeddings of a batch, float32 ``(N, D)``."""
        return self._embed(self._as_batch(args))

    def _embed(self, batch: ImageBatch) -> np.ndarray:
        if not self.has_embeddings:
            raise ModelError(
                "This model has no embeddings: set embeddings_layer in its config "
                "(e.g. '<fc' for the input of the final layer)."
            )
        outputs, embeddings = self._run(batch, postprocess=False)
        if embeddings is None:  # no processor: the outputs are the embeddings
            embeddings = np.stack([np.asarray(o, dtype=np.float32).reshape(-1) for o in outputs])
        return embeddings

    def _as_batch(self, args: Any, preprocess: Optional[bool] = None) -> ImageBatch:
        if preprocess is None:
            preprocess = self.preprocess
        if isinstance(args, ImageBatch):
            return args
        if isinstance(args, torch.Tensor) and args.dim() == 4:
            return ImageBatch(args, [(int(args.shape[3]), int(args.shape[2]))] * int(args.shape[0]))
        items = []
        for arg in args:
            if isinstance(arg, ImageInput):
                items.append(arg)
            elif isinstance(arg, torch.Tensor) and arg.is_floating_point() and arg.dim() == 3:
                items.append(ImageInput(arg, (int(arg.shape[2]), int(arg.shape[1]))))
            elif preprocess:
                items.append(self._transform(arg))
            else:
                raise ModelError(
                    f"With preprocess off, predict_all takes ImageInput items or an ImageBatch, got {type(arg).__name__}"
                )
        return self.collate_fn(items)

    def _to_device(self, x: Any, normalize: Optional[Normalize] = None) -> Any:
        """Moves inputs to the model's device and dtype; uint8 pixels are
        normalized there (after the copy, which moves 4x fewer bytes)."""
        if isinstance(x, list):
            return [self._to_device(t, normalize) for t in x]
        if normalize is not None:
            return normalize(x.to(device=self._device, non_blocking=True), self._dtype)
        return x.to(device=self._device, dtype=self._dtype, non_blocking=True)

    def _groups(self, batch: ImageBatch) -> List[Tuple[List[int], Any]]:
        """``(indices, model input)`` pairs: one per same-size group.

        Ragged inputs run one size at a time even with ``raw_inputs``:
        torchvision's detectors pad a list to its largest image, so running
        different sizes together would make an image's result depend on its
        batch-mates.
        """
        tensors = batch.tensors
        if isinstance(tensors, torch.Tensor):
            if self.config.raw_inputs:
                return [(list(range(len(batch))), list(tensors.unbind(0)))]
            return [(list(range(len(batch))), tensors)]
        by_shape: Dict[Tuple[int, ...], List[int]] = {}
        for i, t in enumerate(tensors):
            by_shape.setdefault(tuple(t.shape), []).append(i)
        if self.config.raw_inputs:  # a list per group, as the model takes it: no stacking
            return [(idx, [tensors[i] for i in idx]) for idx in by_shape.values()]
        return [(idx, torch.stack([tensors[i] for i in idx])) for idx in by_shape.values()]

    def _forward(self, x: Any, normalize: Optional[Normalize] = None, prompts: Optional[ClassPrompts] = None) -> Any:
        x = self._to_device(x, normalize)
        if self._channels_last:
            x = to_channels_last(x)
        if prompts is not None and prompts.text is not None:
            return self._net(x, prompts=prompts)  # a run's own prompts: the eager module, which takes them
        if self._runner is self._net:
            return self._net(x)
        try:
            return self._runner(x)
        except Exception as e:
            logger.warning(
                "optimize: the %s model failed on an input of shape %s (%s: %s); using the eager model from now on",
                self.optimization, _shape_of(x), type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "",
            )
            self._runner, self._channels_last, self.optimization = self._net, False, "eager"
            return self._net(x)

    def _run(
        self, batch: ImageBatch, postprocess: bool, store_logits: Optional[bool] = None,
        prompts: Optional[ClassPrompts] = None,
    ) -> Tuple[List[Any], Optional[np.ndarray]]:
        n = len(batch)
        processor = self._processor_for(prompts)
        if processor is not None and store_logits is not None and store_logits != processor.store_logits:
            processor = copy.copy(processor)  # this call's option, not the model's
            processor.store_logits = store_logits
        results: List[Any] = [None] * n
        embeddings: Optional[np.ndarray] = None
        tapped = self.config.embeddings_layer is not None
        for indices, x in self._groups(batch):
            with torch.inference_mode():
                out = self._forward(x, batch.normalize, prompts)
            out = to_cpu_float(out)
            if tapped:
                out, emb = out
                emb = emb.reshape(emb.shape[0], -1).numpy().astype(np.float32, copy=False)
                if emb.shape[0] != len(indices):
                    raise ModelError(
                        f"embeddings_layer {self.config.embeddings_layer!r} gave {emb.shape[0]} rows for {len(indices)} images"
                    )
                if embeddings is None:
                    embeddings = np.empty((n, emb.shape[1]), dtype=np.float32)
                embeddings[indices] = emb
            sizes = [batch.image_sizes[i] for i in indices]
            if postprocess and processor is not None:
                input_sizes = _input_sizes(x, len(indices))
                labels = processor(out, sizes, input_sizes, self.config.confidence_thresh)
            else:
                labels = _split_outputs(out, len(indices))
            for i, label in zip(indices, labels):
                results[i] = label
        return results, embeddings

    def __repr__(self) -> str:
        entry = self.config.entrypoint_fcn
        entry = entry if isinstance(entry, str) else getattr(entry, "__qualname__", repr(entry))
        return f"TorchImageModel({entry}, processor={self._processor!r}, device={self._device}, optimization={self.optimization!r})"


def _shape_of(x: Any) -> Any:
    if isinstance(x, list):
        return [tuple(t.shape) for t in x]
    return tuple(x.shape)


def _input_sizes(x: Any, n: int) -> List[Size]:
    if isinstance(x, list):
        return [(int(t.shape[-1]), int(t.shape[-2])) for t in x]
    return [(int(x.shape[-1]), int(x.shape[-2]))] * n


def _split_outputs(out: Any, n: int) -> List[Any]:
    """Raw outputs for ``n`` images, one per image, as numpy where they are tensors."""
    if isinstance(out, torch.Tensor):
        return [out[i].numpy() for i in range(n)]
    if isinstance(out, Mapping):
        per_key = {k: _split_outputs(v, n) for k, v in out.items()}
        return [{k: v[i] for k, v in per_key.items()} for i in range(n)]
    if isinstance(out, (list, tuple)) and len(out) == n:
        return [_to_numpy(o) for o in out]
    raise ModelError(f"Cannot split the model's raw output ({type(out).__name__}) into {n} per-image outputs")


def _to_numpy(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, Mapping):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj
