"""Work items and loaders: what a model receives for each sample.

A run turns each sample (or, for videos, each frame) into a :class:`WorkItem`,
small enough to travel to worker processes. A :class:`Loader` turns an item
into one model input in those workers (:meth:`Loader.load`) and a list of
inputs into what ``predict_all`` takes (:meth:`Loader.collate`). Every
:class:`~modelzoo.Model` declares its loader with
:meth:`~modelzoo.Model.build_loader`; the default decodes the image to a
uint8 ``(H, W, 3)`` array. For frames of videos, the engine decodes each
video sequentially in the loader workers and hands each selected frame (a
uint8 ``(H, W, 3)`` array) to :meth:`Loader.load_frame`; video models
receive a :class:`~modelzoo.video.VideoReader` from :class:`VideoLoader`.

Loaders must be picklable (module-level classes holding plain data): the
engine runs them in DataLoader worker processes, and on other machines under
Ray.

Example, a model that wants each file's bytes::

    class BytesModel(mz.Model):
        def build_loader(self):
            return BytesLoader()

        def predict(self, data: bytes):
            ...
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

__all__ = [
    "WorkItem",
    "Loader",
    "FileLoader",
    "ImageLoader",
    "BytesLoader",
    "PathLoader",
    "PILLoader",
    "VideoLoader",
    "list_collate",
    "LOADER_KINDS",
    "loader_for_kind",
    "kind_of_loader",
]


class WorkItem(NamedTuple):
    """One unit of work: a sample, or one frame of a video sample.

    Its identity is ``(sample_id, frame_number)``, the same in every process
    and every run (never a per-run counter), so shards, retries and resumed
    runs agree on what was done.

    Attributes:
        sample_id: the sample's id (a bson ``ObjectId``).
        filepath: the sample's media file.
        fields: the sample fields a :class:`~modelzoo.SamplesMixin` model
            reads, by input name; None when the model reads none.
        frame_number: the frame (1-based) for frame items, else None.
    """

    sample_id: Any
    filepath: Optional[str]
    fields: Optional[Dict[str, Any]] = None
    frame_number: Optional[int] = None

    @property
    def key(self) -> Any:
        """The item's identity: the sample id, or ``(sample_id, frame_number)``."""
        return self.sample_id if self.frame_number is None else (self.sample_id, self.frame_number)


def list_collate(batch: Sequence[Any]) -> List[Any]:
    """Collates a batch as a plain list (for ragged inputs). Picklable."""
    return list(batch)


def _filepath(item: WorkItem) -> str:
    if not item.filepath:
        raise ValueError("sample has no filepath")
    return item.filepath


class Loader:
    """Turns work items into model inputs. Subclass and override :meth:`load`
    (and :meth:`collate` when ``predict_all`` takes something other than a
    list). Must be picklable."""

    def load(self, item: WorkItem) -> Any:
        """The model input for one item; runs in a loader worker. Raise
        (``OSError``, ``ValueError``...) with a message naming the file for a
        per-sample data error: the engine records it against that sample."""
        raise NotImplementedError(f"{type(self).__name__} must implement load(item)")

    def collate(self, inputs: Sequence[Any]) -> Any:
        """What ``predict_all`` takes for these inputs (default: a list)."""
        return list(inputs)

    @property
    def takes_frames(self) -> bool:
        """Whether :meth:`load_frame` can turn decoded video frames into inputs
        (so that the model runs on the frames of video samples)."""
        return False

    def load_frame(self, item: WorkItem, frame: Any) -> Any:
        """The model input for one decoded video frame (uint8 ``(H, W, 3)``
        RGB), frame ``item.frame_number`` of the video ``item.filepath``;
        runs in a loader worker. Loaders that take image files (bytes,
        paths) cannot take frames."""
        raise TypeError(
            f"{type(self).__name__} loads image files, not decoded video frames; run this model on image "
            "samples, or give it a loader whose load_frame takes an (H, W, 3) uint8 array"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FileLoader(Loader):
    """Applies ``load_fn(filepath)`` and collates with ``collate_fn``.

    Args:
        load_fn: a picklable ``filepath -> input`` callable.
        collate_fn: a picklable ``list of inputs -> batch`` callable.
    """

    def __init__(self, load_fn: Callable[[str], Any], collate_fn: Callable[[Sequence[Any]], Any] = list_collate):
        self.load_fn = load_fn
        self.collate_fn = collate_fn

    def load(self, item: WorkItem) -> Any:
        return self.load_fn(_filepath(item))

    def collate(self, inputs: Sequence[Any]) -> Any:
        return self.collate_fn(inputs)

    @property
    def takes_frames(self) -> bool:
        """True when ``load_fn`` has a ``load_array(array)`` method (the
        decoders of :mod:`modelzoo.image_io` and :mod:`modelzoo.transforms` do)."""
        return callable(getattr(self.load_fn, "load_array", None))

    def load_frame(self, item: WorkItem, frame: Any) -> Any:
        load_array = getattr(self.load_fn, "load_array", None)
        if load_array is None:
            return super().load_frame(item, frame)
        return load_array(frame)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.load_fn!r})"


class ImageLoader(FileLoader):
    """The decoded image, a uint8 ``(H, W, 3)`` RGB array (any file mode is
    converted), then ``transforms`` when given.

    Args:
        transforms: a picklable callable applied to the decoded array.
        exif_orientation: decode upright (EXIF orientation applied); False
            keeps the stored pixel order.
    """

    def __init__(self, transforms: Optional[Callable[[Any], Any]] = None, exif_orientation: bool = True):
        from .image_io import DecodeImage

        super().__init__(DecodeImage(transforms, exif_orientation))


class BytesLoader(Loader):
    """The file's bytes, undecoded (for models that decode themselves, such
    as Launch bundles taking ``img_bytes``)."""

    def load(self, item: WorkItem) -> bytes:
        path = _filepath(item)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"File not found: {path}") from None


class PathLoader(Loader):
    """The file's path, checked to exist (for models that open files themselves)."""

    def load(self, item: WorkItem) -> str:
        import os

        path = _filepath(item)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"File not found: {path}")
        return path


class PILLoader(Loader):
    """The image as an RGB ``PIL.Image`` (fully decoded, upright).

    Args:
        exif_orientation: apply the EXIF orientation; False keeps the stored
            pixel order.
    """

    def __init__(self, exif_orientation: bool = True):
        self.exif_orientation = exif_orientation

    def load(self, item: WorkItem) -> Any:
        from .image_io import decode_rgb, open_image, upright
        from .media import exif_orientation_of

        path = _filepath(item)
        with open_image(path) as img:
            orientation = exif_orientation_of(img) if getattr(self, "exif_orientation", True) else 1
            rgb = upright(decode_rgb(img, path), orientation)
            return rgb if rgb is not img else img.copy()  # usable after the file is closed

    @property
    def takes_frames(self) -> bool:
        return True

    def load_frame(self, item: WorkItem, frame: Any) -> Any:
        from PIL import Image

        return Image.fromarray(frame)


class VideoLoader(Loader):
    """A :class:`~modelzoo.video.VideoReader` over the sample's video: what
    video models (``media_type == "video"``) receive. The reader is opened
    here (a video that cannot be opened costs its sample) and decodes as the
    model iterates it; the engine closes it once the model's labels are
    stored. Readers hold an open file, so video models load in the main
    process."""

    def load(self, item: WorkItem) -> Any:
        from .video import VideoReader

        return VideoReader(_filepath(item))


#: The loader kinds that adapters name in their ``input`` setting (bundles,
#: VESSL models) and that the serving input adapter recognises: kind -> the
#: loader class, built without arguments. The one table of them; a
#: request-dict bundle adds its own ``"request"`` kind beside these.
LOADER_KINDS: Dict[str, Callable[[], Loader]] = {
    "bytes": BytesLoader,
    "path": PathLoader,
    "array": ImageLoader,
    "pil": PILLoader,
}


def loader_for_kind(kind: str) -> Loader:
    """A new loader of ``kind`` (a key of :data:`LOADER_KINDS`).

    Raises:
        ValueError: an unknown kind (the known ones are listed).
    """
    try:
        factory = LOADER_KINDS[kind]
    except KeyError:
        raise ValueError(f"Unknown loader kind {kind!r}; the kinds are {', '.join(LOADER_KINDS)}") from None
    return factory()


def kind_of_loader(loader: Optional[Loader]) -> Optional[str]:
    """The :data:`LOADER_KINDS` kind ``loader`` is an instance of, or None."""
    for kind, cls in LOADER_KINDS.items():
        if isinstance(cls, type) and isinstance(loader, cls):
            return kind
    return None
