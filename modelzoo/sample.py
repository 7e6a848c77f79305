"""Samples: one document per media file, with any number of label fields."""

from __future__ import annotations

from typing import Any, Dict, Optional

from bson.binary import Binary
from mongoengine import DynamicDocument, EmbeddedDocument
from mongoengine.fields import DateTimeField, EmbeddedDocumentField, IntField, StringField

from .encoding import ARRAY_SUBTYPE, decode_array

__all__ = ["Sample", "ImageMetadata"]


class ImageMetadata(EmbeddedDocument):
    """What the image header says: read at ingest time, no pixels decoded."""

    width = IntField()
    height = IntField()
    channels = IntField()
    size_bytes = IntField()
    mime_type = StringField()
    mode = StringField()


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
    metadata = EmbeddedDocumentField(ImageMetadata)
    ingest_error = StringField()
    created_at = DateTimeField()

    meta = {"abstract": True, "allow_inheritance": False}

    @classmethod
    def _from_son(cls, son: Dict[str, Any], *args: Any, **kwargs: Any) -> "Sample":
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

    def add_labels(self, labels: Any, label_field: Any = "predictions") -> None:
        """Sets ``labels`` on this sample the way ``apply_model`` stores them
        (a Label, a dict of Labels, or frame-number-keyed dicts), then saves
        the sample if it belongs to a dataset."""
        from .fields import label_updates

        for path, value in label_updates(labels, label_field).items():
            self._set_path(path, value)
        if self.dataset_name is not None:
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
