"""Sample sources: stream the records a run needs, page by page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

__all__ = ["Record", "SampleSource"]


class Record(NamedTuple):
    """What the engine knows of one sample: small, so it travels to workers cheaply."""

    index: int  # position in the run's sample order
    sample_id: Any  # bson ObjectId
    filepath: Optional[str]
    fields: Optional[Dict[str, Any]]  # model inputs read from the sample (SamplesMixin)


@dataclass
class SampleSource:
    """The samples of a run: a dataset name, a query, and the fields to read.

    Pages through the collection by ``_id`` (one projected query per page, no
    long-lived cursor that could time out behind a slow model), so memory is
    bounded by the page size, not the dataset size. Picklable.
    """

    dataset_name: str
    query: Dict[str, Any]
    needs_fields: Tuple[Tuple[str, str], ...] = ()  # (input name, field path)
    page_size: int = 512

    def _collection(self):
        from ..dataset import load_dataset

        return load_dataset(self.dataset_name)._collection

    def count(self) -> int:
        return self._collection().count_documents(self.query)

    def records(self) -> Iterator[Record]:
        from ..fields import from_mongo_value, get_path

        coll = self._collection()
        projection = {"filepath": 1}
        for _, path in self.needs_fields:
            projection[path] = 1
        last = None
        index = 0
        while True:
            query = self.query if last is None else {"$and": [self.query, {"_id": {"$gt": last}}]}
            page = list(coll.find(query, projection).sort("_id", 1).limit(self.page_size))
            if not page:
                return
            for doc in page:
                fields = (
                    {name: from_mongo_value(get_path(doc, path)) for name, path in self.needs_fields}
                    if self.needs_fields
                    else None
                )
                yield Record(index, doc["_id"], doc.get("filepath"), fields)
                index += 1
            last = page[-1]["_id"]
            if len(page) < self.page_size:
                return

    def batches(self, batch_size: int) -> Iterator[List[Record]]:
        batch: List[Record] = []
        for record in self.records():
            batch.append(record)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
