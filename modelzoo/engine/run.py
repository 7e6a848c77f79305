"""The one engine loop, and ``apply_model`` / ``compute_embeddings`` on top of it.

:func:`run_model` composes four parts: a :class:`~modelzoo.engine.Source` of work
items, the model's :class:`~modelzoo.loaders.Loader` (in loader worker
processes), the :class:`~modelzoo.Model`, and a :class:`~modelzoo.engine.Sink`
(written from a background thread). ``apply_model`` is ``run_model`` with a
:class:`~modelzoo.engine.LabelSink`, ``compute_embeddings`` with an
:class:`~modelzoo.engine.EmbeddingSink`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import pymongo.errors

from ..errors import ConfigError, DatabaseError, ModelError, PredictionError, check_keys
from ..fields import check_field_name
from ..loaders import Loader, WorkItem
from ..mixins import EmbeddingsMixin, LogitsMixin, SamplesMixin, TorchModelMixin
from ..models import Model
from ..progress import progress_bar
from .batching import BatchStream, LoadedBatch, safe_load
from .report import ApplyReport, Failure
from .sinks import EmbeddingSink, LabelSink, Sink, SinkBatch
from .source import Source
from .tuning import Calibration, default_threads, default_workers, uses_cuda
from .writer import BackgroundWriter

__all__ = ["RunOptions", "run_model", "apply_model", "compute_embeddings"]

logger = logging.getLogger("modelzoo.engine")

_EXTRAS = ("error_field", "num_threads")


@dataclass(frozen=True)
class RunOptions:
    """How :func:`run_model` runs; checked when made.

    Attributes:
        mode: ``"predict"`` (``predict_all``) or ``"embed"`` (``embed_all``).
        batch_size: inputs per call (default: the model's
            ``default_batch_size``, else 16).
        num_workers: loader worker processes (0: load in the main process).
        num_threads: torch threads for the forward pass.
        skip_failures: a sample that cannot be loaded or predicted costs that
            sample only; False raises :class:`~modelzoo.PredictionError`.
        progress: show a progress bar (default: when stderr is a terminal).

    With neither ``num_workers`` nor ``num_threads``, a CPU run of a
    :class:`~modelzoo.TorchModelMixin` model measures its first batches and
    picks both (:class:`~modelzoo.engine.tuning.Calibration`).
    """

    mode: str = "predict"
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    num_threads: Optional[int] = None
    skip_failures: bool = True
    progress: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.mode not in ("predict", "embed"):
            raise ConfigError(f"mode must be 'predict' or 'embed', got {self.mode!r}")
        for name in ("batch_size", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        w = self.num_workers
        if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 0):
            raise ConfigError(f"num_workers must be an integer >= 0, got {w!r}")


# -- pieces of the loop ---------------------------------------------------------------------
@contextlib.contextmanager
def _torch_threads(n: Optional[int]) -> Iterator[None]:
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _fed_by_loader(model: Any) -> Iterator[None]:
    """A TorchModelMixin model's loader applies its transforms: predict must not."""
    if not isinstance(model, TorchModelMixin) or not isinstance(model, Model):
        yield
        return
    before = model.preprocess
    model.preprocess = False
    try:
        yield
    finally:
        model.preprocess = before


def _infer(model: Any, mode: str, inputs: Any, items: List[WorkItem]) -> Any:
    if mode == "embed":
        return model.embed_all(inputs)
    if isinstance(model, SamplesMixin):
        return model.predict_all(inputs, samples=[item.fields or {} for item in items])
    return model.predict_all(inputs)


def _check_count(model: Any, outputs: Any, n: int) -> None:
    try:
        got = len(outputs)
    except TypeError:
        raise ModelError(
            f"{type(model).__name__}.predict_all returned {type(outputs).__name__}, expected a sequence "
            f"of {n} outputs (one per input); nothing was written for this batch"
        ) from None
    if got != n:
        raise ModelError(
            f"{type(model).__name__} returned {got} outputs for a batch of {n} inputs; it must return one "
            "output per input, in order. Nothing was written for this batch."
        )


def _check_model(model: Any, source: Source, mode: str) -> None:
    if not isinstance(model, Model):
        raise ConfigError(
            f"model must implement modelzoo.Model, got {type(model).__name__}. Wrap it in a Model "
            "subclass or a TorchImageModel, or load one with modelzoo.load_zoo_model(name)."
        )
    if mode == "embed" and not (isinstance(model, EmbeddingsMixin) and model.has_embeddings):
        raise ModelError(
            f"{type(model).__name__} cannot compute embeddings (it does not implement EmbeddingsMixin "
            "or has_embeddings is False); for a TorchImageModel set embeddings_layer in its config."
        )
    media = model.media_type
    other = source.first_mismatch("media_type", media)
    if other is not None and other.get("media_type") is not None:
        raise ConfigError(
            f"{type(model).__name__} is a{'n' if media[0] in 'aeiou' else ''} {media} model, but sample "
            f"{other['_id']} ({other.get('filepath')}) of {source.dataset_name!r} is a {other['media_type']}. "
            f"Run it on the {media} samples only: samples.match({{'media_type': {media!r}}})."
        )


class _Loop:
    """One run's state: the parts, the counts and the report."""

    def __init__(self, source: Source, model: Any, sink: Sink, options: RunOptions):
        self.source, self.model, self.sink, self.options = source, model, sink, options
        self.mode = options.mode
        self.loader: Loader = model.build_loader()
        self.batch_size = options.batch_size or int(getattr(model, "default_batch_size", None) or 16)
        self.report = ApplyReport()
        cuda = uses_cuda(model)
        torch_fed = isinstance(model, TorchModelMixin)
        self.calibration: Optional[Calibration] = None
        self.num_threads: Optional[int]
        if torch_fed and not cuda and options.num_workers is None and options.num_threads is None:
            self.calibration = Calibration(model)
            self.num_workers, self.num_threads = self.calibration.provisional
        else:
            self.num_workers = default_workers(model) if options.num_workers is None else options.num_workers
            self.num_threads = options.num_threads
            # Every run loads through torch's DataLoader, and a model that is
            # not TorchModelMixin may still run torch in its predict (a bundle
            # around a torchvision net): its OpenMP team must not share cores
            # with the loader workers either.
            if self.num_threads is None and not cuda:
                self.num_threads = default_threads(model, self.num_workers)
        self.stream = BatchStream(self.source.batches(self.batch_size), self.loader, self.num_workers, pin_memory=cuda)

    # -- failures ------------------------------------------------------------------------
    def _fail(self, item: WorkItem, message: str, stage: str, out: SinkBatch) -> None:
        if not self.options.skip_failures:
            raise PredictionError(item.sample_id, item.filepath, message)
        logger.debug("Sample %s (%s) failed to %s: %s", item.sample_id, item.filepath, stage, message)
        self.report.failed += 1
        self.report.failures.append(Failure(str(item.sample_id), item.filepath, message, stage))
        out.failures.append((item, message))

    def _one_by_one(self, batch: LoadedBatch, out: SinkBatch) -> None:
        """After a batch failed: each sample alone, so one bad input costs one sample."""
        for item in batch.items:
            try:
                _, ok, loaded = safe_load(self.loader, item)
                if not ok:
                    self._fail(item, loaded, "load", out)
                    continue
                outputs = _infer(self.model, self.mode, self.loader.collate([loaded]), [item])
                _check_count(self.model, outputs, 1)
                out.outputs.append((item, outputs[0]))
            except (ModelError, PredictionError):
                raise
            except Exception as e:
                self._fail(item, f"{type(e).__name__}: {e}", "predict", out)

    def _predict(self, batch: LoadedBatch) -> SinkBatch:
        out = SinkBatch()
        for item, message in batch.failures:
            self._fail(item, message, "load", out)
        if not batch.items:
            return out
        try:
            t0 = time.perf_counter()
            outputs = _infer(self.model, self.mode, batch.inputs, batch.items)
            self._observe((time.perf_counter() - t0) / len(batch.items))
            _check_count(self.model, outputs, len(batch.items))
            out.outputs.extend(zip(batch.items, outputs))
        except ModelError:
            raise
        except Exception as e:
            if not self.options.skip_failures and len(batch.items) == 1:
                item = batch.items[0]
                raise PredictionError(item.sample_id, item.filepath, f"{type(e).__name__}: {e}") from e
            self._one_by_one(batch, out)  # without skip_failures this raises naming the sample
        return out

    # -- calibration ---------------------------------------------------------------------
    def _observe(self, seconds_per_sample: float) -> None:
        if self.calibration is None:
            return
        counts = self.calibration.observe(seconds_per_sample)
        if counts is None:
            return
        self._apply_counts(counts, f"{seconds_per_sample * 1e3:.2f}")

    def _apply_counts(self, counts: Tuple[int, int], last: str) -> None:
        assert self.calibration is not None
        import torch

        self.num_workers, self.num_threads = counts
        torch.set_num_threads(self.num_threads)  # restored by _torch_threads when the run ends
        self.stream.resize(self.num_workers)
        logger.info(
            "Measured %.2f ms/sample to load and %s ms/sample to predict (%d batches on %d thread(s)): "
            "using %d loader workers and %d torch threads",
            (self.calibration.load_s or 0) * 1e3, last, len(self.calibration.times),
            self.calibration.provisional[1], self.num_workers, self.num_threads,
        )
        self.calibration = None

    def _batches(self) -> Iterator[LoadedBatch]:
        if self.calibration is not None:
            t0 = time.perf_counter()
            first = self.stream.load_here()
            if first is None:
                return
            n = len(first.items) + len(first.failures)
            self.calibration.observe_load((time.perf_counter() - t0) / n)
            self.stream.start()  # the provisional workers load ahead while the first batch is predicted
            yield first
        yield from self.stream

    # -- the loop ------------------------------------------------------------------------
    def run(self, total: int) -> ApplyReport:
        writer = BackgroundWriter(self.sink.write)
        bar = progress_bar(total, "embed" if self.mode == "embed" else "apply", enabled=self.options.progress, smoothing=0.1)
        logger.info(
            "Running %s on %d samples of %r (batch %d, %d workers, %s torch threads%s)",
            type(self.model).__name__, total, self.source.dataset_name, self.batch_size, self.num_workers,
            self.num_threads, ", calibrating" if self.calibration else "",
        )
        try:
            with _torch_threads(self.num_threads), _fed_by_loader(self.model), self.model:
                for batch in self._batches():
                    out = self._predict(batch)
                    self.report.processed += len(out.outputs)
                    writer.submit(out)
                    bar.update(len(batch.items) + len(batch.failures))
        except BaseException as e:
            bar.close()
            try:
                writer.close(timeout=60)  # keep every finished batch (Ctrl-C included)
                self.sink.close()
            except Exception as write_error:
                logger.error("Could not store the last batches: %s", write_error)
            if isinstance(e, pymongo.errors.PyMongoError):
                raise DatabaseError(
                    f"Lost the database while running {type(self.model).__name__} on {self.source.dataset_name!r} "
                    f"({self.report.processed} samples done): {type(e).__name__}: {e}. Every batch written "
                    "before is kept; once the database is back, rerun with skip_existing=True to finish."
                ) from e
            raise
        bar.close()
        try:
            writer.close()
            self.sink.close()
        except pymongo.errors.PyMongoError as e:
            raise DatabaseError(
                f"Lost the database while storing the last batches of {self.source.dataset_name!r}: {e}. "
                "Rerun with skip_existing=True once it is back."
            ) from e
        self.report.failures.sort(key=lambda f: f.sample_id)
        if self.report.failed:
            logger.warning(
                "%d of %d samples failed (the returned report lists each one); first: %s",
                self.report.failed, total, self.report.failures[0],
            )
        logger.info("%s", self.report)
        return self.report


def run_model(source: Source, model: Model, sink: Sink, options: Optional[RunOptions] = None) -> ApplyReport:
    """Runs ``model`` over the items of ``source`` and hands its outputs to ``sink``.

    Items are loaded by ``model.build_loader()`` in loader worker processes,
    batched, predicted (or embedded) in this process, and written by
    ``sink`` from a background thread, one call per batch; ``sink.close()``
    is called at the end.

    Args:
        source: the work items (a dataset's, a view's, or a shard of them).
        model: any :class:`~modelzoo.Model`.
        sink: where outputs go.
        options: batch size, counts, failure handling.

    Returns:
        an :class:`ApplyReport` (mergeable with the reports of other shards).

    Raises:
        ConfigError: bad options, or samples whose media type the model does not take.
        ModelError: the model broke its contract (wrong number of outputs...).
        PredictionError: a sample failed and ``skip_failures`` is False.
        DatabaseError: the database went away (finished batches are kept).
    """
    options = options or RunOptions()
    _check_model(model, source, options.mode)
    total = source.count()
    model.prepare(total)  # before the loader is built: an optimized graph may change its layout
    return _Loop(source, model, sink, options).run(total)


# -- apply_model / compute_embeddings ----------------------------------------------------------
def _check_extras(fn: str, kwargs: Mapping[str, Any]) -> None:
    check_keys(kwargs, _EXTRAS, f"{fn}()", kind="argument")


def _missing_query(label_field: Union[str, Mapping[str, str]]) -> Optional[Dict[str, Any]]:
    """The samples that lack what ``apply_model`` writes to ``label_field``."""
    if isinstance(label_field, Mapping):
        return {"$or": [{f: None} for f in label_field.values()]} if label_field else None
    if "." in label_field:
        return {label_field: None}
    # A model returning a dict of labels writes label_field + "_" + key: a
    # sample with any such field was done too.
    prefix = label_field + "_"
    prefixed = {
        "$filter": {"input": {"$objectToArray": "$$ROOT"}, "cond": {"$eq": [{"$indexOfCP": ["$$this.k", prefix]}, 0]}}
    }
    return {"$and": [{label_field: None}, {"$expr": {"$eq": [{"$size": prefixed}, 0]}}]}


_BACKENDS = ("local", "ray")


def _runner(backend: str, ray_options: Optional[Mapping[str, Any]]) -> Any:
    """``run_model``, or its Ray twin (imported only when asked for)."""
    if backend not in _BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, _BACKENDS))}, got {backend!r}")
    if backend == "local":
        if ray_options is not None:
            raise ConfigError("ray_options is for backend='ray'; pass backend='ray' or drop ray_options")
        return run_model
    from ..ray import run_model as ray_run_model
    from ..ray.cluster import import_ray

    import_ray()  # no Ray installed: the error names the extra, before anything is read
    return lambda source, model, sink, options: ray_run_model(source, model, sink, options, ray_options)


def _needs(model: Any) -> Tuple[Tuple[str, str], ...]:
    return tuple(model.needs_fields.items()) if isinstance(model, SamplesMixin) else ()


def apply_model(
    samples: Any,
    model: Model,
    label_field: Union[str, Mapping[str, str]] = "predictions",
    confidence_thresh: Optional[float] = None,
    store_logits: bool = False,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    skip_failures: bool = True,
    skip_existing: bool = False,
    progress: Optional[bool] = None,
    backend: str = "local",
    ray_options: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> ApplyReport:
    """Runs ``model`` on ``samples`` and stores its labels on them.

    Args:
        samples: a Dataset or DatasetView.
        model: any :class:`~modelzoo.Model`.
        label_field: where a Label goes; for a dict of Labels, the prefix
            (``label_field + "_" + key``) or a ``{key: field}`` mapping.
        confidence_thresh: drop predictions below this confidence (a keypoint
            model's paired boxes and points together).
        store_logits: keep logits on the labels (the model must have them).
        batch_size: inputs per ``predict_all`` call (default: the model's
            ``default_batch_size``, else 16).
        num_workers: loader processes; chosen from the machine when None.
        skip_failures: a sample that cannot be read or predicted costs that
            sample only and is listed in the report; False raises
            :class:`~modelzoo.PredictionError` naming it.
        skip_existing: only process samples that lack ``label_field`` (for a
            model returning a dict of labels: every ``label_field_<key>``);
            resumes an interrupted run.
        progress: show a progress bar (default: when stderr is a terminal).
        backend: ``"local"`` (this process) or ``"ray"`` (a Ray cluster, see
            :mod:`modelzoo.ray`; needs ``pip install 'modelzoo[ray]'``).
        ray_options: with ``backend="ray"``: replicas, CPUs/GPUs per replica,
            the cluster address... (:class:`modelzoo.ray.RayOptions`).
        **kwargs: ``error_field`` (record each failure's message on its sample
            in this field) and ``num_threads`` (torch threads for the forward).

    Returns:
        an :class:`ApplyReport`.
    """
    _check_extras("apply_model", kwargs)
    runner = _runner(backend, ray_options)
    if confidence_thresh is not None and not 0 <= confidence_thresh <= 1:
        raise ConfigError(f"confidence_thresh must be in [0, 1], got {confidence_thresh!r}")
    if isinstance(label_field, str):
        check_field_name(label_field)
    options = RunOptions("predict", batch_size, num_workers, kwargs.get("num_threads"), skip_failures, progress)
    if store_logits and not (isinstance(model, LogitsMixin) and model.has_logits):
        raise ModelError(
            f"{type(model).__name__} does not produce logits, so store_logits=True cannot be honoured. "
            "Call apply_model without store_logits."
        )
    source = Source.from_samples(samples, _needs(model))
    if skip_existing:
        query = _missing_query(label_field)
        todo = source.where(query) if query else source
        skipped = source.count() - todo.count()
        source = todo
    sink = LabelSink(source.collection, source.dataset_name, label_field, confidence_thresh, kwargs.get("error_field"))
    logits_before = model.store_logits if isinstance(model, LogitsMixin) else None
    if store_logits:
        model.store_logits = True  # type: ignore[attr-defined]
    try:
        report = runner(source, model, sink, options)
    finally:
        if logits_before is not None:
            model.store_logits = logits_before  # type: ignore[attr-defined]
    if skip_existing:
        report.skipped = skipped
    return report


def compute_embeddings(
    samples: Any,
    model: Model,
    embeddings_field: Optional[str] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    skip_failures: bool = True,
    progress: Optional[bool] = None,
    backend: str = "local",
    ray_options: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> Union[np.ndarray, ApplyReport]:
    """Embeds ``samples`` with ``model`` (an :class:`~modelzoo.EmbeddingsMixin`).

    Returns:
        without ``embeddings_field``: a float32 ``(N, D)`` array in sample
        order (rows of failed samples are NaN; they are logged). With it: the
        embeddings are stored on each sample and an :class:`ApplyReport` is
        returned. ``backend`` and ``ray_options`` are as for :func:`apply_model`.
    """
    _check_extras("compute_embeddings", kwargs)
    runner = _runner(backend, ray_options)
    options = RunOptions("embed", batch_size, num_workers, kwargs.get("num_threads"), skip_failures, progress)
    source = Source.from_samples(samples, _needs(model))
    sink = EmbeddingSink(source.collection, source.dataset_name, embeddings_field, kwargs.get("error_field"))
    report = runner(source, model, sink, options)
    if embeddings_field is not None:
        return report
    return sink.array()
