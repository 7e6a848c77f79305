"""Aggregations over datasets and views, each ONE MongoDB aggregation.

What FiftyOne users call right after ``apply_model``: :func:`values`,
:func:`count`, :func:`count_values`, :func:`distinct`, :func:`bounds`, on
sample paths (``"predictions.label"``), paths through label lists
(``"ground_truth.detections.label"``: every detection counts) and frame paths
(``"frames.detections.detections.label"``: every detection of every stored
frame of the samples). The pipelines are built here; the work is MongoDB's.

Frame-level fields live in the dataset's frames collection (see
:mod:`modelzoo.storage`). On a whole dataset a frames aggregation runs on that
collection directly; on a view it starts from the view's samples and joins
their frames (``$lookup`` on the ``(_sample_id, frame_number)`` index).

A collection passed here is a :class:`~modelzoo.dataset.SampleCollection`:
it supplies ``query`` (its filter), ``view_stages()`` (its label filters and
order) and the names of its collections.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from bson import ObjectId

from .errors import DatasetError
from .fields import from_mongo_value
from .storage import FRAME_ID, FRAME_NUMBER, collection

__all__ = [
    "LIST_FIELDS",
    "values",
    "count",
    "count_values",
    "distinct",
    "bounds",
    "mongo_path",
    "split_frames_path",
    "sample_pipeline",
]

#: the list attributes of list labels: a path through one of them reaches every element
LIST_FIELDS = frozenset({"detections", "classifications", "keypoints", "polylines"})

_FRAMES = "frames."


def mongo_path(path: str) -> str:
    """A user path as stored: ``id`` parts are ``_id`` (``"predictions.detections.id"``)."""
    return ".".join("_id" if p == "id" else p for p in path.split("."))


def split_frames_path(path: str) -> Tuple[bool, str]:
    """``"frames.<field...>"`` -> ``(True, "<field...>")``; any other path -> ``(False, path)``.

    Raises:
        DatasetError: ``"frames.<n>..."`` (a frame number is not a path across frames).
    """
    if path == "frames":
        raise DatasetError("'frames' is not a field path: name a frame field, e.g. 'frames.detections'")
    if path.startswith(_FRAMES):
        rest = path[len(_FRAMES):]
        if rest.split(".")[0].isdigit():
            raise DatasetError(
                f"{path!r}: aggregations take a path across all frames ('frames.<field>'), not one frame's; "
                "read one frame with sample.frames[n]"
            )
        return True, rest
    return False, path


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or any(p == "" or p.startswith("$") for p in path.split(".")):
        raise DatasetError(f"Expected a field path such as 'predictions.detections.label', got {path!r}")
    return path


_V = "_modelzoo_v"


def _unwinds(path: str) -> List[Dict[str, Any]]:
    """Stages leaving one document ``{_V: value}`` per value at ``path``: the
    value projected first (small documents from there on), then one
    ``$unwind`` per label list the path goes through, then its leaf (a list
    leaf such as tags counts element by element; a scalar or missing leaf is
    kept as it is)."""
    parts = mongo_path(path).split(".")
    stages: List[Dict[str, Any]] = [{"$project": {"_id": 0, _V: "$" + ".".join(parts)}}]
    stages += [{"$unwind": "$" + _V} for i, part in enumerate(parts) if i > 0 and part in LIST_FIELDS]
    stages.append({"$unwind": {"path": "$" + _V, "preserveNullAndEmptyArrays": True}})
    return stages


def sample_pipeline(samples: Any) -> List[Dict[str, Any]]:
    """The stages that select (and order, and filter the labels of) the samples of ``samples``."""
    stages: List[Dict[str, Any]] = [{"$match": samples.query}] if samples.query else []
    return stages + list(samples.view_stages())


def _frames_source(samples: Any, fields: Sequence[str]) -> Tuple[Any, List[Dict[str, Any]]]:
    """Where a frames aggregation starts: ``(collection, stages)`` whose output is
    the frame documents of ``samples`` (only the roots of ``fields`` kept)."""
    frames = collection(samples.frames_collection_name)
    if not samples.query and not samples.view_stages(frames=True):
        return frames, []
    roots = {f.split(".")[0] for f in fields}
    projection = {r: 1 for r in roots | {FRAME_NUMBER}}
    stages = [{"$match": samples.query}] if samples.query else []
    stages += [
        {"$project": {"_id": 1}},
        {
            "$lookup": {
                "from": samples.frames_collection_name,
                "localField": "_id",
                "foreignField": FRAME_ID,
                "pipeline": [{"$project": projection}],
                "as": "_frames",
            }
        },
        {"$unwind": "$_frames"},
        {"$replaceRoot": {"newRoot": "$_frames"}},
    ]
    stages += list(samples.view_stages(frames=True))
    return collection(samples.collection_name), stages


def _source(samples: Any, path: str) -> Tuple[Any, List[Dict[str, Any]], str]:
    """``(collection, stages, path)``: the documents that hold ``path`` (samples or frames)."""
    on_frames, rest = split_frames_path(_check_path(path))
    if on_frames:
        coll, stages = _frames_source(samples, [rest])
        return coll, stages, rest
    return collection(samples.collection_name), sample_pipeline(samples), path


def _plain(value: Any) -> Any:
    """Stored values as users see them: ids as strings, arrays decoded, Labels built."""
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return from_mongo_value(value)


def _key(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, list):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value


def count(samples: Any, path: str) -> int:
    """The number of non-null values at ``path``: one per sample (or frame),
    or one per element through label lists (``"predictions.detections"`` counts
    detections)."""
    coll, stages, rest = _source(samples, path)
    stages = stages + _unwinds(rest) + [{"$match": {_V: {"$ne": None}}}, {"$count": "n"}]
    out = list(coll.aggregate(stages, allowDiskUse=True))
    return int(out[0]["n"]) if out else 0


def count_values(samples: Any, path: str) -> Dict[Any, int]:
    """``{value: count}`` over ``path`` (through label lists element by
    element); a sample-level value that is missing counts as ``None``."""
    coll, stages, rest = _source(samples, path)
    stages = stages + _unwinds(rest) + [{"$group": {"_id": "$" + _V, "n": {"$sum": 1}}}]
    return {_key(d["_id"]): int(d["n"]) for d in coll.aggregate(stages, allowDiskUse=True)}


def distinct(samples: Any, path: str) -> List[Any]:
    """The distinct non-null values at ``path``, sorted."""
    coll, stages, rest = _source(samples, path)
    stages = stages + _unwinds(rest) + [
        {"$match": {_V: {"$ne": None}}},
        {"$group": {"_id": "$" + _V}},
        {"$sort": {"_id": 1}},
    ]
    return [_key(d["_id"]) for d in coll.aggregate(stages, allowDiskUse=True)]


def bounds(samples: Any, path: str) -> Tuple[Any, Any]:
    """``(min, max)`` of the non-null values at ``path``; ``(None, None)`` when there are none."""
    coll, stages, rest = _source(samples, path)
    where = "$" + _V
    stages = stages + _unwinds(rest) + [{"$group": {"_id": None, "min": {"$min": where}, "max": {"$max": where}}}]
    out = list(coll.aggregate(stages, allowDiskUse=True))
    if not out:
        return None, None
    return _plain(out[0]["min"]), _plain(out[0]["max"])


def values(samples: Any, paths: Union[str, Sequence[str]]) -> Union[List[Any], List[List[Any]]]:
    """The value of each path on each sample, in the collection's order.

    A path through a label list gives a list per sample
    (``"ground_truth.detections.label"``); a frame path gives, per sample, a
    list over its stored frames in frame order (``"frames.frame_number"``,
    ``"frames.detections.detections.label"`` a list of lists). Missing values
    are ``None``; ids are strings, arrays are numpy arrays, labels are Labels.

    Args:
        paths: a path, or a list of paths (then a list of value lists, one per path).
    """
    single = isinstance(paths, str)
    wanted: List[str] = [paths] if isinstance(paths, str) else list(paths)
    if not wanted:
        raise DatasetError("values([]): name at least one field path")
    project: Dict[str, Any] = {"_id": 0}
    frame_fields: Dict[str, str] = {}
    for i, path in enumerate(wanted):
        on_frames, rest = split_frames_path(_check_path(path))
        if on_frames:
            frame_fields[f"v{i}"] = rest
        else:
            project[f"v{i}"] = "$" + mongo_path(path)
    stages = sample_pipeline(samples)
    if frame_fields:
        roots = {r.split(".")[0] for r in frame_fields.values()} | {FRAME_NUMBER}
        inner: List[Dict[str, Any]] = [
            {"$project": {"_id": 1, **{r: 1 for r in roots}}},
            *samples.view_stages(frames=True),
            {"$sort": {FRAME_NUMBER: 1}},
        ]
        stages.append(
            {
                "$lookup": {
                    "from": samples.frames_collection_name,
                    "localField": "_id",
                    "foreignField": FRAME_ID,
                    "pipeline": inner,
                    "as": "_frames",
                }
            }
        )
        for key, rest in frame_fields.items():
            # $map keeps a frame that lacks the field, as None
            project[key] = {"$map": {"input": "$_frames", "as": "f", "in": "$$f." + mongo_path(rest)}}
    stages.append({"$project": project})
    columns: List[List[Any]] = [[] for _ in wanted]
    coll = collection(samples.collection_name)
    for doc in coll.aggregate(stages, allowDiskUse=True):
        for i, column in enumerate(columns):
            column.append(_plain(doc.get(f"v{i}")))
    return columns[0] if single else columns


def take_ids(samples: Any, size: int, seed: Optional[int] = None) -> List[ObjectId]:
    """The ids of ``size`` samples drawn at random: MongoDB's ``$sample``, or,
    with a ``seed``, the same draw every time (the ids are shuffled with
    Python's ``random.Random(seed)``)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise DatasetError(f"take({size!r}): expected a number of samples >= 0")
    coll = collection(samples.collection_name)
    select = [{"$match": samples.query}] if samples.query else []
    if seed is None:
        stages = select + [{"$sample": {"size": size}}, {"$project": {"_id": 1}}]
        return [d["_id"] for d in coll.aggregate(stages)] if size else []
    import random

    ids = sorted(d["_id"] for d in coll.aggregate(select + [{"$project": {"_id": 1}}]))
    return random.Random(seed).sample(ids, min(size, len(ids)))
