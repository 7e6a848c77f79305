"""``compute_metadata``: fills ``metadata`` of samples added without it
(``Dataset.add_samples([Sample(filepath=...)])``, as FiftyOne users add them),
reading image headers (PIL) and video containers (PyAV) in parallel threads.

A file that cannot be read costs its sample only: the reason is recorded in
the sample's ``ingest_error`` (and in the returned report), the others are
written, in one bulk write.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .storage import bulk_set, collection

__all__ = ["MetadataReport", "compute_metadata", "read_metadata"]


@dataclass
class MetadataReport:
    """What :func:`compute_metadata` did.

    Attributes:
        computed: samples whose metadata was written.
        failed: ``{sample_id: reason}`` for files that could not be read
            (recorded in each sample's ``ingest_error``).
    """

    computed: int = 0
    failed: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"metadata of {self.computed} samples computed, {len(self.failed)} failed"


def read_metadata(filepath: str, media_type: str) -> Dict[str, Any]:
    """The stored ``metadata`` document of one image or video file.

    Raises:
        OSError, VideoError: the file is missing or is not a readable image or video.
    """
    if media_type == "video":
        from .sample import VideoMetadata
        from .video import read_video_metadata

        v = read_video_metadata(filepath)
        meta: Any = VideoMetadata(
            width=v.width, height=v.height, frame_rate=v.frame_rate, total_frame_count=v.total_frame_count,
            duration=v.duration, codec=v.codec, container=v.container, size_bytes=v.size_bytes,
            mime_type=v.mime_type,
        )
    else:
        from .media import read_image_metadata
        from .sample import ImageMetadata

        i = read_image_metadata(filepath)
        meta = ImageMetadata(
            width=i.width, height=i.height, channels=i.channels, size_bytes=i.size_bytes,
            mime_type=i.mime_type, mode=i.mode,
        )
    return meta.to_mongo().to_dict()


def compute_metadata(
    samples: Any, overwrite: bool = False, num_workers: Optional[int] = None, progress: Any = None
) -> MetadataReport:
    """Reads the metadata of ``samples`` (a dataset or view) that lack it
    (all of them with ``overwrite=True``) and stores it.

    Args:
        samples: a :class:`~modelzoo.Dataset` or view.
        overwrite: recompute metadata that is already there.
        num_workers: reader threads (default: ``min(8, 2 x CPUs)``).
        progress: True/False for a progress bar, or a callable called with
            the progress (``.iteration``, ``.total``, ``.progress``,
            ``.complete``) as samples are read, as FiftyOne calls it.

    Returns:
        a :class:`MetadataReport`.
    """
    from .progress import progress_bar

    query = samples.query if overwrite else {"$and": [samples.query, {"metadata": None}]}
    docs = list(collection(samples.collection_name).find(query, {"filepath": 1, "media_type": 1}))
    report = MetadataReport()
    if not docs:
        return report

    def _one(doc: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
        try:
            return doc["_id"], {"metadata": read_metadata(doc["filepath"], doc.get("media_type") or "image"),
                                "ingest_error": None}
        except Exception as e:  # a per-file data error: record it on its sample
            return doc["_id"], {"ingest_error": f"{type(e).__name__}: {e} (file {doc['filepath']!r})"}

    workers = num_workers or min(8, (os.cpu_count() or 1) * 2)
    updates: Dict[Any, Dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, progress_bar(len(docs), "metadata", enabled=progress) as bar:
        for oid, update in pool.map(_one, docs):
            updates[oid] = update
            if "metadata" in update:
                report.computed += 1
            else:
                report.failed[str(oid)] = update["ingest_error"]
            bar.update(1)
    bulk_set(samples.collection_name, updates, samples.name)
    return report
