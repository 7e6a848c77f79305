"""What ``compute_embeddings`` returns: never an ``(N, 0)`` array.

Rows of failed samples (frames, patches) are NaN rows of the model's width:
its declared :attr:`~modelzoo.EmbeddingsMixin.embedding_dim`, else the width
of the vectors the run produced, else the width of one probe embedding of a
black image (a run where every sample failed). A model whose width cannot be
known that way makes such a run raise, naming the first failure.

Video samples embedded by an image model give ``{sample_id: (n_frames, D)}``
as FiftyOne returns them.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError

__all__ = ["embedding_width", "embeddings_array", "stack_rows", "video_embeddings", "strip_frames_prefix"]

logger = logging.getLogger("modelzoo.engine")

_PROBE = np.zeros((64, 64, 3), dtype=np.uint8)


def embedding_width(model: Any) -> int:
    """The width of ``model``'s embeddings without a dataset: its
    ``embedding_dim`` when declared, else that of one probe embedding
    (a 64 x 64 black image); -1 when neither works."""
    dim = getattr(model, "embedding_dim", -1)
    if isinstance(dim, int) and dim > 0:
        return dim
    try:
        vector = np.asarray(model.embed_all([_PROBE]))
        return int(vector[0].size)
    except Exception as e:  # a model that cannot embed a black square: width unknown
        logger.debug("Could not probe the embedding width of %s: %s", type(model).__name__, e)
        return -1


def stack_rows(vectors: Mapping[Any, Any], keys: Sequence[Any], shape: Tuple[int, ...]) -> np.ndarray:
    """A ``(len(keys), *shape)`` float32 array: row ``i`` is ``vectors[keys[i]]``,
    or NaN where ``vectors`` has no such key (a failed or missing sample)."""
    out = np.full((len(keys),) + tuple(shape), np.nan, dtype=np.float32)
    for row, key in enumerate(keys):
        vector = vectors.get(key)
        if vector is not None:
            out[row] = vector
    return out


def _shape(sink: Any, model: Any, failures: List[Any]) -> Tuple[int, ...]:
    shapes = {v.shape for v in sink.vectors.values()}
    if len(shapes) > 1:
        raise ModelError(f"The model returned embeddings of different shapes: {sorted(shapes)}")
    if shapes:
        return shapes.pop()
    width = embedding_width(model)
    if width > 0:
        return (width,)
    first = failures[0] if failures else None
    raise ModelError(
        f"Every sample failed to embed ({len(failures)}; first: {first}), and {type(model).__name__} does not "
        "declare its embedding width (an embedding_dim property), so no NaN rows can stand for them. Fix the "
        "inputs (report.failures names each), or give the model an embedding_dim."
    )


def embeddings_array(sink: Any, model: Any, report: Any) -> np.ndarray:
    """The sink's vectors as a float32 ``(N, D)`` array (NaN rows for failures)."""
    keys = sorted(set(sink.vectors) | set(sink.failed))
    if not keys:
        width = embedding_width(model)
        return np.zeros((0, max(width, 0)), dtype=np.float32)
    shape = _shape(sink, model, list(getattr(report, "failures", [])))
    return sink.array(keys, shape)


def video_embeddings(sink: Any, model: Any, report: Any, sample_ids: List[Any]) -> Dict[str, Optional[np.ndarray]]:
    """``{sample_id: (n_frames, D) float32}`` in frame order, for the frames
    each video gave (NaN rows for frames that failed); None for a video that
    gave none (it could not be opened)."""
    frames: Dict[Any, List[Any]] = {sid: [] for sid in sample_ids}
    for key in set(sink.vectors) | set(sink.failed):
        if isinstance(key, tuple):
            frames.setdefault(key[0], []).append(key)
    any_rows = any(frames.values())
    shape = _shape(sink, model, list(getattr(report, "failures", []))) if any_rows else (0,)
    out: Dict[str, Optional[np.ndarray]] = {}
    for sid in sample_ids:
        keys = sorted(frames.get(sid) or [], key=lambda k: k[1])
        out[str(sid)] = sink.array(keys, shape) if keys else None
    return out


def strip_frames_prefix(field: Any, what: str) -> Tuple[Any, bool]:
    """``("frames.x", ...)`` -> ``("x", True)`` (FiftyOne's name of the frame
    field ``x``); any other value -> ``(value, False)``."""
    if isinstance(field, str) and field.startswith("frames."):
        rest = field[len("frames."):]
        if rest and not rest.split(".")[0].isdigit():
            return rest, True
    return field, False
