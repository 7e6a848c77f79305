"""The Model interface every model implements to run under ``apply_model``.

Inside ``apply_model`` a model is used as::

    with model:
        labels = model.predict_all(batch)      # or model.predict(x)

``predict`` takes one image (a uint8 HWC numpy array or a PIL image) and
returns a Label or a dict of Labels; a video model (``media_type ==
"video"``) takes a :class:`~modelzoo.video.VideoReader` and returns
``{frame_number: label or dict of labels}``, stored as frame labels (see
:func:`modelzoo.fields.label_updates` for where each goes, and
docs/video.md).
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from .config import Config
from .loaders import ImageLoader, Loader, VideoLoader

__all__ = ["Model", "ModelConfig", "SHORTCUTS"]


@dataclasses.dataclass(init=False)
class ModelConfig(Config):
    """Settings every model understands. Subclasses add their own.

    Attributes:
        confidence_thresh: drop predictions below this confidence.
    """

    confidence_thresh: Optional[float] = None

    def validate(self) -> None:
        if self.confidence_thresh is not None and not 0 <= float(self.confidence_thresh) <= 1:
            from .errors import ConfigError

            raise ConfigError(f"confidence_thresh must be in [0, 1], got {self.confidence_thresh!r}")


class Model(abc.ABC):
    """Abstract model. Implement :meth:`predict` (and :meth:`predict_all` for
    efficient batching).

    Args:
        config: the model's settings.
    """

    #: the config class this model takes; used when a dict is passed
    config_cls: type = ModelConfig

    #: pydantic models of one request and one response when this model takes
    #: and returns typed records (a Tungsten-style model); None for models of
    #: images. ``modelzoo serve`` validates request bodies with it.
    request_schema: Optional[type] = None
    response_schema: Optional[type] = None

    def __init__(self, config: Any = None):
        if config is None or isinstance(config, dict):
            config = self.config_cls(config or {})
        self.config = config
        self._preprocess = True

    # -- context manager: set up, and restore any global state changed ------------
    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    # -- capabilities --------------------------------------------------------------
    @property
    def media_type(self) -> str:
        """``"image"`` or ``"video"``."""
        return "image"

    @property
    def ragged_batches(self) -> bool:
        """True when inputs of one batch may have different shapes, so they
        must be passed as a list rather than stacked."""
        return True

    def prepare(self, num_samples: int) -> None:
        """Called by the engine before a run over ``num_samples`` samples, so
        that a model can get ready for the run's size (a
        :class:`~modelzoo.torch_image.TorchImageModel` with
        ``optimize="auto"`` builds its optimized graph when the run is long
        enough to pay for it). The default does nothing."""

    def build_loader(self) -> Loader:
        """What turns each sample into this model's input, in the engine's
        loader workers (a picklable :class:`~modelzoo.loaders.Loader`).

        The default decodes the image to a uint8 ``(H, W, 3)`` RGB array and
        :meth:`predict` applies :attr:`transforms` itself. Override to receive
        the file's bytes (:class:`~modelzoo.loaders.BytesLoader`), its path
        (:class:`~modelzoo.loaders.PathLoader`), a PIL image
        (:class:`~modelzoo.loaders.PILLoader`) or anything a loader of your
        own builds. A video model (:attr:`media_type` ``"video"``) gets a
        :class:`~modelzoo.loaders.VideoLoader`: :meth:`predict` receives a
        :class:`~modelzoo.video.VideoReader`.
        """
        if self.media_type == "video":
            return VideoLoader()
        return ImageLoader()

    @property
    def transforms(self) -> Optional[Callable[[Any], Any]]:
        """The preprocessing applied to each input (picklable, so DataLoader
        workers can run it), or None."""
        return None

    @property
    def preprocess(self) -> bool:
        """Whether :meth:`predict` applies :attr:`transforms` itself. The engine
        sets it to False while it feeds already-transformed inputs."""
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        self._preprocess = bool(value)

    @property
    def has_logits(self) -> bool:
        return False

    @property
    def has_embeddings(self) -> bool:
        return False

    def batch_key(self, arg: Any) -> Hashable:
        """Inputs whose keys differ never share a batch (a Tungsten-style
        model's options). The default puts every input in one group."""
        return None

    # -- inference -----------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, arg: Any) -> Any:
        """Predicts on one input (a uint8 HWC numpy array or a PIL image)."""

    def predict_all(self, args: Sequence[Any]) -> List[Any]:
        """Predicts on a batch; one output per input, in order."""
        return [self.predict(arg) for arg in args]

    # -- deprecated shortcuts to features (see SHORTCUTS) --------------------------------
    def batcher(self, max_batch_size: int = 32, max_wait_ms: float = 5.0, name: Optional[str] = None) -> Any:
        """Deprecated: use ``modelzoo.serving.Batcher(model, ...)``, which this returns.

        The batcher is a feature beside the core, not part of the model
        (docs/architecture.md); this alias reaches it through :data:`SHORTCUTS`.
        """
        warnings.warn(
            "model.batcher(...) is deprecated; use modelzoo.serving.Batcher(model, ...)", DeprecationWarning, stacklevel=2
        )
        return SHORTCUTS["batcher"](self, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms, name=name)


#: Factories behind :class:`Model`'s deprecated shortcut methods, by method
#: name (``"batcher"``: ``modelzoo.serving.Batcher``). The feature lives in
#: its own package and the core keeps only this table, which the package root
#: (``modelzoo/__init__.py``) fills with lazy factories: the core never
#: imports a feature (tests/test_layering.py).
SHORTCUTS: Dict[str, Callable[..., Any]] = {}
