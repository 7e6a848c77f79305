"""Calling a model from many threads, or over HTTP.

- :class:`Batcher` (``Batcher(model, ...)``): dynamic batching for
  concurrent callers, with one answer (or one exception) per caller.
- :mod:`modelzoo.serving.app` and :mod:`modelzoo.serving.server`: the
  ``modelzoo serve`` HTTP server (FastAPI on uvicorn, the ``serve`` extra);
  import them explicitly, so that the batcher needs neither.

See ``docs/serve.md``.
"""

from .batcher import Batcher, BatcherStats
from .errors import BatcherClosedError, InputError, OutputCountError, RequestValidationError, ServingError
from .inputs import InputAdapter

__all__ = [
    "Batcher",
    "BatcherStats",
    "InputAdapter",
    "ServingError",
    "BatcherClosedError",
    "InputError",
    "RequestValidationError",
    "OutputCountError",
]
