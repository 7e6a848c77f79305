"""The settings of a torch image model: :class:`TorchImageModelConfig`.

Kept apart from :mod:`modelzoo.torch_image` (the model, which needs torch) so
that the zoo validates its manifests' configs without importing torch.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import ConfigError
from .models import ModelConfig
from .skeleton import check_skeleton

__all__ = [
    "TorchImageModelConfig", "size_wh", "OPTIMIZE_MIN_SAMPLES", "DETECTOR_OPTIMIZE_MIN_SAMPLES",
    "ENV_OPTIMIZE_MIN_SAMPLES", "optimize_min_samples",
]

#: with ``optimize="auto"``, runs of at least this many samples get the
#: optimized graph. Measured (benchmarks/bench_optimize.py, 2 cores): the
#: build (0.5 s for mobilenet_v3_small to 2.4 s for resnet50) pays for itself
#: after 5-99 samples of forward-pass gain; 256 is 2.5x the largest of those,
#: because a run's end-to-end gain is smaller than the forward's when
#: decoding limits it (docs/performance.md).
OPTIMIZE_MIN_SAMPLES = 256
#: the same for torchvision's detectors (their fast path: frozen backbone
#: and box head, modelzoo.fast_detectors): the build and its verification
#: take 5-10 s on 2 cores, and each 640x480 photo's forward gains 0.05-0.1 s
#: (benchmarks/bench_detectors.py), so it pays for itself after about 100;
#: 32 is what makes a run of a few hundred photos gain, not lose
DETECTOR_OPTIMIZE_MIN_SAMPLES = 32
ENV_OPTIMIZE_MIN_SAMPLES = "MODELZOO_OPTIMIZE_MIN_SAMPLES"


def optimize_min_samples(configured: Optional[int] = None, default: int = OPTIMIZE_MIN_SAMPLES) -> int:
    """The run size from which ``optimize="auto"`` builds the graph: the
    config's ``optimize_min_samples``, else ``$MODELZOO_OPTIMIZE_MIN_SAMPLES``,
    else ``default`` (:data:`OPTIMIZE_MIN_SAMPLES`, or
    :data:`DETECTOR_OPTIMIZE_MIN_SAMPLES` for a detector)."""
    if configured is not None:
        return int(configured)
    raw = os.environ.get(ENV_OPTIMIZE_MIN_SAMPLES)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"${ENV_OPTIMIZE_MIN_SAMPLES} must be an integer >= 0, got {raw!r}") from None
    return value



@dataclasses.dataclass(init=False)
class TorchImageModelConfig(ModelConfig):
    """How to build, feed and read a torch image model. Unknown keys are errors.

    Attributes:
        entrypoint_fcn: a dotted path (``"torchvision.models.mobilenet_v2"``) or
            a callable returning the ``torch.nn.Module``.
        entrypoint_args: keyword arguments for ``entrypoint_fcn``.
        weights_path: a state dict to load (``torch.load(weights_only=True)``).
        weights_sha256: the expected sha256 of ``weights_path``; a mismatch refuses to load.
        output_processor_cls: a built-in processor's name, a dotted path or an
            :class:`~modelzoo.processors.OutputProcessor` subclass; None
            returns the raw outputs as numpy arrays.
        output_processor_args: keyword arguments for the processor.
        classes: the class names, by index. Or give one of:
        labels_string: comma-separated class names.
        labels_path: a file with one class per line, ``"name"`` or ``"index:name"``
            (ETA's files in ``eta/resources/``).
        mask_targets: ``{index: name}`` for semantic segmentation (default: the classes).
        skeleton: ``{"labels": [...], "edges": [[i, j], ...]}`` for keypoints.
        image_min_dim: upscale so that the smaller side is at least this.
        image_max_dim: downscale so that the larger side is at most this.
        image_size: resize to exactly this: an int (square) or ``(width, height)``.
        image_mean, image_std: per-channel normalization of ``[0, 1]`` RGB.
        embeddings_layer: the module (``named_modules`` name) whose output is
            the embedding; a leading ``<`` takes that module's input instead.
        use_half_precision: run the model in float16.
        cudnn_benchmark: set ``torch.backends.cudnn.benchmark`` inside ``with model``.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default CUDA when available.
        raw_inputs: pass each batch to the model as a list of ``(3, H, W)``
            tensors instead of a stacked NCHW tensor (torchvision detectors).
        optimize: ``"auto"`` (default): eager for single ``predict`` calls
            and short runs, the optimized graph once ``apply_model`` /
            ``compute_embeddings`` runs it on at least
            ``optimize_min_samples`` samples (the build then pays for
            itself) and only if it is verified and measured faster than
            eager (see docs/performance.md). ``True``/``"trace"``:
            channels_last plus a traced, frozen graph, built at load;
            ``"compile"``: :func:`torch.compile`; ``False``: eager. The
            optimized model is checked against eager when built and falls
            back to eager (logging why) when outputs differ.
        optimize_min_samples: with ``optimize="auto"``, the run size from
            which the graph is built (default
            ``$MODELZOO_OPTIMIZE_MIN_SAMPLES``, else
            :data:`OPTIMIZE_MIN_SAMPLES`).
        fast_decode: decode JPEGs at reduced scale when the target size is at
            least 2x smaller than the image (faster; slightly different pixels).
        preprocessing: how images are resized. ``"tensor"`` (default):
            torchvision's antialiased kernel on uint8 tensors, the fast path.
            ``"pil"``: PIL's bilinear filter with FiftyOne's size rounding,
            the pipeline of FiftyOne and of plain torchvision scripts, so
            probabilities match theirs to float precision (its cost is in
            docs/performance.md). Images needing no resize are identical
            either way.
        exif_orientation: decode images upright, their EXIF orientation
            applied (default); False keeps the stored pixel order.
        text_prompt: a zero-shot classifier (FiftyOne's CLIP setting): the
            module built by ``entrypoint_fcn`` has ``encode_image(NCHW)`` and
            ``encode_text(list of str)``; each class's prompt is
            ``f"{text_prompt} {class}"``, embedded once when the model is
            built, and images are classified by the softmax of their
            similarity to the prompts (``ZeroShotClassifierOutputProcessor``,
            the default processor then).
    """

    #: the model class this config builds (see :func:`modelzoo.register_zoo_model`);
    #: a dotted path, so that this module does not import torch
    model_cls: ClassVar[str] = "modelzoo.torch_image.TorchImageModel"

    entrypoint_fcn: Union[str, Callable[..., Any], None] = None
    entrypoint_args: Optional[Dict[str, Any]] = None
    weights_path: Optional[str] = None
    weights_sha256: Optional[str] = None
    output_processor_cls: Union[str, type, None] = None
    output_processor_args: Optional[Dict[str, Any]] = None
    classes: Optional[List[str]] = None
    labels_string: Optional[str] = None
    labels_path: Optional[str] = None
    mask_targets: Optional[Dict[Any, str]] = None
    skeleton: Optional[Dict[str, Any]] = None
    image_min_dim: Optional[int] = None
    image_max_dim: Optional[int] = None
    image_size: Union[int, Tuple[int, int], None] = None
    image_mean: Optional[Tuple[float, float, float]] = None
    image_std: Optional[Tuple[float, float, float]] = None
    embeddings_layer: Optional[str] = None
    use_half_precision: bool = False
    cudnn_benchmark: Optional[bool] = None
    device: Optional[str] = None
    raw_inputs: bool = False
    optimize: Union[bool, str] = "auto"
    optimize_min_samples: Optional[int] = None
    fast_decode: bool = False
    preprocessing: str = "tensor"
    exif_orientation: bool = True
    text_prompt: Optional[str] = None

    def validate(self) -> None:
        super().validate()
        name = type(self).__name__
        if self.entrypoint_fcn is None:
            raise ConfigError(f"{name} requires entrypoint_fcn (a dotted path or a callable returning the model)")
        if not isinstance(self.entrypoint_fcn, str) and not callable(self.entrypoint_fcn):
            raise ConfigError(f"entrypoint_fcn must be a dotted path or a callable, got {self.entrypoint_fcn!r}")
        for key in ("entrypoint_args", "output_processor_args", "mask_targets", "skeleton"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a dict, got {type(value).__name__}")
        if self.weights_sha256 is not None:
            if self.weights_path is None:
                raise ConfigError("weights_sha256 is set but weights_path is not")
            sha = str(self.weights_sha256).lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise ConfigError(f"weights_sha256 must be 64 hex digits, got {self.weights_sha256!r}")
        given = [k for k in ("classes", "labels_string", "labels_path") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"Give the classes once: {' and '.join(given)} are all set")
        if self.classes is not None and (isinstance(self.classes, str) or not isinstance(self.classes, Sequence)):
            raise ConfigError(f"classes must be a list of names, got {self.classes!r:.100}")
        for key in ("image_min_dim", "image_max_dim"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"{key} must be a positive int, got {value!r}")
        if self.image_min_dim and self.image_max_dim and self.image_min_dim > self.image_max_dim:
            raise ConfigError(
                f"image_min_dim ({self.image_min_dim}) is larger than image_max_dim ({self.image_max_dim})"
            )
        size_wh(self.image_size)  # raises on a bad value
        if self.image_size is not None and (self.image_min_dim or self.image_max_dim):
            raise ConfigError("image_size resizes exactly; do not combine it with image_min_dim / image_max_dim")
        if (self.image_mean is None) != (self.image_std is None):
            raise ConfigError("Give both image_mean and image_std, or neither")
        for key in ("image_mean", "image_std"):
            value = getattr(self, key)
            if value is not None:
                try:
                    values = [float(v) for v in value]
                except (TypeError, ValueError):
                    values = []
                if len(values) != 3 or (key == "image_std" and min(values) <= 0):
                    raise ConfigError(f"{key} must be three numbers (R, G, B){' > 0' if key == 'image_std' else ''}, got {value!r}")
        if self.embeddings_layer is not None and (not isinstance(self.embeddings_layer, str) or not self.embeddings_layer.lstrip("<")):
            raise ConfigError(f"embeddings_layer must be a module name such as 'fc' or '<classifier.1', got {self.embeddings_layer!r}")
        if self.optimize not in (True, False, "auto", "trace", "compile"):
            raise ConfigError(f"optimize must be 'auto', True, False, 'trace' or 'compile', got {self.optimize!r}")
        n = self.optimize_min_samples
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
            raise ConfigError(f"optimize_min_samples must be an integer >= 0, got {n!r}")
        if self.preprocessing not in ("tensor", "pil"):
            raise ConfigError(f"preprocessing must be 'tensor' or 'pil', got {self.preprocessing!r}")
        if self.preprocessing == "pil" and self.fast_decode:
            raise ConfigError("fast_decode changes pixels; it cannot be combined with preprocessing='pil'")
        for key in ("use_half_precision", "raw_inputs", "fast_decode", "exif_orientation"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be True or False, got {getattr(self, key)!r}")
        if self.device is not None:
            import torch  # only here: a config without a device is checked without torch

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError) as e:
                raise ConfigError(f"device {self.device!r} is not a torch device ({e})") from None
        check_skeleton(self.skeleton)
        if self.text_prompt is not None:
            if not isinstance(self.text_prompt, str):
                raise ConfigError(f"text_prompt must be a string such as 'A photo of', got {self.text_prompt!r}")
            if self.embeddings_layer is not None:
                raise ConfigError("text_prompt (zero-shot) embeds images with encode_image; drop embeddings_layer")


def size_wh(size: Any) -> Optional[Tuple[int, int]]:
    """``image_size`` as ``(width, height)``: an int is a square.

    Raises:
        ConfigError: not a positive int or a pair of them.
    """
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return (size, size)
    if isinstance(size, Sequence) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        return (int(size[0]), int(size[1]))
    raise ConfigError(f"image_size must be a positive int or (width, height), got {size!r}")
