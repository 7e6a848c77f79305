"""A video sample's frames: ``sample.frames[n]["field"]``, read from and
written to the dataset's frames collection (see :mod:`modelzoo.storage`).

Example::

    sample = dataset.first()
    sample.frames.keys()                 # [1, 2, 3, ...]: the frames that have fields
    sample.frames[1]["detections"]       # a Detections
    sample.frames[7]["note"] = "blurry"  # written at once
"""

from __future__ import annotations

import numbers
from typing import Any, Dict, Iterator, List, Mapping, Optional

from .errors import LabelError
from .fields import check_field_name, from_mongo_value
from .storage import FRAME_ID, FRAME_NUMBER, bulk_set, collection, frames_collection_name

__all__ = ["Frames", "Frame", "PendingFrames", "frame_fields"]

_OWN = ("_id", FRAME_ID, FRAME_NUMBER)


class Frame:
    """One frame's fields.

    ``Frame(detections=..., note="blurry")`` builds a frame to assign
    (``sample.frames[3] = Frame(...)``, as in FiftyOne). A frame read from a
    stored sample (``sample.frames[3]``) is a snapshot of its document:
    ``frame["field"] = value`` (or ``frame.field = value``) writes to the
    database at once (``None`` removes the field), so a later
    ``sample.save()`` has nothing left to do for it. ``frame["field"]`` reads a
    field (``KeyError`` when the frame lacks it).
    """

    def __init__(self, **fields: Any):
        for name in fields:
            check_field_name(name)
        object.__setattr__(self, "_frames", None)
        object.__setattr__(self, "frame_number", None)
        object.__setattr__(self, "_fields", {k: v for k, v in fields.items() if v is not None})

    @classmethod
    def _attached(cls, frames: Any, frame_number: int, fields: Dict[str, Any]) -> "Frame":
        frame = cls()
        object.__setattr__(frame, "_frames", frames)
        object.__setattr__(frame, "frame_number", frame_number)
        object.__setattr__(frame, "_fields", fields)
        return frame

    def __getitem__(self, field: str) -> Any:
        if field not in self._fields:
            owner = f" of sample {self._frames.sample_id}" if self._frames is not None else ""
            raise KeyError(f"Frame {self.frame_number}{owner} has no field {field!r}")
        return self._fields[field]

    def __setitem__(self, field: str, value: Any) -> None:
        check_field_name(field)
        if self._frames is not None:
            self._frames.set(self.frame_number, field, value)
        if value is None:
            self._fields.pop(field, None)
        else:
            self._fields[field] = value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"Frame {self.frame_number} has no field {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_") or name == "frame_number":
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __contains__(self, field: object) -> bool:
        return field in self._fields

    def get(self, field: str, default: Any = None) -> Any:
        return self._fields.get(field, default)

    def keys(self) -> List[str]:
        """The frame's field names."""
        return list(self._fields)

    def to_dict(self) -> Dict[str, Any]:
        return dict(self._fields)

    def __repr__(self) -> str:
        owner = f" of {self._frames.sample_id}" if self._frames is not None else ""
        return f"<Frame {self.frame_number}{owner}: {self._fields}>"


def frame_fields(frame: Any) -> Dict[str, Any]:
    """The fields of a :class:`Frame` or a dict of fields, checked."""
    if isinstance(frame, Frame):
        return frame.to_dict()
    if isinstance(frame, Mapping):
        return {check_field_name(str(k)): v for k, v in frame.items()}
    raise LabelError(f"A frame is a Frame(...) or a dict of fields, got {type(frame).__name__}")


class PendingFrames:
    """The frames of a sample not yet in a dataset, kept in memory until
    ``dataset.add_sample(s)`` stores them (FiftyOne's
    ``sample.frames[n] = Frame(...)`` before ``dataset.add_samples``)."""

    def __init__(self) -> None:
        self._frames: Dict[int, Frame] = {}

    def __getitem__(self, frame_number: int) -> Frame:
        number = _check_number(frame_number)
        frame = self._frames.get(number)
        if frame is None:  # as FiftyOne: reading a frame creates it
            frame = self._frames[number] = Frame()
            object.__setattr__(frame, "frame_number", number)
        return frame

    def __setitem__(self, frame_number: int, frame: Any) -> None:
        number = _check_number(frame_number)
        new = Frame(**frame_fields(frame))
        object.__setattr__(new, "frame_number", number)
        self._frames[number] = new

    def __contains__(self, frame_number: object) -> bool:
        return frame_number in self._frames

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def keys(self) -> List[int]:
        return sorted(self._frames)

    def items(self) -> Iterator[tuple]:
        for n in self.keys():
            yield n, self._frames[n]

    def updates(self, sample_id: Any) -> Dict[Any, Dict[str, Any]]:
        """``{(sample_id, n): fields}`` for :func:`modelzoo.storage.bulk_set`."""
        return {(sample_id, n): f.to_dict() for n, f in sorted(self._frames.items()) if f.to_dict()}

    def __repr__(self) -> str:
        return f"<Frames of an unsaved sample: {self.keys()}>"


class Frames:
    """The frames of one stored sample that have fields, by frame number.

    Args:
        samples_collection: the sample's collection.
        sample_id: its id (a bson ``ObjectId``).
        dataset_name: for messages.
    """

    def __init__(self, samples_collection: str, sample_id: Any, dataset_name: str = ""):
        self.samples_collection = samples_collection
        self.sample_id = sample_id
        self.dataset_name = dataset_name

    @property
    def _collection(self) -> Any:
        return collection(frames_collection_name(self.samples_collection))

    def keys(self) -> List[int]:
        """The frame numbers with stored fields, in order."""
        docs = self._collection.find({FRAME_ID: self.sample_id}, {FRAME_NUMBER: 1, "_id": 0}).sort(FRAME_NUMBER, 1)
        return [d[FRAME_NUMBER] for d in docs]

    def __iter__(self) -> Iterator[int]:
        return iter(self.keys())

    def __len__(self) -> int:
        return self._collection.count_documents({FRAME_ID: self.sample_id})

    def __contains__(self, frame_number: object) -> bool:
        return self._collection.count_documents({FRAME_ID: self.sample_id, FRAME_NUMBER: frame_number}, limit=1) > 0

    def __getitem__(self, frame_number: int) -> Frame:
        """Frame ``frame_number`` (1-based); a frame without fields is empty."""
        number = _check_number(frame_number)
        doc = self._collection.find_one({FRAME_ID: self.sample_id, FRAME_NUMBER: number}) or {}
        return Frame._attached(self, number, _fields(doc))

    def __setitem__(self, frame_number: int, frame: Any) -> None:
        """Replaces frame ``frame_number``'s fields with those of ``frame``
        (a :class:`Frame` or a dict), written at once."""
        number = _check_number(frame_number)
        fields = frame_fields(frame)
        from .storage import replace_frame

        replace_frame(self.samples_collection, self.sample_id, number, fields, self.dataset_name)

    def __delitem__(self, frame_number: int) -> None:
        """Deletes frame ``frame_number``'s stored fields."""
        self._collection.delete_one({FRAME_ID: self.sample_id, FRAME_NUMBER: _check_number(frame_number)})

    def items(self, fields: Optional[List[str]] = None) -> Iterator[tuple]:
        """``(frame_number, Frame)`` for every stored frame, in order,
        streamed (only ``fields`` when given)."""
        projection = None if fields is None else {f: 1 for f in list(fields) + [FRAME_NUMBER]}
        for doc in self._collection.find({FRAME_ID: self.sample_id}, projection).sort(FRAME_NUMBER, 1):
            yield doc[FRAME_NUMBER], Frame._attached(self, doc[FRAME_NUMBER], _fields(doc))

    def values(self, field: str) -> Dict[int, Any]:
        """``{frame_number: value}`` of ``field`` on the frames that have it."""
        docs = self._collection.find(
            {FRAME_ID: self.sample_id, field: {"$ne": None}}, {field: 1, FRAME_NUMBER: 1}
        ).sort(FRAME_NUMBER, 1)
        out: Dict[int, Any] = {}
        for doc in docs:
            value: Any = doc
            for part in field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            out[doc[FRAME_NUMBER]] = from_mongo_value(value)
        return out

    def set(self, frame_number: int, field: str, value: Any) -> None:
        """Writes one field of one frame (``None`` removes it)."""
        check_field_name(field)
        bulk_set(self.samples_collection, {(self.sample_id, _check_number(frame_number)): {field: value}},
                 self.dataset_name)

    def count(self, field: Optional[str] = None) -> int:
        """Stored frames, or frames with a non-null ``field``."""
        query: Dict[str, Any] = {FRAME_ID: self.sample_id}
        if field is not None:
            query[field] = {"$ne": None}
        return self._collection.count_documents(query)

    def __repr__(self) -> str:
        return f"<Frames of sample {self.sample_id}: {len(self)} stored>"


def _check_number(frame_number: Any) -> int:
    if isinstance(frame_number, bool) or not isinstance(frame_number, numbers.Integral) or frame_number < 1:
        raise LabelError(f"Frame numbers are integers starting at 1, got {frame_number!r}")
    return int(frame_number)


def _fields(doc: Dict[str, Any]) -> Dict[str, Any]:
    return {k: from_mongo_value(v) for k, v in doc.items() if k not in _OWN}
