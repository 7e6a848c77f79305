"""The one engine loop, and ``apply_model`` / ``compute_embeddings`` on top of it.

:func:`run_model` composes four parts: a :class:`~modelzoo.engine.Source` of work
items, the model's :class:`~modelzoo.loaders.Loader` (in loader worker
processes), the :class:`~modelzoo.Model`, and a :class:`~modelzoo.engine.Sink`
(written from a background thread). ``apply_model`` is ``run_model`` with a
:class:`~modelzoo.engine.LabelSink`, ``compute_embeddings`` with an
:class:`~modelzoo.engine.EmbeddingSink`.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Deque, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pymongo.errors

from ..errors import ConfigError, DatabaseError, ModelError, PredictionError
from ..fields import check_label_field
from ..loaders import Loader, WorkItem
from ..mixins import EmbeddingsMixin, LogitsMixin, PromptMixin, SamplesMixin, TorchModelMixin
from ..models import Call, Model
from ..progress import progress_bar
from ..video.selection import FrameSelection
from .backends import Runner, get_backend
from .batching import BatchStream, LoadedBatch, Rebatch, safe_load
from .embeddings import embeddings_array, strip_frames_prefix, video_embeddings
from .frames import FrameStream, video_tasks
from .mask_files import MaskWriter
from .report import ApplyReport, Failure
from .sinks import EmbeddingSink, FrameSink, LabelSink, Sink, SinkBatch
from .source import Source
from .tuning import (
    BatchSizeSearch,
    Calibration,
    batch_size_candidates,
    default_threads,
    default_workers,
    first_batch_size,
    input_elements,
    memory_bound,
    uses_cuda,
)
from .video_outputs import VideoOutputs
from .writer import BackgroundWriter

__all__ = ["RunOptions", "check_model", "run_model", "apply_model", "compute_embeddings"]

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
        progress: show a progress bar (default: when stderr is a terminal);
            a callable is called with the progress on each batch instead
            (FiftyOne's callback: ``.iteration``, ``.total``, ``.progress``).
        store_logits: keep logits on the labels (handed to the model with
            each batch, see :meth:`~modelzoo.Model.run_batch`; the model
            object is not changed).
        loader: what loads the items (default: ``model.build_loader()``);
            a Ray replica passes the loader that replays what its decoding
            tasks loaded.
        prompts: a zero-shot run's classes, their prompts prepared once
            (:class:`~modelzoo.mixins.ClassPrompts`), handed to the model
            with each batch (``Call.prompts``).

    With neither ``num_workers`` nor ``num_threads``, a CPU run of a
    :class:`~modelzoo.TorchModelMixin` model measures its first batches and
    picks both (:class:`~modelzoo.engine.tuning.Calibration`).
    """

    mode: str = "predict"
    batch_size: Optional[int] = None
    num_workers: Optional[int] = None
    num_threads: Optional[int] = None
    skip_failures: bool = True
    progress: Any = None
    store_logits: bool = False
    loader: Optional[Loader] = None
    prompts: Any = None

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


def _infer(model: Model, call: Call, inputs: Any, items: List[WorkItem]) -> Any:
    samples = [item.fields or {} for item in items] if call.mode == "predict" and isinstance(model, SamplesMixin) else None
    return model.run_batch(inputs, call, samples)


def _sample_elements(batch: LoadedBatch) -> float:
    """The elements of one input, from a batch with items."""
    return input_elements(batch.inputs) / len(batch.items)


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


def _require_model(model: Any) -> None:
    if not isinstance(model, Model):
        raise ConfigError(
            f"model must implement modelzoo.Model, got {type(model).__name__}. Wrap it in a Model "
            "subclass or a TorchImageModel, or load one with modelzoo.load_zoo_model(name)."
        )


def check_model(model: Any, source: Source, mode: str) -> None:
    """Checks, before anything runs, that ``model`` can run over ``source``
    in ``mode``: a :class:`~modelzoo.Model`, able to embed for ``"embed"``,
    of the samples' media type (a video model is not run on frames). Every
    backend calls it on the driver (:mod:`modelzoo.ray` too).

    Raises:
        ConfigError: not a Model, or a media type the samples do not have
            (the message names the first such sample and the view to use).
        ModelError: ``mode="embed"`` and the model has no embeddings.
    """
    _require_model(model)
    if mode == "embed" and not (isinstance(model, EmbeddingsMixin) and model.has_embeddings):
        raise ModelError(
            f"{type(model).__name__} cannot compute embeddings (it does not implement EmbeddingsMixin "
            "or has_embeddings is False); for a TorchImageModel set embeddings_layer in its config."
        )
    media = model.media_type
    if source.frames is not None:
        if media == "video":
            raise ConfigError(
                f"{type(model).__name__} is a video model: it takes whole videos (a VideoReader), not their "
                "frames; run it on the samples without frames= (apply_model(..., frames=None))"
            )
        return
    other = source.first_mismatch("media_type", media)
    if other is not None and other.get("media_type") is not None:
        raise ConfigError(
            f"{type(model).__name__} is a{'n' if media[0] in 'aeiou' else ''} {media} model, but sample "
            f"{other['_id']} ({other.get('filepath')}) of {source.dataset_name!r} is a{'n' if str(other['media_type'])[:1] in 'aeiou' else ''} {other['media_type']}. "
            f"Run it on the {media} samples only: samples.match({{'media_type': {media!r}}})."
        )


class _Loop:
    """One run's state: the parts, the counts and the report."""

    def __init__(self, source: Source, model: Any, sink: Sink, options: RunOptions, total: Optional[int] = None):
        self.source, self.model, self.sink, self.options = source, model, sink, options
        self.total = total
        self.mode = options.mode
        self.loader: Loader = options.loader if options.loader is not None else model.build_loader()
        self.call = Call(options.mode, options.store_logits, loaded=True, prompts=options.prompts)
        self.batch_size = options.batch_size or int(model.default_batch_size or 16)
        self.report = ApplyReport()
        cuda = uses_cuda(model)
        torch_fed = isinstance(model, TorchModelMixin)
        self.calibration: Optional[Calibration] = None
        self.rebatch: Optional[Rebatch] = None
        self.pending: Optional[SinkBatch] = None  # outputs of batches smaller than the default, merged for one write
        self.sample_bytes = 0.0  # an input's bytes in the forward, from the calibration's first batch
        self.streams = 1  # batches predicted at once (the calibration may raise it: see tuning.predict_streams)
        self.num_threads: Optional[int]
        self.frames = source.frames is not None
        self.video = VideoOutputs(model, self.report) if model.media_type == "video" else None
        self.stream: Any
        if self.frames:
            self._frame_stream(cuda)
            return
        if self.video is not None:
            # a VideoReader holds an open file: it cannot go from a worker to here
            self.batch_size = options.batch_size or 1
            self.num_workers, self.num_threads = 0, options.num_threads
            self.stream = BatchStream(self.source.batches(self.batch_size), self.loader, 0)
            return
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
        batches: Iterator[List[WorkItem]] = self.source.batches(self.batch_size)
        if options.batch_size is None and not cuda:
            # the batch size is measured too (see tuning.BatchSizeSearch)
            if self.calibration is None:
                assert self.num_threads is not None
                self.calibration = Calibration(model, counts=(self.num_workers, self.num_threads))
            self.rebatch = Rebatch(batches, first_batch_size(self.batch_size))
            batches = self.rebatch
        self.stream = BatchStream(batches, self.loader, self.num_workers, pin_memory=cuda)

    def _frame_stream(self, cuda: bool) -> None:
        """The frames of the source's videos: decoded by video in the loader workers."""
        if not self.loader.takes_frames:
            raise ConfigError(
                f"{type(self.model).__name__}'s loader ({self.loader!r}) takes image files, not decoded video "
                f"frames, so it cannot run on the videos of {self.source.dataset_name!r}. Run it on the image "
                "samples (samples.match({'media_type': 'image'})), or give it a loader whose load_frame takes "
                "an (H, W, 3) uint8 array."
            )
        assert self.source.frames is not None
        tasks = video_tasks(self.source)
        selection = self.source.frames
        self.report.frames_skipped = sum(
            sum(1 for n in t.skip if selection.selects(n, t.frame_rate)) for t in tasks
        )
        options = self.options
        workers = default_workers(self.model) if options.num_workers is None else options.num_workers
        workers = min(workers, len(tasks))  # a video is one worker's: more would idle
        self.num_workers = workers
        self.num_threads = options.num_threads
        if self.num_threads is None and not cuda:
            self.num_threads = default_threads(self.model, workers)
        self.stream = FrameStream(tasks, self.loader, self.source.frames, self.batch_size, workers, pin_memory=cuda)

    # -- failures ------------------------------------------------------------------------
    def _fail(self, item: WorkItem, message: str, stage: str, out: SinkBatch) -> None:
        frame = item.frame_number
        if not self.options.skip_failures:
            raise PredictionError(item.sample_id, item.filepath, message if frame is None else f"frame {frame}: {message}")
        logger.debug("Sample %s (%s) frame %s failed to %s: %s", item.sample_id, item.filepath, frame, stage, message)
        if frame is None:
            self.report.failed += 1
        else:
            self.report.frames_failed += 1
        self.report.failures.append(Failure(str(item.sample_id), item.filepath, message, stage, frame))
        out.failures.append((item, message))

    def _one_by_one(self, batch: LoadedBatch, out: SinkBatch) -> None:
        """After a batch failed: each sample alone, so one bad input costs one sample."""
        for i, item in enumerate(batch.items):
            try:
                if batch.raw is not None:  # frames: their inputs are kept, as decoding again would cost the video
                    ok, loaded = True, batch.raw[i]
                else:
                    _, ok, loaded = safe_load(self.loader, item)
                if not ok:
                    self._fail(item, loaded, "load", out)
                    continue
                if self.video is not None:
                    self.video.opened(item, loaded)
                outputs = _infer(self.model, self.call, self.loader.collate([loaded]), [item])
                _check_count(self.model, outputs, 1)
                out.outputs.append((item, outputs[0]))
            except (ModelError, PredictionError):
                raise
            except Exception as e:
                self._fail(item, f"{type(e).__name__}: {e}", "predict", out)

    def _predict(self, batch: LoadedBatch, inferred: Optional["Future[Any]"] = None) -> SinkBatch:
        """The outputs and failures of ``batch``; ``inferred``: its forward,
        already running in a stream thread (see :meth:`_predicted`)."""
        out = SinkBatch()
        for item, message in batch.failures:
            self._fail(item, message, "load", out)
        if not batch.items:
            return out
        if self.video is not None:
            for item, reader in zip(batch.items, batch.inputs):
                self.video.opened(item, reader)
        try:
            if inferred is not None:
                outputs = inferred.result()
            else:
                t0 = time.perf_counter()
                outputs = _infer(self.model, self.call, batch.inputs, batch.items)
                self._observe((time.perf_counter() - t0) / len(batch.items), batch)
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
    def _observe(self, seconds_per_sample: float, batch: LoadedBatch) -> None:
        calibration = self.calibration
        if calibration is None:
            return
        if self.rebatch is not None and calibration.search is None:
            self._start_search(batch)
        counts = calibration.observe(seconds_per_sample, len(batch.items) + len(batch.failures))
        if calibration.search is not None and self.rebatch is not None:
            self.rebatch.size = calibration.search.current
        if counts is None:
            return
        search = calibration.search
        if search is not None and search.chosen is not None:
            self.batch_size = search.chosen
            logger.info("Batch size %d: measured %s (%s)", search.chosen, search.explain(), search.reason())
        if not calibration.tunes_counts:
            self.calibration = None
            return
        cost = search.costs[search.chosen] if search is not None and search.chosen in search.costs else seconds_per_sample
        self._apply_counts(counts, f"{cost * 1e3:.2f}")

    def _start_search(self, batch: LoadedBatch) -> None:
        """The batch sizes to try, bounded by memory from the first batch's input bytes."""
        assert self.calibration is not None and self.rebatch is not None
        n = len(batch.items)
        bound = memory_bound(4 * _sample_elements(batch)) if n else None  # float32 in the forward
        total = self.total if self.total is not None else 0
        sizes = batch_size_candidates(self.batch_size, total, bound)
        search = BatchSizeSearch(sizes, self.batch_size, start=len(batch.items) + len(batch.failures),
                                 warmup=self.calibration.warmup)
        search.bound = bound
        self.calibration.search_batch_size(search)

    def _apply_counts(self, counts: Tuple[int, int], last: str) -> None:
        assert self.calibration is not None
        import torch

        self.num_workers, self.num_threads = counts
        if self.model.thread_safe:  # (video and frame runs are not calibrated: never here)
            # each stream holds a batch: as many as memory holds at the run's batch size
            bound = memory_bound(self.sample_bytes) if self.sample_bytes else None
            self.num_threads, self.streams = self.calibration.split(
                self.num_threads, None if bound is None else max(1, bound // max(1, self.batch_size)))
        torch.set_num_threads(self.num_threads)  # restored by _torch_threads when the run ends
        self.stream.resize(self.num_workers)
        logger.info(
            "Measured %.2f ms/sample to load and %s ms/sample to predict (%d batches on %d thread(s)): "
            "using %d loader workers and %d torch threads%s",
            (self.calibration.load_s or 0) * 1e3, last, self.calibration.batches_measured,
            self.calibration.provisional[1], self.num_workers, self.num_threads,
            f", {self.streams} batches predicted at once" if self.streams > 1 else "",
        )
        self.calibration = None

    def _predicted(self) -> Iterator[Tuple[LoadedBatch, SinkBatch]]:
        """Each batch with its outputs, in the order loaded. Once the
        calibration chose more than one stream (:attr:`streams`), the
        forwards of that many batches run at once in threads; everything
        else (failures, the report, the writes) stays in this thread."""
        pending: Deque[Tuple[LoadedBatch, Optional["Future[Any]"]]] = collections.deque()
        pool: Optional[ThreadPoolExecutor] = None
        try:
            for batch in self._batches():
                # (thread_safe asked again each batch: a graph that failed mid-run fell back to eager)
                if self.streams > 1 and self.calibration is None and batch.items and self.model.thread_safe:
                    if pool is None:
                        pool = ThreadPoolExecutor(self.streams, thread_name_prefix="modelzoo-predict")
                    pending.append((batch, pool.submit(_infer, self.model, self.call, batch.inputs, batch.items)))
                    if len(pending) < self.streams:
                        continue
                else:
                    pending.append((batch, None))
                while pending and (len(pending) >= self.streams or pending[-1][1] is None):
                    done, inferred = pending.popleft()
                    yield done, self._predict(done, inferred)
            while pending:
                done, inferred = pending.popleft()
                yield done, self._predict(done, inferred)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)  # a stopped run leaves no forward running

    def _batches(self) -> Iterator[LoadedBatch]:
        if self.calibration is not None and self.calibration.tunes_counts:
            times: List[float] = []
            first = self.stream.load_here(times)
            if first is None:
                return
            # the median item: the first decode of a run also pays for lazy imports and cold caches
            self.calibration.observe_load(float(np.median(times[1:] if len(times) > 2 else times)))
            if first.items:
                elements = _sample_elements(first)
                self.sample_bytes = 4 * elements  # float32 in the forward
                if self.calibration.reconsider(elements):
                    import torch

                    self.num_workers, self.num_threads = self.calibration.provisional
                    torch.set_num_threads(self.num_threads)  # restored by _torch_threads when the run ends
                    self.stream.resize(self.num_workers)
            self.stream.start()  # the provisional workers load ahead while the first batch is predicted
            yield first
        yield from self.stream

    # -- writing -------------------------------------------------------------------------
    def _submit(self, writer: BackgroundWriter, out: SinkBatch) -> None:
        """Hands ``out`` to the writer, merging batches smaller than the default
        batch size (a searched size of 1 or 4) so the database gets the same
        number of bulk writes as at the default size."""
        if self.rebatch is None:
            writer.submit(out)
            return
        if self.pending is None:
            self.pending = out
        else:
            self.pending.outputs.extend(out.outputs)
            self.pending.failures.extend(out.failures)
        if len(self.pending.outputs) + len(self.pending.failures) >= int(self.model.default_batch_size or 16):
            self._flush(writer)

    def _flush(self, writer: BackgroundWriter) -> None:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            writer.submit(pending)

    # -- the loop ------------------------------------------------------------------------
    def run(self, total: int) -> ApplyReport:
        writer = BackgroundWriter(self.sink.write)
        bar = progress_bar(total, "embed" if self.mode == "embed" else "apply", enabled=self.options.progress, smoothing=0.1)
        logger.info(
            "Running %s on %d samples of %r (batch %s, %d workers, %s torch threads%s)",
            type(self.model).__name__, total, self.source.dataset_name,
            f"searched from {self.rebatch.size}" if self.rebatch is not None else self.batch_size, self.num_workers,
            self.num_threads, ", calibrating" if self.calibration else "",
        )
        try:
            with _torch_threads(self.num_threads), self.model:
                for batch, out in self._predicted():
                    if self.video is not None:  # frame labels, streamed in chunks as the model reads
                        self.video.write(out, writer.submit, self._fail)
                    elif self.frames:
                        self.report.frames_processed += len(out.outputs)
                        self.report.processed += len(batch.finished)
                        writer.submit(out)
                    else:
                        self.report.processed += len(out.outputs)
                        self._submit(writer, out)
                    bar.update(len(batch.items) + len(batch.failures))
        except BaseException as e:
            bar.close()
            if self.video is not None:
                self.video.close_all()
            try:
                self._flush(writer)
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
            self._flush(writer)
            writer.close()
            self.sink.close()
        except pymongo.errors.PyMongoError as e:
            raise DatabaseError(
                f"Lost the database while storing the last batches of {self.source.dataset_name!r}: {e}. "
                "Rerun with skip_existing=True once it is back."
            ) from e
        self.report.sort()
        if self.report.failed or self.report.frames_failed:
            logger.warning(
                "%s (the returned report lists each one); first: %s",
                self.report.failure_summary(), self.report.failures[0],
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
    check_model(model, source, options.mode)
    total = source.count_items()  # frames, for a run over the frames of videos
    model.prepare(total)  # before the loader is built: an optimized graph may change its layout
    return _Loop(source, model, sink, options, total).run(total)


# -- apply_model / compute_embeddings ----------------------------------------------------------
def _check_extras(fn: str, kwargs: Mapping[str, Any]) -> None:
    from ..keywords import check_call_keywords

    check_call_keywords(globals()[fn], kwargs, _EXTRAS)  # lists every keyword of the call


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


def _runner(backend: Union[str, Runner], backend_options: Optional[Mapping[str, Any]]) -> Runner:
    """The backend's runner, its options checked (and what it needs imported) before anything is read."""
    runner = get_backend(backend)
    runner.check_options(backend_options)
    return runner


def _check_sample_fields(model: Any, source: Optional[Source]) -> None:
    """Lets a model that reads sample fields refuse the run before any sample
    runs: ``model.check_sample_fields(names)`` gets the fields the samples
    have (a model without the method is not asked)."""
    check = getattr(model, "check_sample_fields", None)
    if source is not None and callable(check):
        check(source.field_names())


def _needs(model: Any) -> Tuple[Tuple[str, str], ...]:
    return tuple(model.needs_fields.items()) if isinstance(model, SamplesMixin) else ()


def _run_needs(model: Any, kwargs: Dict[str, Any]) -> Tuple[Tuple[str, str], ...]:
    """The fields a :class:`SamplesMixin` model reads in this run: its
    ``needs_fields``, updated by ``needs_fields=`` and by every keyword that
    is not an option (removed from ``kwargs``), as FiftyOne maps them."""
    if not isinstance(model, SamplesMixin):
        return ()
    needs = dict(model.needs_fields)
    needs.update(kwargs.pop("needs_fields", None) or {})
    for key in [k for k in kwargs if k not in _EXTRAS]:
        value = kwargs.pop(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"apply_model({key}={value!r}): {type(model).__name__} reads sample fields, so an extra keyword "
                "names the field one of its inputs comes from (a string such as prompt_field='question')"
            )
        needs[key] = value
    return tuple(needs.items())


def _parts(source: Source, model: Model, frames: Any) -> Tuple[Optional[Source], Optional[Source]]:
    """``(samples, frames)``: the source of the samples the model takes whole,
    and, for an image model on a dataset with videos, that of the videos'
    frames (either may be None when empty)."""
    selection = FrameSelection.parse(frames)  # checked even when no video is there
    if model.media_type == "video" and not selection.all:
        raise ConfigError(
            f"frames= chooses the frames an image model runs on; {type(model).__name__} is a video model, "
            "which reads each whole video itself (its VideoReader). Call it without frames=."
        )
    if model.media_type != "image" or not source.has({"media_type": "video"}):
        return source, None
    images = source.where({"media_type": {"$ne": "video"}})
    return (images if images.has({}) else None), source.over_frames(selection)


def _frames_done(query: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The frame documents that have what ``apply_model`` writes (``query``: those that lack it)."""
    return None if query is None else {"$nor": [query]}


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
    progress: Any = None,
    frames: Any = None,
    backend: Union[str, Runner] = "local",
    ray_options: Optional[Mapping[str, Any]] = None,
    classes: Optional[Sequence[str]] = None,
    output_dir: Optional[str] = None,
    rel_dir: Optional[str] = None,
    **kwargs: Any,
) -> ApplyReport:
    """Runs ``model`` on ``samples`` and stores its labels on them.

    An image model runs on image samples whole and on the frames of video
    samples (decoded sequentially in the loader workers, batched across
    frames and videos), whose labels are frame labels
    (``sample.frames[n][label_field]``). A video model (``media_type ==
    "video"``) gets each video sample's :class:`~modelzoo.video.VideoReader`
    and returns frame-keyed labels, stored as frame labels too.

    Args:
        samples: a Dataset or DatasetView.
        model: any :class:`~modelzoo.Model`.
        label_field: where a Label goes; for a dict of Labels, the prefix
            (``label_field + "_" + key``) or a ``{key: field}`` mapping.
        confidence_thresh: drop predictions below this confidence (a keypoint
            model's paired boxes and points together).
        store_logits: keep logits on the labels (the model must have them).
        batch_size: inputs per ``predict_all`` call (default: the model's
            ``default_batch_size``, else 16; 1 for video models).
        num_workers: loader processes; chosen from the machine when None.
        skip_failures: a sample (or frame) that cannot be read or predicted
            costs that sample (frame) only and is listed in the report;
            False raises :class:`~modelzoo.PredictionError` naming it.
        skip_existing: only process samples that lack ``label_field`` (for a
            model returning a dict of labels: every ``label_field_<key>``);
            on videos, an image model skips the frames that have it and a
            video model the videos with any frame that has it. Resumes an
            interrupted run.
        progress: show a progress bar (default: when stderr is a terminal).
        frames: for an image model on videos, which frames: None or
            ``"all"``, ``{"n": k}`` (every k-th), ``{"fps": f}`` (at most f
            per second), or a list of frame numbers (see
            :class:`~modelzoo.video.FrameSelection`); ``n`` and ``fps``
            together are an error.
        backend: ``"local"`` (this process), ``"ray"`` (a Ray cluster, see
            :mod:`modelzoo.ray`; needs ``pip install 'modelzoo[ray]'``), the
            name of another registered backend, or a
            :class:`~modelzoo.engine.Runner` (see :mod:`modelzoo.engine.backends`).
        ray_options: the backend's options; with ``backend="ray"``: replicas,
            CPUs/GPUs per replica, the cluster address...
            (:class:`modelzoo.ray.RayOptions`).
        classes: keep only the predictions of these classes (a lone label
            of another class is not stored; list labels keep their items of
            these classes). For a zero-shot model whose classes are its
            prompts (:attr:`~modelzoo.PromptMixin.takes_classes`), these
            classes are its prompts for this run: embedded (or tokenized)
            once, handed to the model with each batch; the model object and
            its own classes are unchanged.
        output_dir: write each ``Segmentation`` mask, instance mask and
            ``Heatmap`` map as a PNG under this directory (from the writer
            thread) and store its path (``mask_path`` / ``map_path``) instead
            of the pixels; reading the label loads the file
            (:mod:`modelzoo.engine.mask_files`).
        rel_dir: with ``output_dir``: the inputs' paths relative to it are
            kept under ``output_dir``.
        **kwargs: ``error_field`` (record each failure's message on its sample
            or frame in this field) and ``num_threads`` (torch threads for the
            forward). For a :class:`~modelzoo.SamplesMixin` model, any other
            keyword maps one of its inputs to a sample field for this run
            (FiftyOne's ``prompt_field="question"``), as does
            ``needs_fields={...}``; the model object is not changed.

    Returns:
        an :class:`ApplyReport` (frames are counted apart from samples).
    """
    needs = _run_needs(model, kwargs)  # a SamplesMixin's extra keywords are its inputs' fields
    _check_extras("apply_model", kwargs)
    runner = _runner(backend, ray_options)
    mask_writer = MaskWriter(output_dir, rel_dir) if output_dir is not None else None
    if rel_dir is not None and output_dir is None:
        raise ConfigError("rel_dir is only used with output_dir: pass output_dir too, or drop rel_dir")
    if confidence_thresh is not None and not 0 <= confidence_thresh <= 1:
        raise ConfigError(f"confidence_thresh must be in [0, 1], got {confidence_thresh!r}")
    label_field, frames_only = strip_frames_prefix(label_field, "label_field")  # FiftyOne's "frames.<field>"
    check_label_field(label_field)  # a sample's own fields (filepath, metadata...) are refused before anything runs
    prompts = None
    if classes is not None and isinstance(model, PromptMixin) and model.takes_classes:
        if isinstance(classes, str) or not list(classes):
            raise ConfigError(f"classes must be a non-empty list of class names, got {classes!r}")
        prompts = model.prompts_for([str(c) for c in classes])  # once for the run
    options = RunOptions(
        "predict", batch_size, num_workers, kwargs.get("num_threads"), skip_failures, progress, bool(store_logits),
        prompts=prompts,
    )
    if store_logits and not (isinstance(model, LogitsMixin) and model.has_logits):
        raise ModelError(
            f"{type(model).__name__} does not produce logits, so store_logits=True cannot be honoured. "
            "Call apply_model without store_logits."
        )
    _require_model(model)
    whole, frame_source = _parts(Source.from_samples(samples, needs), model, frames)
    if frames_only:
        _frames_only(whole, model, "label_field", label_field)
    runner.check_run(model, frame_source is not None)
    _check_sample_fields(model, whole)
    missing = _missing_query(label_field) if skip_existing else None
    runs: List[Tuple[Source, Sink, int]] = []
    error_field = kwargs.get("error_field")
    if whole is not None:
        skipped = 0
        if skip_existing and missing:
            todo = whole.where(missing)
            if model.media_type == "video":  # a video with any frame labelled was done
                todo = todo.where({"_id": {"$nin": todo.frames_with(_frames_done(missing))}})
            skipped = whole.count() - todo.count()
            whole = todo
        runs.append((whole, LabelSink(whole.collection, whole.dataset_name, label_field, confidence_thresh, error_field,
                                      classes, mask_writer), skipped))
    if frame_source is not None:
        if skip_existing:
            frame_source = dataclasses.replace(frame_source, frames_done=_frames_done(missing))
        frame_sink = FrameSink(frame_source.collection, frame_source.dataset_name, label_field, confidence_thresh, error_field,
                               classes, mask_writer)
        runs.append((frame_source, frame_sink, 0))
    reports = []
    for source, sink, skipped in runs:
        report = runner.run(source, model, sink, options, ray_options)
        report.skipped += skipped
        reports.append(report)
    if len(reports) == 1:  # as the runner made it (a Ray run's report carries its resource plan)
        return reports[0]
    return reports[0].merge(*reports[1:]) if reports else ApplyReport()


def compute_embeddings(
    samples: Any,
    model: Model,
    embeddings_field: Optional[str] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    skip_failures: bool = True,
    progress: Any = None,
    frames: Any = None,
    backend: Union[str, Runner] = "local",
    ray_options: Optional[Mapping[str, Any]] = None,
    **kwargs: Any,
) -> Union[np.ndarray, Dict[str, Any], ApplyReport]:
    """Embeds ``samples`` with ``model`` (an :class:`~modelzoo.EmbeddingsMixin`).

    On video samples, an image model embeds their frames (``frames`` as in
    :func:`apply_model`): one vector per frame.

    Returns:
        without ``embeddings_field``: a float32 ``(N, D)`` array in sample
        order, or for videos ``{sample_id: (n_frames, D) array}`` (one row
        per selected frame, in frame order; None for a video that could not
        be opened). Rows of failed samples or frames are NaN rows of the
        model's width, never an ``(N, 0)`` array (a run where every sample
        failed asks the model its width: see
        :mod:`modelzoo.engine.embeddings`). With ``embeddings_field`` (FiftyOne's
        ``"frames.<field>"`` names a frame field): the embeddings are stored
        on each sample (each frame, for videos) and an :class:`ApplyReport`
        is returned.

    Raises:
        ConfigError: no ``embeddings_field`` for samples that mix images and
            videos (their rows would not line up); embed each kind apart.
        ``backend`` and ``ray_options`` are as for :func:`apply_model`.
    """
    _check_extras("compute_embeddings", kwargs)
    runner = _runner(backend, ray_options)
    options = RunOptions("embed", batch_size, num_workers, kwargs.get("num_threads"), skip_failures, progress)
    _require_model(model)
    embeddings_field, frames_only = strip_frames_prefix(embeddings_field, "embeddings_field")
    whole, frame_source = _parts(Source.from_samples(samples, _needs(model)), model, frames)
    if frames_only:
        _frames_only(whole, model, "embeddings_field", embeddings_field)
    runner.check_run(model, frame_source is not None)
    if embeddings_field is None and whole is not None and frame_source is not None:
        raise ConfigError(
            "compute_embeddings without embeddings_field returns one array, and these samples mix images and "
            "videos (one row per image, one per frame). Embed each apart: "
            "samples.match({'media_type': 'image'}) and samples.match({'media_type': 'video'}), "
            "or pass embeddings_field to store them."
        )
    reports = []
    sink: Optional[EmbeddingSink] = None
    for source in (whole, frame_source):
        if source is None:
            continue
        sink = EmbeddingSink(source.collection, source.dataset_name, embeddings_field, kwargs.get("error_field"))
        reports.append(runner.run(source, model, sink, options, ray_options))
    if embeddings_field is not None:
        if len(reports) == 1:
            return reports[0]
        return reports[0].merge(*reports[1:]) if reports else ApplyReport()
    if sink is None:
        return embeddings_array(EmbeddingSink(), model, None)
    if frame_source is not None:  # videos: {sample_id: (n_frames, D)}, as FiftyOne returns them
        ids = [d["_id"] for d in frame_source.documents({"_id": 1})]
        return video_embeddings(sink, model, reports[-1], ids)
    return embeddings_array(sink, model, reports[-1])


def _frames_only(whole: Optional[Source], model: Model, name: str, field: Any) -> None:
    """A ``"frames."`` field names frame fields: only an image model on videos writes those."""
    if whole is not None:
        raise ConfigError(
            f"{name}='frames.{field}' names a frame-level field, but {type(model).__name__} also runs on "
            "samples taken whole (images, or videos given to a video model), whose labels are sample fields. "
            f"Run it on the videos only (samples.match({{'media_type': 'video'}})) or drop the 'frames.' prefix."
        )
