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
import contextlib
import dataclasses
import warnings
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Dict, Hashable, Iterator, List, Optional, Sequence

from .config import Config
from .loaders import ImageLoader, Loader, VideoLoader

if TYPE_CHECKING:
    from .recipes import Recipe

__all__ = ["Call", "Model", "ModelConfig", "SHORTCUTS"]


@dataclasses.dataclass(frozen=True)
class Call:
    """What one engine call asks of a model (:meth:`Model.run_batch`): the
    per-run options, passed with each batch instead of set on the model, so
    that one model object can serve several runs (and a
    :class:`~modelzoo.serving.Batcher`) at once with different options.

    Attributes:
        mode: ``"predict"`` (labels) or ``"embed"`` (an ``(N, D)`` array).
        store_logits: keep the logits on the labels.
        loaded: the inputs come from this model's own loader
            (:meth:`Model.build_loader`), its transforms already applied
            and collated; False: they are plain images, as ``predict`` takes.
        prompts: a zero-shot run's classes, their prompts prepared once for
            the run (a :class:`~modelzoo.mixins.ClassPrompts` from the model's
            ``prompts_for``); None: the model's own classes.
    """

    mode: str = "predict"
    store_logits: bool = False
    loaded: bool = False
    prompts: Any = dataclasses.field(default=None, compare=False)


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

    #: inputs per ``predict_all`` call under ``apply_model`` when the caller gives no batch size
    default_batch_size: Optional[int] = None

    #: where the forward pass runs (a ``torch.device`` or a device string such
    #: as ``"cuda:0"``); None: the model does not say, and the engine plans for the CPU
    device: Any = None

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

    @property
    def thread_safe(self) -> bool:
        """Whether :meth:`run_batch` may run on two batches at once, from two
        threads. The engine then predicts two batches at a time on a CPU
        where its calibration chose one torch thread and left a core partly
        idle (see :func:`modelzoo.engine.tuning.predict_streams`), and runs
        one-thread streams in place of more torch threads
        (:meth:`modelzoo.engine.tuning.Calibration.split`). False
        unless a model says so: a forward that keeps state between calls
        (hooks, caches, a counter) is not."""
        return False

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
        """Whether :meth:`predict` applies :attr:`transforms` itself (FiftyOne's
        name). The engine feeding a model from its own loader says so with
        each batch (``Call.loaded``); for a model that does not implement
        :meth:`run_batch` it sets this to False for the length of that call."""
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

    #: A hook :func:`modelzoo.download_zoo_model` runs once per zoo entry after
    #: its files are downloaded (a Tungsten model's ``post_build``): a
    #: classmethod taking no argument, declared by the class that has one.
    #: None (the default): nothing runs, and the zoo writes no marker file.
    zoo_post_download: ClassVar[Optional[Callable[[], None]]] = None

    def rebuild_recipe(self) -> Optional["Recipe"]:
        """How this model is rebuilt in another process (a Ray replica, an
        unpickling): a :class:`~modelzoo.recipes.Recipe`, or None to let
        :func:`~modelzoo.recipes.recipe_of` decide (the recipe the model was
        built from, else its class and config when its constructor takes only
        a config). Adapters whose constructor takes more override it."""
        return None

    # -- inference -----------------------------------------------------------------
    @abc.abstractmethod
    def predict(self, arg: Any) -> Any:
        """Predicts on one input (a uint8 HWC numpy array or a PIL image)."""

    def predict_all(self, args: Sequence[Any]) -> List[Any]:
        """Predicts on a batch; one output per input, in order."""
        return [self.predict(arg) for arg in args]

    def run_batch(self, inputs: Any, call: Call, samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> Any:
        """What the engine calls on each batch: ``predict_all`` (or
        ``embed_all``) with the run's options in ``call``.

        ``samples`` is given to a :class:`~modelzoo.SamplesMixin` model (its
        ``needs_fields``, one dict per input). Override it to honour ``call``
        without touching the model (as :class:`~modelzoo.TorchImageModel`
        does): then one model object serves concurrent runs with different
        options. This default serves models written to FiftyOne's API, which
        read :attr:`preprocess` and ``store_logits`` from the model: it sets
        them for the length of this call only, and restores them.
        """
        with self._fiftyone_flags(call):
            if call.mode == "embed":
                return self.embed_all(inputs)  # type: ignore[attr-defined]
            if samples is not None:
                return self.predict_all(inputs, samples=samples)  # type: ignore[call-arg]
            return self.predict_all(inputs)

    @contextlib.contextmanager
    def _fiftyone_flags(self, call: Call) -> Iterator[None]:
        """FiftyOne's protocol: ``preprocess`` off while the loader feeds
        transformed inputs, ``store_logits`` on when asked for."""
        from .mixins import LogitsMixin, TorchModelMixin

        preprocess = self.preprocess if call.loaded and isinstance(self, TorchModelMixin) else None
        logits = call.store_logits and isinstance(self, LogitsMixin) and not self.store_logits
        if preprocess:
            self.preprocess = False
        if logits:
            self.store_logits = True  # type: ignore[attr-defined]
        try:
            yield
        finally:
            if preprocess:
                self.preprocess = True
            if logits:
                self.store_logits = False  # type: ignore[attr-defined]

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
