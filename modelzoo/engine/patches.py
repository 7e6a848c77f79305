"""``compute_patch_embeddings``: the engine loop over patch work items.

Each box of a ``Detection``/``Detections`` field (of samples, or of the
frames of videos) is one work item. The items of a sample follow each other,
so the loader worker that loads a batch decodes each image (each video,
sequentially) once and cuts every crop of it there; the crops then go through
the model's own loader (``load_frame``: its transforms) and are batched
across samples like any input. The loop, the failure rules (one bad patch
costs that patch; ``skip_failures=False`` raises naming it) and the writer
thread are those of every run (:func:`~modelzoo.engine.run_model`).

Crops follow FiftyOne's (ETA's) arithmetic: the box, padded by ``alpha``
(relative, ``[-1, inf)``), is clamped to the image and truncated to whole
pixels (``int(width * x)``); ``force_square`` grows the shorter side (or,
when the image is too small, shrinks the longer one) around the box's center.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, DatasetError
from ..fields import check_field_name
from ..loaders import Loader, WorkItem
from ..storage import FRAME_ID, FRAME_NUMBER, bulk_set, collection, frames_collection_name
from .embeddings import stack_rows, strip_frames_prefix
from .report import ApplyReport
from .sinks import Sink, SinkBatch
from .source import Source

__all__ = ["PatchLoader", "PatchSource", "PatchSink", "crop_box", "compute_patch_embeddings"]

_HANDLE_MISSING = ("skip", "image", "error")
_PATCH = "_patch"


def crop_box(
    width: int, height: int, box: Sequence[float], force_square: bool = False, alpha: Optional[float] = None
) -> Tuple[int, int, int, int]:
    """The pixel window ``(c0, r0, c1, r1)`` (end exclusive) of a relative box
    in a ``width x height`` image, as FiftyOne crops patches.

    Raises:
        ValueError: the window holds no pixel.
    """
    x, y, w, h = (float(v) for v in box)
    x1, y1, x2, y2 = x, y, x + w, y + h
    if alpha is not None:
        a = max(float(alpha), -1.0)
        px, py = 0.5 * a * w, 0.5 * a * h
        x1, y1, x2, y2 = x1 - px, y1 - py, x2 + px, y2 + py
    x1, x2 = min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)
    y1, y2 = min(max(y1, 0.0), 1.0), min(max(y2, 0.0), 1.0)
    c0, c1 = int(width * x1), int(width * x2)
    r0, r1 = int(height * y1), int(height * y2)
    if force_square:
        c0, c1, r0, r1 = _square(c0, c1, r0, r1, width, height)
    if c1 <= c0 or r1 <= r0:
        raise ValueError(f"box {list(box)} covers no pixel of the {width} x {height} image")
    return c0, r0, c1, r1


def _square(c0: int, c1: int, r0: int, r1: int, width: int, height: int) -> Tuple[int, int, int, int]:
    side = min(max(c1 - c0, r1 - r0), width, height)

    def fit(lo: int, hi: int, limit: int) -> Tuple[int, int]:
        extra = side - (hi - lo)
        start = lo - int(0.5 * extra)
        start = min(max(start, 0), limit - side)
        return start, start + side

    c0, c1 = fit(c0, c1, width)
    r0, r1 = fit(r0, r1, height)
    return c0, c1, r0, r1


class PatchLoader(Loader):
    """Cuts one patch per item and hands it to the model's loader.

    Runs in the loader workers: an image is decoded once for the consecutive
    patches of its sample (a video: decoded sequentially, once for its
    patches in frame order), the crop is passed to ``inner.load_frame`` (the
    model's transforms) and batches are collated by ``inner``.

    Args:
        inner: the model's loader (it must take decoded arrays: ``takes_frames``).
        force_square, alpha: see :func:`crop_box`.
    """

    def __init__(self, inner: Loader, force_square: bool = False, alpha: Optional[float] = None):
        self.inner = inner
        self.force_square = bool(force_square)
        self.alpha = alpha
        self._image: Optional[Tuple[str, np.ndarray]] = None
        self._video: Optional[Dict[str, Any]] = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_image"] = state["_video"] = None  # decoded pixels and open files stay in their process
        return state

    def _decoded(self, path: str) -> np.ndarray:
        if self._image is None or self._image[0] != path:
            from ..image_io import read_image

            self._image = (path, read_image(path))
        return self._image[1]

    def _frame(self, path: str, number: int) -> np.ndarray:
        state = self._video
        if state is None or state["path"] != path or state["number"] > number:
            from ..video import VideoReader

            if state is not None:
                state["reader"].close()
            reader = VideoReader(path)
            state = self._video = {"path": path, "reader": reader, "frames": reader.decoded(), "number": 0, "image": None}
        while state["number"] < number:
            decoded = next(state["frames"], None)
            if decoded is None:
                raise ValueError(f"frame {number} of {path} is past the end of the video ({state['number']} frames)")
            state["number"], state["image"] = decoded.frame_number, decoded.image
            if decoded.frame_number == number and decoded.image is None:
                raise ValueError(decoded.error or f"frame {number} of {path} failed to decode")
        return state["image"]

    def load(self, item: WorkItem) -> Any:
        spec = (item.fields or {}).get(_PATCH)
        if spec is None:
            raise ValueError("not a patch work item")
        if not item.filepath:
            raise ValueError("sample has no filepath")
        frame = spec.get("frame")
        image = self._decoded(item.filepath) if frame is None else self._frame(item.filepath, frame)
        height, width = image.shape[:2]
        where = f"patch {spec['index']}" + (f" of frame {frame}" if frame is not None else "")
        try:
            c0, r0, c1, r1 = crop_box(width, height, spec["box"], self.force_square, self.alpha)
        except ValueError as e:
            raise ValueError(f"{where} of {item.filepath}: {e}") from None
        return self.inner.load_frame(item, np.ascontiguousarray(image[r0:r1, c0:c1]))

    def collate(self, inputs: Sequence[Any]) -> Any:
        return self.inner.collate(inputs)

    def __repr__(self) -> str:
        return f"PatchLoader({self.inner!r}, force_square={self.force_square}, alpha={self.alpha})"


def _boxes(label: Any) -> Optional[List[Tuple[str, List[float], Mapping[str, Any]]]]:
    """``[(path suffix, box, detection document)]`` of a stored Detection(s)
    document; None when there is no label; raises for other label types."""
    if label is None:
        return None
    if not isinstance(label, Mapping):
        raise DatasetError(f"expected a Detection or Detections, got {type(label).__name__}")
    cls = label.get("_cls")
    if cls == "Detections":
        return [
            (f"detections.{i}", list(d.get("bounding_box") or []), d)
            for i, d in enumerate(label.get("detections") or [])
        ]
    if cls == "Detection":
        return [("", list(label.get("bounding_box") or []), label)]
    raise DatasetError(f"expected a Detection or Detections, got a {cls}")


@dataclass(frozen=True)
class PatchSource(Source):
    """The patches of a ``Detection(s)`` field as work items, in (sample,
    frame, box) order. Built by :func:`compute_patch_embeddings`.

    Attributes:
        patches_field: the label field (on samples, or on frames with ``on_frames``).
        on_frames: the field is a frame field of video samples.
        handle_missing: ``"skip"``, ``"image"`` (the whole image is one patch)
            or ``"error"`` for samples (frames) without patches.
        skip_field: leave out the boxes that already have this attribute
            (``skip_existing``: resumes an interrupted run).
    """

    patches_field: str = ""
    on_frames: bool = False
    handle_missing: str = "skip"
    skip_field: Optional[str] = None

    def first_mismatch(self, field: str, value: Any) -> Optional[Dict[str, Any]]:
        if self.on_frames:  # an image model on the frames of videos: that is the point
            return None
        return super().first_mismatch(field, value)

    def _spec(self, doc_id: Any, label: Any, frame: Optional[int], where: str) -> List[Dict[str, Any]]:
        try:
            boxes = _boxes(label)
        except DatasetError as e:
            raise DatasetError(f"compute_patch_embeddings: {where} field {self.patches_field!r}: {e}") from None
        if not boxes:
            if self.handle_missing == "error":
                raise DatasetError(
                    f"compute_patch_embeddings: {where} has no patches in {self.patches_field!r} "
                    "(handle_missing='error'); pass handle_missing='skip' or 'image'"
                )
            if self.handle_missing == "image":
                return [{"index": 0, "box": [0.0, 0.0, 1.0, 1.0], "frame": frame, "path": None}]
            return []
        return [
            {"index": i, "box": box, "frame": frame,
             "path": self.patches_field + ("." + suffix if suffix else "")}
            for i, (suffix, box, det) in enumerate(boxes)
            if not (self.skip_field and det.get(self.skip_field) is not None)  # done by an earlier run
        ]

    def items(self) -> Iterator[WorkItem]:
        if not self.on_frames:
            for doc in self.documents({"filepath": 1, self.patches_field: 1}):
                label = _get(doc, self.patches_field)
                for spec in self._spec(doc["_id"], label, None, f"sample {doc['_id']} ({doc.get('filepath')})"):
                    yield WorkItem(doc["_id"], doc.get("filepath"), {_PATCH: spec})
            return
        frames = collection(frames_collection_name(self.collection))
        page: List[Dict[str, Any]] = []
        for doc in self.documents({"filepath": 1}):
            page.append(doc)
            if len(page) == self.page_size:
                yield from self._frame_items(frames, page)
                page = []
        if page:
            yield from self._frame_items(frames, page)

    def _frame_items(self, frames: Any, page: List[Dict[str, Any]]) -> Iterator[WorkItem]:
        paths = {d["_id"]: d.get("filepath") for d in page}
        cursor = frames.find(
            {FRAME_ID: {"$in": list(paths)}}, {FRAME_ID: 1, FRAME_NUMBER: 1, self.patches_field: 1}
        ).sort([(FRAME_ID, 1), (FRAME_NUMBER, 1)])
        for fdoc in cursor:
            sid, number = fdoc[FRAME_ID], fdoc[FRAME_NUMBER]
            label = _get(fdoc, self.patches_field)
            where = f"frame {number} of sample {sid} ({paths[sid]})"
            for spec in self._spec(sid, label, number, where):
                yield WorkItem(sid, paths[sid], {_PATCH: spec})

    def count_items(self) -> int:
        return sum(1 for _ in self.items())


def _get(doc: Mapping[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, Mapping) else None
    return cur


class PatchSink(Sink):
    """Stores each patch's vector on its label (``<label path>.<field>``), or
    keeps them for :meth:`result`.

    Args:
        collection: the samples' collection.
        dataset_name: for messages.
        field: the label attribute to store vectors in; None keeps them.
    """

    def __init__(self, collection: str, dataset_name: str = "", field: Optional[str] = None):
        self.collection = collection
        self.dataset_name = dataset_name
        self.field = field
        self.vectors: Dict[Tuple[Any, Any, int], np.ndarray] = {}
        self.failed: List[Tuple[Any, Any, int]] = []

    def write(self, batch: SinkBatch) -> None:
        updates: Dict[Any, Dict[str, Any]] = {}
        for item, _ in batch.failures:
            spec = (item.fields or {}).get(_PATCH) or {}
            self.failed.append((item.sample_id, spec.get("frame"), spec.get("index", 0)))
        for item, vector in batch.outputs:
            spec = item.fields[_PATCH]  # type: ignore[index]
            vector = np.asarray(vector, dtype=np.float32)
            if self.field is None:
                self.vectors[(item.sample_id, spec["frame"], spec["index"])] = vector
            elif spec["path"] is not None:  # a whole-image patch has no label to hold it
                key = item.sample_id if spec["frame"] is None else (item.sample_id, spec["frame"])
                updates.setdefault(key, {})[spec["path"] + "." + self.field] = vector
        if updates:
            bulk_set(self.collection, updates, self.dataset_name)

    @property
    def keys(self) -> List[Tuple[Any, Any, int]]:
        return sorted(set(self.vectors) | set(self.failed), key=lambda k: (k[0], k[1] or 0, k[2]))


def _result(sink: PatchSink, source: PatchSource, model: Any, report: ApplyReport) -> Dict[str, Any]:
    from .embeddings import embedding_width

    shapes = {v.shape for v in sink.vectors.values()}
    if len(shapes) > 1:
        from ..errors import ModelError

        raise ModelError(f"The model returned embeddings of different shapes: {sorted(shapes)}")
    shape: Optional[Tuple[int, ...]] = shapes.pop() if shapes else None
    if shape is None and sink.failed:
        width = embedding_width(model)
        shape = (width,) if width > 0 else None
    groups: Dict[Tuple[Any, Any], List[Tuple[Any, Any, int]]] = {}
    for key in sink.keys:
        groups.setdefault((key[0], key[1]), []).append(key)

    def stack(keys: Optional[List[Tuple[Any, Any, int]]]) -> Optional[np.ndarray]:
        if not keys or shape is None:
            return None
        return stack_rows(sink.vectors, keys, shape)

    ids = [d["_id"] for d in source.documents({"_id": 1})]
    if not source.on_frames:
        return {str(sid): stack(groups.get((sid, None))) for sid in ids}
    frames = collection(frames_collection_name(source.collection))
    stored: Dict[Any, List[int]] = {sid: [] for sid in ids}
    for fdoc in frames.find({FRAME_ID: {"$in": ids}}, {FRAME_ID: 1, FRAME_NUMBER: 1}).sort(
        [(FRAME_ID, 1), (FRAME_NUMBER, 1)]
    ):
        stored[fdoc[FRAME_ID]].append(fdoc[FRAME_NUMBER])
    return {str(sid): {n: stack(groups.get((sid, n))) for n in stored[sid]} for sid in ids}


def compute_patch_embeddings(
    samples: Any,
    model: Any,
    patches_field: str,
    embeddings_field: Optional[str] = None,
    force_square: bool = False,
    alpha: Optional[float] = None,
    handle_missing: str = "skip",
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    skip_failures: bool = True,
    progress: Any = None,
    skip_existing: bool = False,
    **kwargs: Any,
) -> Any:
    """Embeds the image patches (boxes) of ``patches_field`` with ``model``.

    Args:
        samples: a Dataset or view (images, or videos: then the field is a
            frame field; the ``"frames."`` prefix is optional, as in FiftyOne).
        model: an image model with embeddings (:class:`~modelzoo.EmbeddingsMixin`).
        patches_field: a ``Detection`` or ``Detections`` field.
        embeddings_field: store each vector (float32) on its detection, as
            this attribute (``"<patches_field>.detections.<field>"``).
        force_square: make each crop square (see :func:`crop_box`).
        alpha: grow (or, below 0, shrink) each box by ``100 * alpha`` percent.
        handle_missing: for samples (frames) without patches: ``"skip"``
            (None in the result), ``"image"`` (the whole image is one patch),
            ``"error"`` (raise).
        batch_size, num_workers, skip_failures, progress: as for
            :func:`~modelzoo.compute_embeddings` (``progress`` may be a
            callable ``progress(done, total)``).
        skip_existing: with ``embeddings_field``, leave out the boxes that
            already have it (resumes an interrupted run, as ``apply_model``'s).
        **kwargs: ``num_threads``.

    Returns:
        with ``embeddings_field``: the run's :class:`ApplyReport` (one item
        per patch). Without: ``{sample_id: (n_patches, D) array or None}``;
        for videos ``{sample_id: {frame_number: array or None}}`` over each
        video's stored frames. Rows of failed patches are NaN.

    Raises:
        ConfigError: a bad argument, a video model, or a model without embeddings.
        DatasetError: ``handle_missing="error"`` and a sample without patches,
            or a field that is not a Detection(s).
        PredictionError: a patch failed and ``skip_failures`` is False.
    """
    from ..keywords import check_call_keywords
    from ..mixins import EmbeddingsMixin
    from ..models import Model
    from .run import RunOptions, run_model

    check_call_keywords(compute_patch_embeddings, kwargs, ("num_threads",))
    if handle_missing not in _HANDLE_MISSING:
        raise ConfigError(f"handle_missing must be one of {', '.join(_HANDLE_MISSING)}; got {handle_missing!r}")
    if alpha is not None and not float(alpha) >= -1:
        raise ConfigError(f"alpha must be in [-1, inf), got {alpha!r}")
    if not isinstance(model, Model):
        raise ConfigError(f"model must implement modelzoo.Model, got {type(model).__name__}")
    if not (isinstance(model, EmbeddingsMixin) and model.has_embeddings):
        raise ConfigError(
            f"{type(model).__name__} cannot compute embeddings (it does not implement EmbeddingsMixin or "
            "has_embeddings is False); for a TorchImageModel set embeddings_layer in its config."
        )
    if model.media_type != "image":
        raise ConfigError(f"compute_patch_embeddings takes an image model; {type(model).__name__} is a {model.media_type} model")
    field, prefixed = strip_frames_prefix(patches_field, "patches_field")
    check_field_name(field)
    if embeddings_field is not None:
        embeddings_field, _ = strip_frames_prefix(embeddings_field, "embeddings_field")
        check_field_name(embeddings_field)
    elif skip_existing:
        raise ConfigError("skip_existing=True resumes a stored run: pass embeddings_field too")
    base = Source.from_samples(samples)
    has_videos = base.has({"media_type": "video"})
    has_images = base.has({"media_type": {"$ne": "video"}})
    if has_videos and has_images:
        raise ConfigError(
            "compute_patch_embeddings: these samples mix images and videos; run it on each kind apart "
            "(samples.match({'media_type': 'image'}) and samples.match({'media_type': 'video'}))"
        )
    if prefixed and has_images:
        raise ConfigError(f"patches_field={patches_field!r} names a frame field, but these samples are images")
    inner = model.build_loader()
    if not inner.takes_frames:
        raise ConfigError(
            f"{type(model).__name__}'s loader ({inner!r}) takes image files, not decoded arrays, so it cannot "
            "take crops; give the model a loader whose load_frame takes an (H, W, 3) uint8 array"
        )
    source = PatchSource(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)},
                         patches_field=field, on_frames=has_videos, handle_missing=handle_missing,
                         skip_field=embeddings_field if skip_existing else None)
    sink = PatchSink(base.collection, base.dataset_name, embeddings_field)
    options = RunOptions(
        "embed", batch_size, num_workers, kwargs.get("num_threads"), skip_failures,
        progress, loader=PatchLoader(inner, force_square, alpha),
    )
    report = run_model(source, model, sink, options)
    if embeddings_field is not None:
        return report
    return _result(sink, source, model, report)
