"""Sources: the work items of a run, streamed page by page, splittable into shards."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ConfigError
from ..fields import from_mongo_value, get_path
from ..loaders import WorkItem
from ..storage import FRAME_ID, collection, frames_collection_name
from ..video.selection import FrameSelection

__all__ = ["Source", "WorkItem"]


@dataclass(frozen=True)
class Source:
    """The samples of a run: a collection, a query, and the fields a model reads.

    Pages through the collection by ``_id`` (one projected query per page, no
    long-lived cursor that could time out behind a slow model), so memory is
    bounded by the page size, not the dataset size. Holds names only, so it
    pickles to worker processes and other machines.

    Build one from a dataset or view with :meth:`from_samples`; split it for
    several processes with :meth:`split` (or :meth:`shard`): the parts are
    disjoint id ranges that together cover every item exactly once.

    Attributes:
        collection: the samples' MongoDB collection.
        query: the MongoDB filter selecting the samples.
        dataset_name: the dataset's name (for messages).
        needs_fields: ``(input name, field path)`` pairs read into
            :attr:`WorkItem.fields`.
        id_range: ``(low, high)``: only ids with ``low <= _id < high``
            (either bound may be None).
        page_size: documents per query.
        frames: set for a run over the frames of video samples (see
            :meth:`over_frames`): which frames each video gives.
        frames_done: with ``frames``: a filter on frame documents matching
            the frames already done, left out (``skip_existing``).
    """

    collection: str
    query: Dict[str, Any]
    dataset_name: str = ""
    needs_fields: Tuple[Tuple[str, str], ...] = ()
    id_range: Tuple[Any, Any] = (None, None)
    page_size: int = 512
    frames: Optional[FrameSelection] = None
    frames_done: Optional[Dict[str, Any]] = None

    @classmethod
    def from_samples(cls, samples: Any, needs_fields: Any = (), query: Optional[Dict[str, Any]] = None) -> "Source":
        """The source of a :class:`~modelzoo.Dataset` or :class:`~modelzoo.DatasetView`.

        Args:
            samples: a dataset or view (anything with ``collection_name``,
                ``query`` and ``name``).
            needs_fields: ``{input name: field path}`` or pairs.
            query: an extra filter, AND-ed with the view's.
        """
        try:
            coll, base, name = samples.collection_name, samples.query, samples.name
        except AttributeError:
            raise ConfigError(
                f"samples must be a Dataset or DatasetView, got {type(samples).__name__}. "
                "Build one with Dataset.from_images_dir(...) or Dataset.from_images([...])."
            ) from None
        pairs = tuple(needs_fields.items()) if isinstance(needs_fields, dict) else tuple(needs_fields)
        source = cls(coll, base, name, pairs)
        return source.where(query) if query else source

    # -- narrowing ------------------------------------------------------------------
    def over_frames(self, frames: Any = None, done: Optional[Dict[str, Any]] = None) -> "Source":
        """The frames of this source's video samples: each video is decoded
        sequentially and its selected frames are the work items.

        Args:
            frames: which frames (see :meth:`FrameSelection.parse`: None for all).
            done: a filter on frame documents: frames matching it are skipped.
        """
        selection = FrameSelection.parse(frames)
        video = dataclasses.replace(self, frames=selection, frames_done=done)
        return video.where({"media_type": "video"})

    def where(self, query: Dict[str, Any]) -> "Source":
        """This source restricted to the samples that also match ``query``."""
        combined = {"$and": [self.query, query]} if self.query else dict(query)
        return dataclasses.replace(self, query=combined)

    def _filter(self) -> Dict[str, Any]:
        low, high = self.id_range
        bounds: Dict[str, Any] = {}
        if low is not None:
            bounds["$gte"] = low
        if high is not None:
            bounds["$lt"] = high
        if not bounds:
            return self.query
        return {"$and": [self.query, {"_id": bounds}]} if self.query else {"_id": bounds}

    @property
    def filter(self) -> Dict[str, Any]:
        """The full MongoDB filter: the query and the id range."""
        return self._filter()

    # -- splitting ------------------------------------------------------------------
    def split(self, n: int) -> List["Source"]:
        """``n`` sources over disjoint id ranges that together hold every item
        of this one, each with about ``len / n`` items.

        The boundaries are read from the data once, here: compute the split
        in one process and hand each part to its worker (they stay disjoint
        and complete even while other parts write, and under
        ``skip_existing`` queries that change as they do).
        """
        if not isinstance(n, int) or n < 1:
            raise ConfigError(f"split(n): n must be a positive integer, got {n!r}")
        coll = collection(self.collection)
        flt = self._filter()
        total = coll.count_documents(flt)
        bounds: List[Any] = [self.id_range[0]]
        for k in range(1, n):
            pos = (total * k) // n
            doc = next(iter(coll.find(flt, {"_id": 1}).sort("_id", 1).skip(pos).limit(1)), None)
            bounds.append(doc["_id"] if doc is not None else self.id_range[1])
        bounds.append(self.id_range[1])
        return [dataclasses.replace(self, id_range=(bounds[i], bounds[i + 1])) for i in range(n)]

    def shard(self, index: int, count: int) -> "Source":
        """Part ``index`` of ``count`` (see :meth:`split`)."""
        if not isinstance(index, int) or not 0 <= index < count:
            raise ConfigError(f"shard(index, count): index must be in [0, {count}), got {index!r}")
        return self.split(count)[index]

    # -- reading --------------------------------------------------------------------
    def count(self) -> int:
        """The samples (for a frame source: the videos) of this source."""
        return collection(self.collection).count_documents(self._filter())

    def count_items(self) -> int:
        """The work items: :meth:`count`, or for a frame source the frames
        selected, from each video's metadata (before ``frames_done``)."""
        if self.frames is None:
            return self.count()
        total = 0
        for doc in self.documents({"metadata.total_frame_count": 1, "metadata.frame_rate": 1}):
            meta = doc.get("metadata") or {}
            total += self.frames.count(meta.get("total_frame_count") or 0, meta.get("frame_rate"))
        return total

    def has(self, query: Dict[str, Any]) -> bool:
        """Whether some sample of this source also matches ``query``."""
        flt = self._filter()
        combined = {"$and": [flt, query]} if flt and query else (flt or query)
        return collection(self.collection).find_one(combined, {"_id": 1}) is not None

    def frames_with(self, query: Optional[Dict[str, Any]]) -> List[Any]:
        """The ids of this collection's samples with a frame document matching
        ``query`` (a filter on frame documents; None: any frame)."""
        frames = collection(frames_collection_name(self.collection))
        return list(frames.distinct(FRAME_ID, query or {}))

    def field_names(self, limit: int = 1000) -> List[str]:
        """The top-level fields found in the first ``limit`` samples of this
        source, sorted (for messages and for checking the fields a model reads)."""
        pipeline = [
            {"$match": self._filter()}, {"$limit": int(limit)},
            {"$project": {"kv": {"$objectToArray": "$$ROOT"}}}, {"$unwind": "$kv"}, {"$group": {"_id": "$kv.k"}},
        ]
        return sorted(str(d["_id"]) for d in collection(self.collection).aggregate(pipeline))

    def first_mismatch(self, field: str, value: Any) -> Optional[Dict[str, Any]]:
        """One sample (``_id``, ``filepath`` and ``field``) whose ``field`` is
        not ``value``, or None (checks that a run's samples suit its model)."""
        return collection(self.collection).find_one(
            {"$and": [self._filter(), {field: {"$exists": True, "$ne": value}}]}, {"filepath": 1, field: 1}
        )

    def documents(self, projection: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
        """The samples' documents (``projection`` of them), in ``_id`` order, page by page."""
        coll = collection(self.collection)
        flt = self._filter()
        last = None
        while True:
            query = flt if last is None else {"$and": [flt, {"_id": {"$gt": last}}]}
            page = list(coll.find(query, projection).sort("_id", 1).limit(self.page_size))
            if not page:
                return
            yield from page
            last = page[-1]["_id"]
            if len(page) < self.page_size:
                return

    def item_of(self, doc: Dict[str, Any]) -> WorkItem:
        """The work item of a sample document (read with :meth:`projection`)."""
        fields = (
            {name: from_mongo_value(get_path(doc, path)) for name, path in self.needs_fields}
            if self.needs_fields
            else None
        )
        return WorkItem(doc["_id"], doc.get("filepath"), fields)

    def projection(self) -> Dict[str, Any]:
        """What :meth:`items` reads of each sample: its filepath and the needed fields."""
        projection: Dict[str, Any] = {"filepath": 1}
        for _, path in self.needs_fields:
            projection[path] = 1
        return projection

    def items(self) -> Iterator[WorkItem]:
        """Every item (for a frame source: every video), in ``_id`` order."""
        for doc in self.documents(self.projection()):
            yield self.item_of(doc)

    def batches(self, batch_size: int) -> Iterator[List[WorkItem]]:
        """The items in lists of ``batch_size`` (the last may be shorter)."""
        batch: List[WorkItem] = []
        for item in self.items():
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
