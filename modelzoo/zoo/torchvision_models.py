"""The models of the torchvision zoo source: torchvision's builders, fed as their weights' transforms say.

* :func:`build_torchvision` builds ``builder`` exactly as torchvision does
  for a weights enum (the same architecture arguments: classes, auxiliary
  heads, input sizes), then loads the zoo's verified file, or, for
  ``pretrained=False``, keeps the random initialisation. Nothing downloads.
* :class:`TorchvisionImageModel` adds torchvision's resize-then-centre-crop
  (``ImageClassification``) and shorter-side resize (``SemanticSegmentation``)
  to :class:`~modelzoo.torch_image.TorchImageModel`.
* :class:`TorchvisionVideoModel` classifies a video from one clip of evenly
  spaced frames (``VideoClassification``), as a video model: its
  :meth:`~TorchvisionVideoModel.predict` takes a
  :class:`~modelzoo.video.VideoReader` and returns the video's
  :class:`~modelzoo.Classification`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from ..errors import ConfigError
from ..labels import Classification
from ..models import Model, ModelConfig
from ..torch_image import TorchImageModel, load_classes
from ..torch_image_config import TorchImageModelConfig
from ..transforms import ImageInput, ImageTransform, Size

__all__ = [
    "build_torchvision",
    "ResizeCropTransform",
    "TorchvisionImageModelConfig",
    "TorchvisionImageModel",
    "TorchvisionVideoModelConfig",
    "TorchvisionVideoModel",
]

_patch_lock = threading.Lock()


class _ArchitectureOnly(dict):
    """The state dict handed to a builder for ``pretrained=False``: its
    ``load_state_dict`` is skipped, so the module keeps its random init."""


@contextlib.contextmanager
def _weights_from(path: Optional[str]) -> Iterator[None]:
    """Inside the block, torchvision's ``WeightsEnum.get_state_dict`` returns
    the verified file at ``path`` (or, for None, an empty state dict whose
    loading is skipped) instead of downloading. Held under a lock: the
    patch is process-wide while a builder runs."""
    from torchvision.models import WeightsEnum

    def get_state_dict(self: Any, *args: Any, **kwargs: Any) -> Dict[str, Any]:
        if path is None:
            return _ArchitectureOnly()
        return torch.load(path, map_location="cpu", weights_only=True)

    original_load = torch.nn.Module.load_state_dict

    def load_state_dict(self: torch.nn.Module, state_dict: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(state_dict, _ArchitectureOnly):
            from torch.nn.modules.module import _IncompatibleKeys

            return _IncompatibleKeys([], [])
        return original_load(self, state_dict, *args, **kwargs)

    with _patch_lock:
        original_get = WeightsEnum.get_state_dict
        WeightsEnum.get_state_dict = get_state_dict  # type: ignore[method-assign]
        torch.nn.Module.load_state_dict = load_state_dict  # type: ignore[method-assign]
        try:
            yield
        finally:
            WeightsEnum.get_state_dict = original_get  # type: ignore[method-assign]
            torch.nn.Module.load_state_dict = original_load  # type: ignore[method-assign]


def build_torchvision(
    builder: str, weights: Optional[str] = None, weights_file: Optional[str] = None, **kwargs: Any
) -> torch.nn.Module:
    """``torchvision.models.get_model(builder, weights=weights, **kwargs)``
    without a download: the state dict comes from ``weights_file`` (already
    verified by the zoo) or, when it is None, the random init is kept.

    Args:
        builder: a name of ``torchvision.models.list_models()`` (``"resnet50"``).
        weights: the weights enum (``"ResNet50_Weights.IMAGENET1K_V2"``), which
            fixes the architecture's arguments; None builds torchvision's default.
        weights_file: the weights' verified file, or None for random weights.
    """
    import torchvision.models as tvm

    if weights is None:
        if weights_file is not None:
            raise ConfigError(f"build_torchvision({builder!r}): weights_file needs the weights enum it holds")
        return tvm.get_model(builder, weights=None, **kwargs)
    try:
        enum_value = tvm.get_weight(weights)
    except (ValueError, AttributeError, KeyError) as e:
        raise ConfigError(f"torchvision has no weights {weights!r} ({e}); regenerate the zoo's index") from None
    kwargs.setdefault("progress", False)
    if builder in tvm.list_models(module=tvm.detection) or builder in tvm.list_models(module=tvm.segmentation):
        kwargs.setdefault("weights_backbone", None)  # the backbone's own weights are part of the file
    with _weights_from(weights_file):
        return tvm.get_model(builder, weights=enum_value, **kwargs)


# -- images ---------------------------------------------------------------------------------


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    try:
        return InterpolationMode(name)
    except ValueError:
        raise ConfigError(f"interpolation must be one of {[m.value for m in InterpolationMode]}, got {name!r}") from None


class ResizeCropTransform(ImageTransform):
    """torchvision's ``ImageClassification`` / ``SemanticSegmentation``
    preprocessing on uint8 tensors: resize (an int: the shorter side to it;
    ``(h, w)``: exactly), then centre-crop to ``crop`` when given, scale to
    ``[0, 1]`` and normalize. Picklable.

    With ``preprocessing="pil"`` the resize is PIL's (``Image.resize`` with
    the interpolation's filter), as torchvision's ``Resize`` does on a PIL
    image: the pipeline of timm's eval transform and of scripts that feed
    PIL images, whose pixels it then reproduces exactly (PIL's bicubic
    kernel rounds differently from the tensor one, by up to 3 levels on a
    photo). It is also the cheaper of the two for bicubic downscales.

    Args:
        resize: the shorter side, or ``(height, width)``.
        crop: the centre crop ``(height, width)`` (an int: square), or None.
        mean, std: per-channel normalization.
        interpolation: ``"bilinear"``, ``"bicubic"``, ``"nearest"``...
        antialias: as torchvision's transform (True for images).
        preprocessing: ``"tensor"`` (default) or ``"pil"`` (see above).
    """

    def __init__(
        self,
        resize: Union[int, Sequence[int], None],
        crop: Union[int, Sequence[int], None],
        mean: Optional[Sequence[float]] = None,
        std: Optional[Sequence[float]] = None,
        interpolation: str = "bilinear",
        antialias: bool = True,
        preprocessing: str = "tensor",
    ):
        super().__init__(None, None, None, mean, std, preprocessing=preprocessing)
        self.resize = resize if resize is None or isinstance(resize, int) else tuple(int(v) for v in resize)
        self.crop = None if crop is None else ((crop, crop) if isinstance(crop, int) else tuple(int(v) for v in crop))
        self.interpolation = interpolation
        self.antialias = antialias
        _interpolation(interpolation)
        if preprocessing == "pil" and interpolation not in _PIL_FILTERS:
            raise ConfigError(f"preprocessing='pil' resizes with {sorted(_PIL_FILTERS)}, not {interpolation!r}")

    def target_size(self, width: int, height: int) -> Size:
        """The ``(width, height)`` before the crop (torchvision's ``Resize`` rounding)."""
        if self.resize is None:
            return (width, height)
        if isinstance(self.resize, int):
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = self.resize, int(self.resize * long / short)
            return (new_short, new_long) if width <= height else (new_long, new_short)
        return (self.resize[1], self.resize[0])

    def output_size(self, width: int, height: int) -> Size:
        """The ``(width, height)`` of the model input for an image of this size."""
        if self.crop is not None:
            return (self.crop[1], self.crop[0])
        return self.target_size(width, height)

    def apply_tensor(self, pixels: torch.Tensor, image_size: Size, defer_normalize: bool = False) -> ImageInput:
        # the v1 functional ops, which the weights' transforms call: the v2
        # uint8 resize kernel rounds some pixels one level apart
        import torchvision.transforms.functional as TF

        w, h = self.target_size(*image_size)
        if (pixels.shape[2], pixels.shape[1]) != (w, h):
            if getattr(self, "preprocessing", "tensor") == "pil":
                pixels = _pil_resize(pixels, (w, h), self.interpolation)
            else:
                pixels = TF.resize(pixels, [h, w], interpolation=_interpolation(self.interpolation), antialias=self.antialias)
        if self.crop is not None:
            pixels = TF.center_crop(pixels, list(self.crop))
        size = (int(image_size[0]), int(image_size[1]))
        if defer_normalize:
            return ImageInput(pixels.contiguous(), size, self.normalize)
        return ImageInput(self.normalize(pixels.contiguous()), size)

    def __repr__(self) -> str:
        return (
            f"ResizeCropTransform(resize={self.resize}, crop={self.crop}, mean={self.mean}, std={self.std}, "
            f"interpolation={self.interpolation!r}, preprocessing={self.preprocessing!r})"
        )


_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5, "lanczos": 1}  # PIL.Image.Resampling


def _pil_resize(pixels: torch.Tensor, size: Size, interpolation: str) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> uint8 ``(3, h, w)`` (channels-last strides)
    resized by PIL with ``interpolation``'s filter."""
    from PIL import Image

    array = np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())
    resized = np.asarray(Image.fromarray(array).resize(size, _PIL_FILTERS[interpolation]))
    return torch.from_numpy(resized.copy()).permute(2, 0, 1)


def _size_setting(value: Any, key: str) -> None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return
    raise ConfigError(f"{key} must be a positive int or [height, width], got {value!r}")


@dataclasses.dataclass(init=False)
class TorchvisionImageModelConfig(TorchImageModelConfig):
    """:class:`~modelzoo.TorchImageModelConfig` plus torchvision's preprocessing.

    Attributes:
        resize_size: resize the shorter side to this (an int) or to exactly
            ``[height, width]``, as the weights' transforms do.
        crop_size: then centre-crop to this (an int: square).
        interpolation: the resize filter (``"bilinear"``, ``"bicubic"``...).
    """

    model_cls = "modelzoo.zoo.torchvision_models.TorchvisionImageModel"

    resize_size: Union[int, List[int], None] = None
    crop_size: Union[int, List[int], None] = None
    interpolation: str = "bilinear"

    def validate(self) -> None:
        super().validate()
        _size_setting(self.resize_size, "resize_size")
        _size_setting(self.crop_size, "crop_size")
        uses = [k for k in ("image_size", "image_min_dim", "image_max_dim") if getattr(self, k) is not None]
        if uses and (self.resize_size is not None or self.crop_size is not None):
            raise ConfigError(f"resize_size / crop_size replace {', '.join(uses)}: give one way to resize")


class TorchvisionImageModel(TorchImageModel):
    """A torchvision image model fed as its weights' transforms say (see
    :class:`TorchvisionImageModelConfig`)."""

    config_cls = TorchvisionImageModelConfig
    config: TorchvisionImageModelConfig

    def _build_transform(self) -> ImageTransform:
        cfg = self.config
        if cfg.resize_size is None and cfg.crop_size is None:
            return super()._build_transform()
        return ResizeCropTransform(cfg.resize_size, cfg.crop_size, cfg.image_mean, cfg.image_std, cfg.interpolation,
                                   preprocessing=cfg.preprocessing)

    @property
    def ragged_batches(self) -> bool:
        if self.config.crop_size is not None or isinstance(self.config.resize_size, (list, tuple)):
            return self.config.raw_inputs
        return super().ragged_batches


# -- videos ---------------------------------------------------------------------------------


@dataclasses.dataclass(init=False)
class TorchvisionVideoModelConfig(ModelConfig):
    """How to build and feed a torchvision video classifier.

    Attributes:
        entrypoint_fcn: a dotted path or callable returning the module
            (``modelzoo.zoo.torchvision_models.build_torchvision``).
        entrypoint_args: its keyword arguments.
        classes: the class names, by index.
        clip_len: frames per clip, evenly spaced over the video.
        resize_size: each frame's shorter side (an int) or ``[height, width]`` before the crop.
        crop_size: ``[height, width]`` of the centre crop.
        image_mean, image_std: per-channel normalization of ``[0, 1]`` RGB.
        interpolation: the resize filter.
        device: ``"cpu"``, ``"cuda"``...; default CUDA when available.
        store_logits: keep the clip's logits on the label.
    """

    model_cls = "modelzoo.zoo.torchvision_models.TorchvisionVideoModel"

    entrypoint_fcn: Any = None
    entrypoint_args: Optional[Dict[str, Any]] = None
    classes: Optional[List[str]] = None
    clip_len: int = 16
    resize_size: Union[int, List[int], None] = None
    crop_size: Union[int, List[int], None] = None
    image_mean: Optional[List[float]] = None
    image_std: Optional[List[float]] = None
    interpolation: str = "bilinear"
    device: Optional[str] = None
    store_logits: bool = False

    def validate(self) -> None:
        super().validate()
        if self.entrypoint_fcn is None:
            raise ConfigError("TorchvisionVideoModelConfig requires entrypoint_fcn")
        if not isinstance(self.clip_len, int) or isinstance(self.clip_len, bool) or self.clip_len < 1:
            raise ConfigError(f"clip_len must be a positive int, got {self.clip_len!r}")
        _size_setting(self.resize_size, "resize_size")
        _size_setting(self.crop_size, "crop_size")


def _even_indices(total: int, n: int) -> List[int]:
    """``n`` frame indices evenly spaced over ``total`` frames (repeated when the video is shorter)."""
    if total <= 0:
        return []
    return [int(round(i * (total - 1) / max(n - 1, 1))) for i in range(n)]


class TorchvisionVideoModel(Model):
    """A torchvision video classifier (Kinetics-400): one clip of
    ``clip_len`` evenly spaced frames per video -> a :class:`Classification`.

    Input: a :class:`~modelzoo.video.VideoReader`, or the frames themselves
    (a uint8 ``(T, H, W, 3)`` array or a list of ``(H, W, 3)`` arrays).
    The module sees ``FloatTensor[N, 3, clip_len, crop_h, crop_w]``.
    """

    config_cls = TorchvisionVideoModelConfig
    config: TorchvisionVideoModelConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        from ..imports import import_object

        cfg = self.config
        self._device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        fn = import_object(cfg.entrypoint_fcn, "entrypoint_fcn") if isinstance(cfg.entrypoint_fcn, str) else cfg.entrypoint_fcn
        self._module = fn(**(cfg.entrypoint_args or {})).eval().to(self._device)
        self._classes = load_classes(cfg.classes, None, None)
        crop = cfg.crop_size if cfg.crop_size is not None else cfg.resize_size
        self._transform = ResizeCropTransform(
            cfg.resize_size, crop, cfg.image_mean, cfg.image_std, cfg.interpolation, antialias=False
        )

    @property
    def media_type(self) -> str:
        return "video"

    @property
    def classes(self) -> Optional[List[str]]:
        return self._classes

    @property
    def torch_model(self) -> torch.nn.Module:
        return self._module

    def _frames(self, video: Any) -> List[np.ndarray]:
        n = self.config.clip_len
        if isinstance(video, np.ndarray) and video.ndim == 4:
            frames = list(video)
        elif isinstance(video, (list, tuple)):
            frames = list(video)
        else:  # a VideoReader: keep the evenly spaced frames as they are decoded
            total = int(getattr(video, "total_frame_count", 0) or 0)
            if total <= 0:
                frames = [np.asarray(f) for f in video]
            else:
                wanted = _even_indices(total, n)
                keep = set(wanted)
                got: Dict[int, np.ndarray] = {}
                for i, frame in enumerate(video):
                    if i in keep:
                        got[i] = np.asarray(frame)
                    if i >= wanted[-1]:
                        break
                last = max(got) if got else None
                if last is None:
                    raise ConfigError(f"{getattr(video, 'path', 'the video')} has no frames")
                return [got.get(i, got[last]) for i in wanted]
        if not frames:
            raise ConfigError("a video needs at least one frame")
        return [frames[i] for i in _even_indices(len(frames), n)]

    def _clip(self, video: Any) -> torch.Tensor:
        frames = self._frames(video)
        inputs = [self._transform(f).normalized() for f in frames]  # (3, h, w) each
        return torch.stack(inputs, dim=1)  # (3, T, h, w)

    def predict(self, arg: Any) -> Optional[Classification]:
        return self.predict_all([arg])[0]

    def predict_all(self, args: Sequence[Any]) -> List[Optional[Classification]]:
        clips = torch.stack([self._clip(a) for a in args]).to(self._device)
        with torch.inference_mode():
            logits = self._module(clips).float().cpu()
        probs = logits.softmax(dim=1)
        out: List[Optional[Classification]] = []
        for row, prob in zip(logits, probs):
            i = int(prob.argmax())
            name = self._classes[i] if self._classes else str(i)
            conf = float(prob[i])
            if self.config.confidence_thresh is not None and conf < self.config.confidence_thresh:
                out.append(None)
                continue
            label = Classification(label=name, confidence=conf)
            if self.config.store_logits:
                label.logits = row.numpy()
            out.append(label)
        return out

    def __repr__(self) -> str:
        return f"TorchvisionVideoModel({self.config.entrypoint_args})"

