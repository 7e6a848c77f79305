"""Samples: one document per media file, with any number of label fields.

A video sample's frame-level fields are not in its document: they live in
the dataset's frames collection, one document per frame, reached through
``sample.frames`` (:class:`~modelzoo.frames.Frames`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from bson.binary import Binary
from mongoengine import DynamicDocument, EmbeddedDocument
from mongoengine.base import BaseField
from mongoengine.fields import DateTimeField, FloatField, IntField, StringField

from .encoding import ARRAY_SUBTYPE, decode_array

__all__ = ["Sample", "ImageMetadata", "VideoMetadata"]


class ImageMetadata(EmbeddedDocument):
    """What the image header says: read at ingest time, no pixels decoded.
    ``width`` and ``height`` are those of the upright image (EXIF
    orientation applied) unless the ingest was told to keep the stored
    pixel order."""

    width = IntField()
    height = IntField()
    channels = IntField()
    size_bytes = IntField()
    mime_type = StringField()
    mode = StringField()


class VideoMetadata(EmbeddedDocument):
    """What a video's container says (PyAV), read at ingest time.

    Attributes:
        width, height: frame size in pixels.
        frame_rate: average frames per second.
        total_frame_count: frames in the video stream.
        duration: seconds.
        codec: the video codec (``"h264"``, ``"mpeg4"``...).
        container: the container format.
        size_bytes: the file's size.
        mime_type: from the extension.
    """

    width = IntField()
    height = IntField()
    frame_rate = FloatField()
    total_frame_count = IntField()
    duration = FloatField()
    codec = StringField()
    container = StringField()
    size_bytes = IntField()
    mime_type = StringField()


class _MetadataField(BaseField):
    """An :class:`ImageMetadata` or a :class:`VideoMetadata` (told apart by
    ``total_frame_count``, which only videos have)."""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, dict):
            cls = VideoMetadata if "total_frame_count" in value else ImageMetadata
            return cls._from_son(value)
        return value

    def to_mongo(self, value: Any, *args: Any, **kwargs: Any) -> Any:
        return value.to_mongo() if hasattr(value, "to_mongo") else value

    def validate(self, value: Any, clean: bool = True) -> None:
        if value is not None and not isinstance(value, (ImageMetadata, VideoMetadata)):
            self.error(f"metadata must be an ImageMetadata or a VideoMetadata, got {type(value).__name__}")


class Sample(DynamicDocument):
    """A media file and its fields.

    Any attribute can be set (``sample.predictions = Detections(...)``) and
    read as ``sample.field`` or ``sample["field"]``. A sample built by the user
    is unattached until added to a dataset with ``dataset.add_sample``.

    Args:
        filepath: the path of the media file.
        **fields: any other fields.
    """

    filepath = StringField(required=True)
    media_type = StringField(default="image")
    metadata = _MetadataField()
    ingest_error = StringField()
    created_at = DateTimeField()

    meta = {"abstract": True, "allow_inheritance": False}

    @classmethod
    def _from_son(cls, son: Dict[str, Any], *args: Any, **kwargs: Any) -> "Sample":
        son = {k: v for k, v in son.items() if k != "frames"}  # frames live in their own collection
        doc = super()._from_son(son, *args, **kwargs)
        for key, value in list(doc._data.items()):
            if isinstance(value, Binary) and value.subtype == ARRAY_SUBTYPE:
                setattr(doc, key, decode_array(value))
        doc._clear_changed_fields()
        return doc

    @classmethod
    def from_document(cls, son: Dict[str, Any]) -> "Sample":
        """The sample stored as ``son`` (a raw MongoDB document of its collection)."""
        return cls._from_son(son)

    @property
    def dataset_name(self) -> Optional[str]:
        return getattr(type(self), "_dataset_name", None)

    def __init__(self, *args: Any, **values: Any):
        super().__init__(*args, **values)
        if "media_type" not in values and self.filepath:
            from .media import is_video_path

            if is_video_path(self.filepath):  # as FiftyOne: the media type follows the file
                self.media_type = "video"

    @property
    def frames(self) -> Any:
        """The sample's frame-level fields by frame number
        (:class:`~modelzoo.frames.Frames`): ``sample.frames[n]["field"]``,
        ``sample.frames[n] = Frame(...)``, ``sample.frames.keys()``.

        A sample not yet in a dataset keeps its frames in memory
        (:class:`~modelzoo.frames.PendingFrames`) until ``dataset.add_sample(s)``
        stores them.
        """
        from .frames import Frames, PendingFrames

        if self.dataset_name is None or getattr(self, "id", None) is None:
            pending = self.__dict__.get("_pending_frames")
            if pending is None:
                pending = PendingFrames()
                object.__setattr__(self, "_pending_frames", pending)
            return pending
        return Frames(self._attached_collection("frames"), self.id, self.dataset_name or "")

    def _attached_collection(self, what: str) -> str:
        if self.dataset_name is None or getattr(self, "id", None) is None:
            from .errors import DatasetError

            raise DatasetError(
                f"{what} of a sample are stored in its dataset's frames collection: add the sample to a "
                "dataset first (dataset.add_sample(sample))"
            )
        return str(type(self)._meta["collection"])

    def add_labels(self, labels: Any, label_field: Any = "predictions") -> None:
        """Sets ``labels`` on this sample the way ``apply_model`` stores them
        (a Label, a dict of Labels, or frame-number-keyed dicts, which go to
        the sample's frames), then saves the sample if it belongs to a dataset.

        Raises:
            DatasetError: frame labels for a sample not in a dataset.
        """
        from .fields import label_updates
        from .storage import bulk_set, split_frame_path

        own: Dict[str, Any] = {}
        frames: Dict[Any, Dict[str, Any]] = {}
        for path, value in label_updates(labels, label_field).items():
            number, rest = split_frame_path(path)
            if number:
                frames.setdefault(number, {})[rest] = value
            else:
                own[path] = value
        if frames:
            coll = self._attached_collection("Frame labels")
            bulk_set(coll, {(self.id, n): f for n, f in frames.items()}, self.dataset_name or "")
        for path, value in own.items():
            self._set_path(path, value)
        if self.dataset_name is not None and own:
            self.save()

    def _set_path(self, path: str, value: Any) -> None:
        parts = path.split(".")
        if len(parts) == 1:
            self[parts[0]] = value
            return
        root = self._data.get(parts[0])
        if not isinstance(root, dict):
            root = {}
        cur = root
        for part in parts[1:-1]:
            cur = cur.setdefault(part, {})
        cur[parts[-1]] = value
        self[parts[0]] = root

    def __getitem__(self, name: str) -> Any:
        if name == "id":
            return self.id
        if name not in self._data and name not in self._fields:
            raise KeyError(f"Sample {self.id} has no field {name!r}")
        return super().__getitem__(name)

    def __repr__(self) -> str:
        fields = {k: v for k, v in self._data.items() if v is not None and k != "id"}
        return f"<Sample {self.id}: {fields}>"
