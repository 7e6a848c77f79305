"""Datasets: named, persistent collections of samples in MongoDB.

Each dataset is a document in the ``datasets`` collection and owns a
collection of its own for its samples (indexed on ``filepath``), and one for
the frame-level fields of its video samples (``frames.<samples collection>``,
one document per labelled frame, see :mod:`modelzoo.storage`). Reads stream
with projections; writes go through :meth:`SampleCollection.set_values`, one
bulk write per call, never a save per sample.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Type, Union

from bson import ObjectId
from bson.errors import InvalidId
from mongoengine import Document
from mongoengine.fields import DateTimeField, DictField, StringField

from . import aggregations as _agg
from . import db as _db
from .engine import ApplyReport, apply_model, compute_embeddings
from .errors import DatasetError, DatasetExistsError, DatasetNotFoundError, SampleNotFoundError
from .fields import check_field_name, to_mongo_value
from .media import list_image_files, list_media_files, read_image_metadata
from .sample import Sample
from .storage import DATASET_RECORDS, FRAME_ID, bulk_set, ensure_frames_index, frames_collection_name
from .view_stages import ViewState, label_filter, sort_stages

__all__ = [
    "Dataset",
    "DatasetView",
    "SampleCollection",
    "IngestReport",
    "list_datasets",
    "load_dataset",
    "delete_dataset",
    "delete_datasets",
    "dataset_exists",
]

logger = logging.getLogger(__name__)

#: The one exception to the layering rule (docs/architecture.md): the
#: FiftyOne-named methods by which a dataset reaches a feature package, each a
#: lazy import and one call (the logic lives in the package). Method -> the
#: module it imports; tests/test_layering.py reads this table and checks that
#: no other code of the core imports a feature.
FEATURE_DELEGATES: Dict[str, str] = {
    "SampleCollection.export_nucleus": "modelzoo.bundles.nucleus",
    "SampleCollection.export_coco": "modelzoo.formats",
    "SampleCollection.launch_app": "modelzoo.app",
    "SampleCollection.evaluate_classifications": "modelzoo.evaluation",
    "SampleCollection.evaluate_detections": "modelzoo.evaluation",
    "SampleCollection.evaluate_segmentations": "modelzoo.evaluation",
    "SampleCollection.list_evaluations": "modelzoo.evaluation",
    "SampleCollection.load_evaluation": "modelzoo.evaluation",
    "SampleCollection.delete_evaluation": "modelzoo.evaluation",
    "SampleCollection.match_eval": "modelzoo.evaluation",
    "Dataset.from_image_classification_dir": "modelzoo.formats",
    "Dataset.from_coco": "modelzoo.formats",
}

_INSERT_BATCH = 1000


class _DatasetDocument(Document):
    name = StringField(required=True, unique=True)
    sample_collection = StringField(required=True)
    created_at = DateTimeField()
    info = DictField()
    meta = {"collection": "datasets"}


_SAMPLE_CLASSES: Dict[str, Type[Sample]] = {}


def _sample_class(dataset_name: str, collection: str) -> Type[Sample]:
    cls = _SAMPLE_CLASSES.get(collection)
    if cls is None:
        cls = type(
            "Sample_" + collection,
            (Sample,),
            {
                "meta": {"collection": collection, "indexes": ["filepath"], "auto_create_index": False},
                "_dataset_name": dataset_name,
            },
        )
        _SAMPLE_CLASSES[collection] = cls
    return cls


def _to_object_id(sample_id: Any, dataset: str) -> ObjectId:
    if isinstance(sample_id, ObjectId):
        return sample_id
    try:
        return ObjectId(str(sample_id))
    except (InvalidId, TypeError):
        raise SampleNotFoundError(sample_id, dataset) from None


@dataclass
class IngestReport:
    """What an ingest call did.

    Attributes:
        added: number of samples added.
        skipped: files that are not images (or videos), by extension, not added.
        unreadable: ``{filepath: error}`` for image files PIL could not open
            and video files PyAV could not open (not a video, truncated, no
            video stream, empty); they were added, with the error recorded in
            ``ingest_error``.
        sample_ids: the ids of the added samples, in order.
    """

    added: int = 0
    skipped: List[str] = field(default_factory=list)
    unreadable: Dict[str, str] = field(default_factory=dict)
    sample_ids: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"{self.added} samples added, {len(self.unreadable)} unreadable files recorded, "
            f"{len(self.skipped)} other files skipped"
        )


class SampleCollection:
    """What datasets and views share: counting, reading, selecting, writing."""

    _dataset: "Dataset"

    # -- implemented by subclasses -------------------------------------------------
    @property
    def query(self) -> Dict[str, Any]:
        """The MongoDB filter that selects these samples in :attr:`collection_name`."""
        raise NotImplementedError

    # -- basics --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._dataset._name

    @property
    def dataset(self) -> "Dataset":
        return self._dataset

    @property
    def collection_name(self) -> str:
        """The MongoDB collection holding the dataset's samples."""
        return self._dataset._doc.sample_collection

    @property
    def _collection(self) -> Any:
        return self._dataset._get_collection()

    def __len__(self) -> int:
        return self._collection.count_documents(self.query)

    #: the view's order and label filters (a dataset has none)
    _state: ViewState = ViewState()

    def view_stages(self, frames: bool = False) -> List[Dict[str, Any]]:
        """The aggregation stages this view applies after its ``query`` when read:
        its label filters and order (on frame documents with ``frames=True``)."""
        return self._state.stages(frames)

    def _documents(self, projection: Optional[Dict[str, Any]] = None) -> Iterator[Dict[str, Any]]:
        """The raw documents of these samples, in order (one find, or one aggregation for a view
        with an order or label filters)."""
        stages = self.view_stages()
        if not stages:
            yield from self._collection.find(self.query, projection).sort("_id", 1)
            return
        pipeline = _agg.sample_pipeline(self)
        if not any("$sort" in s for s in pipeline):
            pipeline.append({"$sort": {"_id": 1}})
        if projection:
            pipeline.append({"$project": projection})
        yield from self._collection.aggregate(pipeline, allowDiskUse=True)

    def __iter__(self) -> Iterator[Sample]:
        cls = self._dataset._sample_cls
        for son in self._documents():
            yield cls.from_document(son)

    def first(self) -> Sample:
        for sample in self:
            return sample
        raise DatasetError(f"{self!r} is empty")

    def ids(self) -> List[str]:
        """The sample ids, as strings, in sample order."""
        return [str(d["_id"]) for d in self._documents({"_id": 1})]

    def values(self, field: Union[str, Sequence[str]]) -> List[Any]:
        """The value of ``field`` on each sample, in order (one aggregation).

        ``field`` is a dotted path, through label lists too
        (``"ground_truth.detections.label"`` gives a list per sample), or a
        frame path (``"frames.detections"``: a list over each sample's stored
        frames, in frame order), or a list of paths (then one list of values
        per path). ``None`` where missing; labels are Label objects, arrays
        numpy arrays, ids strings. See :func:`modelzoo.aggregations.values`.
        """
        if field == "id":
            return self.ids()
        return _agg.values(self, field)

    def count(self, field: Optional[str] = None) -> int:
        """The number of samples, or of non-null values of ``field`` (one per
        element through label lists: ``"predictions.detections"`` counts
        detections); ``"frames.<field>"``: over the frames of these samples,
        and ``"frames"``: of stored frames."""
        if field is None:
            return len(self)
        if field == "frames":
            return self._count_frames(None)
        on_frames, _ = _agg.split_frames_path(field)
        if on_frames or _agg.LIST_FIELDS.intersection(field.split(".")[1:]) or self.view_stages():
            return _agg.count(self, field)
        return self._collection.count_documents({"$and": [self.query, {field: {"$ne": None}}]})

    def count_values(self, field: str) -> Dict[Any, int]:
        """``{value: count}`` of ``field`` over these samples (or their frames:
        ``"frames.detections.detections.label"``), through label lists element
        by element; one aggregation. A missing sample-level value counts as ``None``."""
        return _agg.count_values(self, field)

    def distinct(self, field: str) -> List[Any]:
        """The distinct non-null values of ``field`` (sample, list or frame path), sorted."""
        return _agg.distinct(self, field)

    def bounds(self, field: str) -> Any:
        """``(min, max)`` of the non-null values of ``field``; ``(None, None)`` when there are none."""
        return _agg.bounds(self, field)

    @property
    def frames_collection_name(self) -> str:
        """The MongoDB collection holding the frame-level fields of the dataset's videos."""
        return frames_collection_name(self.collection_name)

    def _frames_filter(self, query: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        parts: List[Dict[str, Any]] = [dict(query)] if query else []
        if self.query:  # a view: its samples' frames only
            ids = [d["_id"] for d in self._collection.find(self.query, {"_id": 1})]
            parts.append({FRAME_ID: {"$in": ids}})
        return {"$and": parts} if len(parts) > 1 else (parts[0] if parts else {})

    def _count_frames(self, field: Optional[str]) -> int:
        query = {field: {"$ne": None}} if field else None
        return _db.get_db()[self.frames_collection_name].count_documents(self._frames_filter(query))

    def compute_metadata(self, overwrite: bool = False, num_workers: Optional[int] = None, progress: Any = None) -> Any:
        """Reads image and video metadata for the samples that lack it, in
        parallel; unreadable files are recorded per sample (``ingest_error``).
        See :func:`modelzoo.metadata.compute_metadata`."""
        from .metadata import compute_metadata

        return compute_metadata(self, overwrite=overwrite, num_workers=num_workers, progress=progress)

    # -- selecting -----------------------------------------------------------------
    def match(self, query: Mapping[str, Any]) -> "DatasetView":
        """The samples that match a MongoDB query on the stored documents."""
        return DatasetView(self._dataset, {"$and": [self.query, dict(query)]}, self._state.with_(frame_matches=[]))

    def exists(self, field: str, value: bool = True) -> "DatasetView":
        """The samples that have a non-null ``field`` (or, with ``value=False``, lack it);
        ``"frames.<field>"``: that have (lack) it on at least one frame (on every frame)."""
        if field.startswith("frames.") and not field.split(".")[1].isdigit():
            inner = field[len("frames."):]
            return self.match_frames({inner: {"$ne": None}}, value)
        return self.match({field: {"$ne": None}} if value else {field: None})

    def match_frames(self, query: Mapping[str, Any], value: bool = True) -> "DatasetView":
        """The samples with at least one frame whose document matches
        ``query`` (a MongoDB query on frame fields, e.g.
        ``{"detections.detections.label": "cat"}``); with ``value=False``,
        those with none. Re-evaluated on each read, like every view."""
        return _FrameMatchView(self._dataset, self.query, dict(query), value)

    def select(self, sample_ids: Iterable[Any]) -> "DatasetView":
        """The samples with the given ids."""
        oids = [_to_object_id(i, self.name) for i in sample_ids]
        return self.match({"_id": {"$in": oids}})

    def limit(self, n: int) -> "DatasetView":
        """The first ``n`` samples (in sample order)."""
        oids = [d["_id"] for d in self._documents({"_id": 1})][: int(n)]
        return self.match({"_id": {"$in": oids}})

    def take(self, size: int, seed: Optional[int] = None) -> "DatasetView":
        """``size`` samples drawn at random (MongoDB's ``$sample``); with a
        ``seed`` the same samples every time. The draw is made once, when the
        view is made."""
        return self.match({"_id": {"$in": _agg.take_ids(self, size, seed)}})

    def sort_by(self, field_or_expr: Any, reverse: bool = False) -> "DatasetView":
        """These samples ordered by a field path (``"predictions.confidence"``)
        or a ``ViewField`` expression (``F("predictions.detections").length()``),
        ties by id; ``reverse=True`` for descending. Missing values sort first."""
        return DatasetView(self._dataset, self.query, self._state.with_(sort=sort_stages(field_or_expr, reverse)))

    def filter_labels(self, field: str, filter: Any, only_matches: bool = True) -> "DatasetView":
        """A view whose ``field`` labels are filtered in MongoDB when read.

        Args:
            field: a label field, or ``"frames.<field>"``.
            filter: a ``ViewField`` expression on one label
                (``F("confidence") > 0.5``, ``F("label").is_in(["cat"])``) or a
                MongoDB aggregation expression over ``"$$this"``.
            only_matches: keep only the samples with at least one label left.

        List labels (Detections, Classifications, Keypoints) keep the elements
        that pass; a single label (Classification) is dropped where it fails.
        The stored labels are unchanged; saving a sample read from such a view
        writes the fields you assign (filtered lists included).
        """
        on_frames, path = _agg.split_frames_path(field)
        spec = label_filter(_agg.mongo_path(path), filter)
        state = self._state
        if on_frames:
            state = state.with_(frame_labels=state.frame_labels + [spec["set"]])
            if only_matches:
                state = state.with_(frame_matches=state.frame_matches + [{"$expr": spec["match"]}])
            return DatasetView(self._dataset, self.query, state)
        state = state.with_(labels=state.labels + [spec["set"]])
        query = {"$and": [self.query, {"$expr": spec["match"]}]} if only_matches else self.query
        return DatasetView(self._dataset, query, state)

    # -- writing -------------------------------------------------------------------
    def set_values(self, field: str, values: Union[Mapping[Any, Any], Sequence[Any]]) -> int:
        """Sets ``field`` on many samples with one bulk write.

        Args:
            field: the field (a dotted path for nested values).
            values: ``{sample_id: value}``, or a sequence aligned with
                :meth:`ids`. Values may be Labels, numpy arrays or plain data;
                ``None`` removes the field.

        Returns:
            the number of samples matched.

        Raises:
            SampleNotFoundError: an id is not in the dataset (the values of the
                ids that are were written).
        """
        check_field_name(field)
        if not isinstance(values, Mapping):
            ids = self.ids()
            if len(ids) != len(values):
                raise DatasetError(
                    f"set_values({field!r}): got {len(values)} values for {len(ids)} samples; "
                    "pass a sequence aligned with ids() or a {sample_id: value} dict"
                )
            values = dict(zip(ids, values))
        updates = {_to_object_id(k, self.name): {field: v} for k, v in values.items()}
        return bulk_set(self.collection_name, updates, self.name)

    def apply_model(self, model: Any, label_field: Any = "predictions", **kwargs: Any) -> ApplyReport:
        """Runs ``model`` on these samples and stores its labels; see :func:`modelzoo.apply_model`
        (``backend="ray"`` and ``ray_options`` run it on a Ray cluster: :mod:`modelzoo.ray`)."""
        return apply_model(self, model, label_field=label_field, **kwargs)

    def compute_embeddings(self, model: Any, embeddings_field: Optional[str] = None, **kwargs: Any) -> Any:
        """Embeds these samples; see :func:`modelzoo.compute_embeddings` (``backend="ray"`` too)."""
        return compute_embeddings(self, model, embeddings_field=embeddings_field, **kwargs)

    def compute_patch_embeddings(self, model: Any, patches_field: str, embeddings_field: Optional[str] = None, **kwargs: Any) -> Any:
        """Embeds the boxes of ``patches_field`` (crops cut in the loader workers);
        see :func:`modelzoo.engine.patches.compute_patch_embeddings`."""
        from .engine import compute_patch_embeddings

        return compute_patch_embeddings(self, model, patches_field, embeddings_field=embeddings_field, **kwargs)

    # -- FiftyOne-named methods of feature packages: one-line delegates (FEATURE_DELEGATES) --
    def export_nucleus(self, path: str, label_field: str, **kwargs: Any) -> int:
        """Writes ``label_field``'s boxes as Nucleus box predictions (JSON lines);
        see :func:`modelzoo.bundles.export_nucleus`."""
        from .bundles.nucleus import export_nucleus

        return export_nucleus(self, path, label_field, **kwargs)

    def export_coco(self, path: str, label_field: str, **kwargs: Any) -> int:
        """Writes ``label_field`` (Detections) as a COCO JSON file; see :func:`modelzoo.formats.export_coco`."""
        from .formats import export_coco

        return export_coco(self, path, label_field, **kwargs)

    def launch_app(self, **kwargs: Any) -> Any:
        """Starts the viewer of these samples; see :func:`modelzoo.app.launch_app` (``.url``, ``.close()``)."""
        from .app import launch_app

        return launch_app(self, **kwargs)

    def evaluate_classifications(self, pred_field: str, gt_field: str = "ground_truth", eval_key: Optional[str] = None, **kwargs: Any) -> Any:
        """Accuracy, per-class precision/recall/F1, confusion matrix, top-k;
        see :func:`modelzoo.evaluation.evaluate_classifications`."""
        from .evaluation import evaluate_classifications

        return evaluate_classifications(self, pred_field, gt_field, eval_key=eval_key, **kwargs)

    def evaluate_detections(self, pred_field: str, gt_field: str = "ground_truth", eval_key: Optional[str] = None, **kwargs: Any) -> Any:
        """COCO mAP, AP per class, PR curves and per-object tp/fp/fn;
        see :func:`modelzoo.evaluation.evaluate_detections`."""
        from .evaluation import evaluate_detections

        return evaluate_detections(self, pred_field, gt_field, eval_key=eval_key, **kwargs)

    def evaluate_segmentations(self, pred_field: str, gt_field: str = "ground_truth", eval_key: Optional[str] = None, **kwargs: Any) -> Any:
        """Pixel accuracy, per-class IoU, mIoU; see :func:`modelzoo.evaluation.evaluate_segmentations`."""
        from .evaluation import evaluate_segmentations

        return evaluate_segmentations(self, pred_field, gt_field, eval_key=eval_key, **kwargs)

    def list_evaluations(self) -> List[str]:
        """The eval_keys of the dataset's stored evaluations."""
        from .evaluation import list_evaluations

        return list_evaluations(self.name)

    def load_evaluation(self, eval_key: str) -> Any:
        """The results stored under ``eval_key``."""
        from .evaluation import load_evaluation

        return load_evaluation(self.name, eval_key)

    def delete_evaluation(self, eval_key: str) -> None:
        """Deletes an evaluation and every field it wrote on samples and labels."""
        from .evaluation import delete_evaluation

        delete_evaluation(self.name, self.collection_name, eval_key)

    def match_eval(self, eval_key: str, kind: str) -> "DatasetView":
        """The samples with results of ``kind`` under ``eval_key``; see :func:`modelzoo.evaluation.match_eval`."""
        from .evaluation import match_eval

        return match_eval(self, eval_key, kind)


class DatasetView(SampleCollection):
    """A subset of a dataset's samples, defined by a MongoDB query. Cheap to
    make, picklable, re-evaluated on each read."""

    def __init__(self, dataset: "Dataset", query: Dict[str, Any], state: Optional[ViewState] = None):
        self._dataset = dataset
        self._query = query
        if state is not None:
            self._state = state

    @property
    def query(self) -> Dict[str, Any]:
        if not self._state.frame_matches:
            return self._query
        frames = _db.get_db()[self._dataset.frames_collection_name]
        parts = [self._query] if self._query else []
        for frame_query in self._state.frame_matches:
            parts.append({"_id": {"$in": frames.distinct(FRAME_ID, frame_query)}})
        return {"$and": parts} if len(parts) > 1 else parts[0]

    def __repr__(self) -> str:
        return f"<DatasetView of {self.name!r}: {self._query}>"


class _FrameMatchView(DatasetView):
    """The samples of ``base`` with (or without) a frame matching ``frame_query``."""

    def __init__(self, dataset: "Dataset", base: Dict[str, Any], frame_query: Dict[str, Any], value: bool):
        super().__init__(dataset, base)
        self._frame_query = frame_query
        self._value = value

    @property
    def query(self) -> Dict[str, Any]:
        frames = _db.get_db()[self._dataset.frames_collection_name]
        ids = frames.distinct(FRAME_ID, self._frame_query)
        mine = {"_id": {"$in" if self._value else "$nin": ids}}
        return {"$and": [self._query, mine]} if self._query else mine

    def __repr__(self) -> str:
        return f"<DatasetView of {self.name!r}: {self._query}, frames {'' if self._value else 'not '}{self._frame_query}>"


def check_dataset_name(name: Any) -> str:
    """A dataset name: a non-empty string (a dict would be run as a query).

    Raises:
        DatasetError: naming what was given and what is expected.
    """
    if not isinstance(name, str) or not name.strip():
        raise DatasetError(
            f"A dataset name must be a non-empty string, got {type(name).__name__} {name!r:.80}. "
            "Pass the name as text, e.g. load_dataset('photos'); modelzoo.list_datasets() lists them."
        )
    return name


def _collection_name(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_]+", "_", name)[:40]
    return f"samples.{slug}.{uuid.uuid4().hex[:8]}"


class Dataset(SampleCollection):
    """A named, persistent set of samples.

    Args:
        name: the dataset's name; a unique one is generated when omitted.
        overwrite: replace an existing dataset of that name.

    Raises:
        DatasetExistsError: the name is taken and ``overwrite`` is False.

    Example::

        dataset = Dataset.from_images_dir("photos/", name="photos")
        dataset.apply_model(model, label_field="imagenet")
        print(dataset.count("imagenet"))
    """

    #: what the ingest of ``from_images_dir`` / ``from_images`` did (None otherwise)
    ingest_report: Optional[IngestReport] = None

    def __init__(self, name: Optional[str] = None, overwrite: bool = False, _doc: Optional[_DatasetDocument] = None):
        _db.connect()
        self._dataset = self
        if _doc is None:
            if name is None:
                name = "dataset-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
            name = check_dataset_name(name)  # before any record is written
            existing = _DatasetDocument.objects(name=name).first()
            if existing is not None:
                if not overwrite:
                    raise DatasetExistsError(name)
                Dataset(_doc=existing).delete()
            _doc = _DatasetDocument(
                name=name, sample_collection=_collection_name(name), created_at=_dt.datetime.now(_dt.timezone.utc)
            )
            _doc.save()
            _db.get_db()[_doc.sample_collection].create_index("filepath")
            _db.get_db()[_doc.sample_collection].create_index("media_type")
            ensure_frames_index(frames_collection_name(_doc.sample_collection))
        self._doc = _doc
        self._name = _doc.name
        self._sample_cls = _sample_class(_doc.name, _doc.sample_collection)

    # pickling: by name, so workers (or Ray tasks) reopen the same dataset
    def __reduce__(self):
        return (load_dataset, (self._name,))

    @property
    def query(self) -> Dict[str, Any]:
        return {}

    def _get_collection(self):
        return _db.get_db()[self._doc.sample_collection]

    def __repr__(self) -> str:
        return f"<Dataset {self._name!r}: {len(self)} samples>"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Dataset) and other._name == self._name

    def __hash__(self) -> int:
        return hash(self._name)

    @property
    def info(self) -> Dict[str, Any]:
        """Free-form dataset-level information (persisted by :meth:`save_info`)."""
        return self._doc.info

    def save_info(self) -> None:
        self._doc.save()

    # -- samples -------------------------------------------------------------------
    def __getitem__(self, sample_id: Any) -> Sample:
        oid = _to_object_id(sample_id, self._name)
        son = self._collection.find_one({"_id": oid})
        if son is None:
            raise SampleNotFoundError(sample_id, self._name)
        return self._sample_cls.from_document(son)

    def _sample_doc(self, sample: Union[Sample, str, os.PathLike]) -> Dict[str, Any]:
        if isinstance(sample, (str, os.PathLike)):
            sample = Sample(filepath=os.fspath(sample))
        if not isinstance(sample, Sample):
            raise DatasetError(f"Expected a Sample or a filepath, got {type(sample).__name__}")
        son = {k: to_mongo_value(v) for k, v in sample._data.items() if v is not None and k != "id"}
        metadata = sample._data.get("metadata")
        if "metadata" in son and hasattr(metadata, "to_mongo"):
            son["metadata"] = metadata.to_mongo().to_dict()
        if not son.get("filepath"):
            raise DatasetError("A sample needs a filepath")
        son["filepath"] = os.path.abspath(os.path.expanduser(son["filepath"]))
        son.setdefault("media_type", "image")
        son.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc))
        return son

    def add_sample(self, sample: Union[Sample, str, os.PathLike]) -> str:
        """Adds one sample (or a filepath) and returns its id."""
        return self.add_samples([sample])[0]

    def add_samples(self, samples: Iterable[Union[Sample, str, os.PathLike]]) -> List[str]:
        """Adds samples (or filepaths) in bulk and returns their ids, in order."""
        ids: List[str] = []
        batch: List[Dict[str, Any]] = []
        pending: List[Any] = []  # frames given to samples before they were added
        coll = self._collection

        def _insert() -> None:
            inserted = coll.insert_many(batch, ordered=True).inserted_ids
            ids.extend(str(i) for i in inserted)
            frames: Dict[Any, Dict[str, Any]] = {}
            for oid, sample_frames in zip(inserted, pending):
                if sample_frames is not None:
                    frames.update(sample_frames.updates(oid))
            if frames:
                bulk_set(self.collection_name, frames, self._name)

        for sample in samples:
            batch.append(self._sample_doc(sample))
            pending.append(getattr(sample, "__dict__", {}).get("_pending_frames"))
            if len(batch) >= _INSERT_BATCH:
                _insert()
                batch, pending = [], []
        if batch:
            _insert()
        return ids

    # -- ingest --------------------------------------------------------------------
    def add_images(
        self, paths: Iterable[Union[str, os.PathLike]], _skipped: Sequence[str] = (), exif_orientation: bool = True
    ) -> IngestReport:
        """Adds image files, reading each header for its metadata.

        An image PIL cannot open is still added, with ``ingest_error`` set and
        no metadata; it is listed in the report's ``unreadable``. Widths and
        heights are those of the upright image (EXIF orientation applied, as
        images are decoded); ``exif_orientation=False`` records the stored
        size (for models that keep the stored pixel order).
        """
        paths = [os.path.abspath(os.fspath(p)) for p in paths]
        report = IngestReport(skipped=list(_skipped))

        def _one(path: str) -> Sample:
            try:
                info = read_image_metadata(path, exif_orientation)
            except Exception as e:  # a per-file data error: record it, never crash the ingest
                reason = f"{type(e).__name__}: {e}"
                report.unreadable[path] = reason
                return Sample(filepath=path, ingest_error=reason)
            from .sample import ImageMetadata

            meta = ImageMetadata(
                width=info.width, height=info.height, channels=info.channels,
                size_bytes=info.size_bytes, mime_type=info.mime_type, mode=info.mode,
            )
            return Sample(filepath=path, metadata=meta)

        with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
            report.sample_ids = self.add_samples(pool.map(_one, paths))
        report.added = len(report.sample_ids)
        logger.info("Dataset %r: %s", self._name, report)
        return report

    def add_images_dir(self, path: Union[str, os.PathLike], recursive: bool = True) -> IngestReport:
        """Adds every image file under ``path``; other files are skipped and counted."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise DatasetError(
                f"Images directory {path!r} does not exist or is not a directory"
                if not os.path.exists(path)
                else f"{path!r} is not a directory; use Dataset.from_images([...]) for files"
            )
        try:
            images, skipped = list_image_files(path, recursive=recursive)
        except PermissionError as e:
            raise DatasetError(f"Cannot read images directory {path!r}: {e}") from None
        return self.add_images(images, _skipped=skipped)

    @classmethod
    def from_images_dir(
        cls, path: Union[str, os.PathLike], name: Optional[str] = None, recursive: bool = True, overwrite: bool = False
    ) -> "Dataset":
        """A new dataset of the images under ``path``; see :meth:`add_images_dir`.
        The ingest report is kept as ``dataset.ingest_report``."""
        if not os.path.isdir(os.fspath(path)):  # fail before creating anything
            raise DatasetError(f"Images directory {os.fspath(path)!r} does not exist or is not a directory")
        dataset = cls(name, overwrite=overwrite)
        dataset.ingest_report = dataset.add_images_dir(path, recursive=recursive)
        return dataset

    @classmethod
    def from_images(
        cls, paths: Iterable[Union[str, os.PathLike]], name: Optional[str] = None, overwrite: bool = False
    ) -> "Dataset":
        """A new dataset of the given image files; see :meth:`add_images`."""
        dataset = cls(name, overwrite=overwrite)
        dataset.ingest_report = dataset.add_images(paths)
        return dataset

    @classmethod
    def from_image_classification_dir(
        cls, root: Union[str, os.PathLike], name: Optional[str] = None, label_field: str = "ground_truth",
        overwrite: bool = False,
    ) -> "Dataset":
        """A new dataset of a folder-per-class tree (torchvision's ``ImageFolder``
        layout), each sample's class in ``label_field``; see
        :func:`modelzoo.formats.import_image_classification_dir`."""
        from .formats import dataset_from_image_classification_dir

        return dataset_from_image_classification_dir(cls, root, name, label_field, overwrite)

    @classmethod
    def from_coco(
        cls, labels_json: Any, images_dir: Union[str, os.PathLike], name: Optional[str] = None,
        label_types: Sequence[str] = ("detections", "segmentations", "keypoints"),
        label_field: str = "ground_truth", skip_unknown: bool = False, overwrite: bool = False,
    ) -> "Dataset":
        """A new dataset of a COCO file's images and annotations; the import
        report is ``dataset.coco_report``. See :func:`modelzoo.formats.import_coco`."""
        from .formats import dataset_from_coco

        return dataset_from_coco(cls, labels_json, images_dir, name, label_types, label_field, skip_unknown, overwrite)

    #: what ``from_coco`` imported (None otherwise)
    coco_report: Any = None
    # -- videos --------------------------------------------------------------------
    def add_videos(self, paths: Iterable[Union[str, os.PathLike]], _skipped: Sequence[str] = ()) -> IngestReport:
        """Adds video files (``media_type`` ``"video"``), probing each with
        PyAV for its :class:`~modelzoo.sample.VideoMetadata` (no frame is
        decoded).

        A file that cannot be opened as a video (not a video, truncated, no
        video stream, empty) is still added, with ``ingest_error`` set and no
        metadata; it is listed in the report's ``unreadable``.
        """
        from .sample import VideoMetadata
        from .video import read_video_metadata

        paths = [os.path.abspath(os.fspath(p)) for p in paths]
        report = IngestReport(skipped=list(_skipped))

        def _one(path: str) -> Sample:
            try:
                info = read_video_metadata(path)
            except Exception as e:  # a per-file data error: record it, never crash the ingest
                reason = f"{type(e).__name__}: {e}"
                report.unreadable[path] = reason
                return Sample(filepath=path, media_type="video", ingest_error=reason)
            meta = VideoMetadata(
                width=info.width, height=info.height, frame_rate=info.frame_rate,
                total_frame_count=info.total_frame_count, duration=info.duration, codec=info.codec,
                container=info.container, size_bytes=info.size_bytes, mime_type=info.mime_type,
            )
            return Sample(filepath=path, media_type="video", metadata=meta)

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            report.sample_ids = self.add_samples(pool.map(_one, paths))
        report.added = len(report.sample_ids)
        logger.info("Dataset %r: %s", self._name, report)
        return report

    def add_videos_dir(self, path: Union[str, os.PathLike], recursive: bool = True) -> IngestReport:
        """Adds every video file under ``path`` (by extension); other files
        are skipped and counted."""
        images, videos, skipped = self._list_dir(path, recursive)
        return self.add_videos(videos, _skipped=images + skipped)

    def add_media_dir(self, path: Union[str, os.PathLike], recursive: bool = True) -> IngestReport:
        """Adds every image and video file under ``path``; a dataset may mix
        both (``media_type`` tells them apart)."""
        images, videos, skipped = self._list_dir(path, recursive)
        report = self.add_images(images, _skipped=skipped)
        vreport = self.add_videos(videos)
        report.added += vreport.added
        report.unreadable.update(vreport.unreadable)
        report.sample_ids.extend(vreport.sample_ids)
        return report

    def _list_dir(self, path: Union[str, os.PathLike], recursive: bool) -> Any:
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise DatasetError(f"Directory {path!r} does not exist or is not a directory")
        try:
            return list_media_files(path, recursive=recursive)
        except PermissionError as e:
            raise DatasetError(f"Cannot read directory {path!r}: {e}") from None

    @classmethod
    def from_videos_dir(
        cls, path: Union[str, os.PathLike], name: Optional[str] = None, recursive: bool = True, overwrite: bool = False
    ) -> "Dataset":
        """A new dataset of the videos under ``path``; see :meth:`add_videos_dir`.
        The ingest report is kept as ``dataset.ingest_report``."""
        if not os.path.isdir(os.fspath(path)):  # fail before creating anything
            raise DatasetError(f"Videos directory {os.fspath(path)!r} does not exist or is not a directory")
        dataset = cls(name, overwrite=overwrite)
        dataset.ingest_report = dataset.add_videos_dir(path, recursive=recursive)
        return dataset

    @classmethod
    def from_videos(
        cls, paths: Iterable[Union[str, os.PathLike]], name: Optional[str] = None, overwrite: bool = False
    ) -> "Dataset":
        """A new dataset of the given video files; see :meth:`add_videos`."""
        dataset = cls(name, overwrite=overwrite)
        dataset.ingest_report = dataset.add_videos(paths)
        return dataset

    # -- lifecycle -----------------------------------------------------------------
    def delete_samples(self, sample_ids: Iterable[Any]) -> int:
        """Deletes samples (by id) and their frames; returns how many samples were deleted."""
        oids = [_to_object_id(i, self._name) for i in sample_ids]
        if not oids:
            return 0
        _db.get_db()[self.frames_collection_name].delete_many({FRAME_ID: {"$in": oids}})
        return int(self._collection.delete_many({"_id": {"$in": oids}}).deleted_count)

    def delete(self) -> None:
        """Deletes the dataset, all its samples, their frames and the records
        features keep about it (its evaluations: :data:`~modelzoo.storage.DATASET_RECORDS`)."""
        for records in DATASET_RECORDS.values():
            _db.get_db()[records].delete_many({"dataset": self._name})
        _db.get_db().drop_collection(self.frames_collection_name)
        _db.get_db().drop_collection(self._doc.sample_collection)
        _SAMPLE_CLASSES.pop(self._doc.sample_collection, None)
        self._doc.delete()


def _find_doc(name: str) -> Optional[_DatasetDocument]:
    check_dataset_name(name)  # a dict here would be a query ({"$gt": ""} matches every dataset)
    _db.connect()
    return _DatasetDocument.objects(name=name).first()


def list_datasets() -> List[str]:
    """The names of all datasets, sorted."""
    _db.connect()
    return sorted(d.name for d in _DatasetDocument.objects.only("name"))


def dataset_exists(name: str) -> bool:
    return _find_doc(name) is not None


def load_dataset(name: str) -> Dataset:
    """Opens an existing dataset.

    Raises:
        DatasetNotFoundError: no dataset has that name (close matches are suggested).
    """
    doc = _find_doc(name)
    if doc is None:
        raise DatasetNotFoundError(name, list_datasets())
    return Dataset(_doc=doc)


def delete_dataset(name: str) -> None:
    """Deletes the named dataset, its samples and their frames."""
    load_dataset(name).delete()


def delete_datasets(glob_patt: str) -> List[str]:
    """Deletes every dataset whose name matches the shell pattern ``glob_patt``
    (``"*"``: all of them), as FiftyOne's ``fo.delete_datasets``; returns their names."""
    import fnmatch

    names = [n for n in list_datasets() if fnmatch.fnmatchcase(n, glob_patt)]
    for name in names:
        delete_dataset(name)
    return names
