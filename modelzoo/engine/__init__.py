"""The one inference engine: a source, a loader, the model, a sink.

* :class:`Source`: the work items of a run (a dataset or view, a query, the
  fields a model reads), splittable into disjoint shards;
* a :class:`~modelzoo.loaders.Loader`: what turns an item into a model input,
  in loader worker processes, declared by the model
  (:meth:`~modelzoo.Model.build_loader`);
* the :class:`~modelzoo.Model`;
* a :class:`Sink`: where the outputs go (:class:`LabelSink`,
  :class:`EmbeddingSink`, or your own).

:func:`run_model` composes them; :func:`apply_model` and :func:`compute_embeddings`
are ``run_model`` with a label and an embedding sink. Every part is picklable, so
the same parts run in other processes or on other machines, each on its own
shard, and their :class:`ApplyReport` objects merge. Who runs the loop is a
:class:`Runner` chosen by name from a small registry (:mod:`.backends`:
``"local"``, ``"ray"`` registered by :mod:`modelzoo.ray`, or your own).
"""

from ..loaders import WorkItem
from .backends import LocalRunner, Runner, available_backends, get_backend, known_implementations, register_backend
from .patches import compute_patch_embeddings
from .report import ApplyReport, Failure
from .run import RunOptions, apply_model, check_model, compute_embeddings, run_model
from .sinks import EmbeddingSink, LabelSink, Sink, SinkBatch
from .source import Source

__all__ = [
    "ApplyReport",
    "EmbeddingSink",
    "Failure",
    "LabelSink",
    "LocalRunner",
    "Runner",
    "RunOptions",
    "Sink",
    "SinkBatch",
    "Source",
    "WorkItem",
    "apply_model",
    "available_backends",
    "check_model",
    "compute_embeddings",
    "compute_patch_embeddings",
    "get_backend",
    "known_implementations",
    "register_backend",
    "run_model",
]
