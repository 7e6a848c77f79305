"""``apply_model`` and ``compute_embeddings``: one loop, two sinks."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import pymongo.errors

from ..errors import ConfigError, DatabaseError, ModelError, PredictionError
from ..fields import check_field_name, label_updates
from ..labels import filter_confidence
from ..mixins import EmbeddingsMixin, LogitsMixin, SamplesMixin, TorchModelMixin
from ..models import Model
from ..image_io import DecodeImage
from .loaders import Gate, _Collate, LoadedBatch, safe_load, threaded_batches, torch_batches
from .report import ApplyReport, Failure
from .source import Record, SampleSource
from .tuning import choose_from_costs, cpu_count, is_light
from .tuning import default_threads as _default_threads, default_workers as _default_workers, uses_cuda as _uses_cuda
from .writer import BackgroundWriter

__all__ = ["apply_model", "compute_embeddings"]

logger = logging.getLogger("modelzoo.engine")

_APPLY_EXTRAS = {"error_field", "num_threads"}


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
def _model_state(model: Any, store_logits: bool) -> Iterator[None]:
    """Sets what the run needs on the model and restores it afterwards."""
    torch_fed = isinstance(model, TorchModelMixin)
    old_pre = model.preprocess
    old_logits = model.store_logits if isinstance(model, LogitsMixin) else None
    if torch_fed:
        model.preprocess = False
    if store_logits:
        model.store_logits = True
    try:
        yield
    finally:
        model.preprocess = old_pre
        if old_logits is not None:
            model.store_logits = old_logits


def _progress_bar(progress: Optional[bool], total: int, desc: str):
    show = progress if progress is not None else sys.stderr.isatty()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="samples", desc=desc, disable=not show, dynamic_ncols=True, smoothing=0.1)


# -- the loop ---------------------------------------------------------------------------
def _input_loader(model: Any) -> Callable[[str], Any]:
    if isinstance(model, TorchModelMixin):
        return model.build_input_loader()
    return DecodeImage(None)  # the model applies its own transforms in predict


def _infer(model: Any, mode: str, inputs: Any, records: List[Record]) -> Any:
    if mode == "embed":
        return model.embed_all(inputs)
    if isinstance(model, SamplesMixin):
        return model.predict_all(inputs, samples=[r.fields or {} for r in records])
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


def _validate(samples: Any, model: Any, batch_size: Optional[int], num_workers: Optional[int]) -> None:
    from ..dataset import SampleCollection

    if not isinstance(samples, SampleCollection):
        raise ConfigError(
            f"samples must be a Dataset or DatasetView, got {type(samples).__name__}. "
            "Build one with Dataset.from_images_dir(...) or Dataset.from_images([...])."
        )
    if not isinstance(model, Model):
        raise ConfigError(
            f"model must implement modelzoo.Model, got {type(model).__name__}. Wrap it in a Model "
            "subclass, a TorchImageModel, or one of the bundle adapters."
        )
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_workers is not None and (not isinstance(num_workers, int) or num_workers < 0):
        raise ConfigError(f"num_workers must be an integer >= 0, got {num_workers!r}")


class _Run:
    """The state of one engine run."""

    def __init__(
        self,
        samples: Any,
        model: Model,
        mode: str,
        write: Callable[[List[Tuple[Record, Any]]], Dict],
        batch_size: Optional[int],
        num_workers: Optional[int],
        num_threads: Optional[int],
        skip_failures: bool,
        progress: Optional[bool],
        query: Optional[Dict[str, Any]] = None,
        error_field: Optional[str] = None,
    ):
        _validate(samples, model, batch_size, num_workers)
        self.samples = samples
        self.model = model
        self.mode = mode
        self.write = write
        self.torch_fed = isinstance(model, TorchModelMixin)
        self.batch_size = batch_size or int(getattr(model, "default_batch_size", None) or 16)
        # On the CPU, with neither count given, the first batch is loaded and
        # predicted in-process to measure what each costs, and the counts for
        # the rest follow from that (tuning.choose_from_costs). A light model
        # is predicted on one thread, beside a worker already loading the next
        # batches; a heavy one (detectors, resnets: compute-bound, they end
        # up with most cores anyway) on every core, its cost per core taken
        # as the measured time times the cores (perfect scaling, which
        # overstates it and so leans further towards threads).
        self.calibrate = (
            self.torch_fed and num_workers is None and num_threads is None and not _uses_cuda(model)
        )
        self.num_workers = _default_workers(model) if num_workers is None else num_workers
        self.num_threads = num_threads
        self._calibration_threads = 1 if is_light(model) else cpu_count()
        if self.calibrate:
            self.num_threads = self._calibration_threads
        elif self.num_threads is None and self.torch_fed and not _uses_cuda(model):
            self.num_threads = _default_threads(model, self.num_workers)
        self._first_model_s: Optional[float] = None
        self.skip_failures = skip_failures
        self.progress = progress
        self.error_field = check_field_name(error_field) if error_field else None
        needs = tuple(model.needs_fields.items()) if isinstance(model, SamplesMixin) else ()
        base = samples._filter()
        self.source = SampleSource(
            samples.name, {"$and": [base, query]} if query else base, needs, page_size=max(256, self.batch_size * 4)
        )
        self.report = ApplyReport()
        self.load_fn = _input_loader(model)

    def _batches(self) -> Iterator[LoadedBatch]:
        record_batches = iter(self.source.batches(self.batch_size))
        if not self.torch_fed:
            return threaded_batches(record_batches, self.load_fn, max(1, self.num_workers or 1))
        if self.calibrate:
            return self._calibrated_batches(record_batches)
        return torch_batches(
            record_batches, self.load_fn, self.model.collate_fn, self.num_workers, pin_memory=_uses_cuda(self.model)
        )

    def _calibrated_batches(self, record_batches: Iterator[List[Record]]) -> Iterator[LoadedBatch]:
        first = next(record_batches, None)
        if first is None:
            return
        t0 = time.perf_counter()
        items = [safe_load(self.load_fn, r) for r in first]
        load_s = (time.perf_counter() - t0) / len(first)
        # For a light model, one worker (the least any choice has) starts on
        # the next batches while the model runs the first on one thread,
        # instead of a core idling until the counts are known. It carries on
        # if one worker is the choice; otherwise it finishes what it started
        # and a loader with the chosen count takes over the remaining batches.
        # (A heavy model's first batch runs on every core: nothing is spare.)
        gate = Gate(record_batches)
        early: Iterator[LoadedBatch] = iter(())
        if self._calibration_threads == 1:
            early = torch_batches(gate, self.load_fn, self.model.collate_fn, 1)
        yield _Collate(self.model.collate_fn)(items)  # the loop times its inference
        if self._first_model_s is not None:
            model_s = self._first_model_s * self._calibration_threads  # per core
            self.num_workers, self.num_threads = choose_from_costs(load_s, model_s, cpu_count())
        else:  # nothing in the first batch could be predicted: fall back to the static rule
            self.num_threads = _default_threads(self.model, self.num_workers)
        import torch

        torch.set_num_threads(self.num_threads)  # restored by _torch_threads when the run ends
        logger.info(
            "Measured %.1f ms/sample to load and %s ms/sample to predict on %d thread(s): "
            "using %d loader workers and %d torch threads",
            load_s * 1e3, "?" if self._first_model_s is None else f"{self._first_model_s * 1e3:.1f}",
            self._calibration_threads, self.num_workers, self.num_threads,
        )
        if self.num_workers != 1 or self._calibration_threads != 1:
            gate.close()
        yield from early
        if not gate.closed:
            return
        yield from torch_batches(record_batches, self.load_fn, self.model.collate_fn, self.num_workers)

    def _fail(self, record: Record, message: str, stage: str, errors: Dict[Any, Dict[str, Any]]) -> None:
        if not self.skip_failures:
            raise PredictionError(record.sample_id, record.filepath, message)
        logger.debug("Sample %s (%s) failed to %s: %s", record.sample_id, record.filepath, stage, message)
        self.report.failed += 1
        self.report.failures.append(Failure(str(record.sample_id), record.filepath, message, stage))
        if self.error_field:
            errors[record.sample_id] = {self.error_field: message}

    def _one_by_one(self, batch: LoadedBatch, errors: Dict) -> List[Tuple[Record, Any]]:
        """After a batch failed: predict each sample alone, so one bad input costs one sample."""
        done = []
        for record in batch.records:
            try:
                if self.torch_fed:
                    rec, ok, item = safe_load(self.load_fn, record)
                    if not ok:
                        self._fail(record, item, "load", errors)
                        continue
                    inputs = self.model.collate_fn([item])
                else:
                    inputs = [self.load_fn(record.filepath)]
                out = _infer(self.model, self.mode, inputs, [record])
                _check_count(self.model, out, 1)
                done.append((record, out[0]))
            except ModelError:
                raise
            except Exception as e:
                self._fail(record, f"{type(e).__name__}: {e}", "predict", errors)
        return done

    def run(self) -> ApplyReport:
        total = self.source.count()
        writer = BackgroundWriter(self.write)
        bar = _progress_bar(self.progress, total, "embed" if self.mode == "embed" else "apply")
        logger.info(
            "Running %s on %d samples of %r (batch %d, %d workers, %s torch threads)",
            type(self.model).__name__, total, self.samples.name, self.batch_size, self.num_workers, self.num_threads,
        )
        try:
            with _torch_threads(self.num_threads), self.model:
                for batch in self._batches():
                    errors: Dict[Any, Dict[str, Any]] = {}
                    for record, message in batch.failures:
                        self._fail(record, message, "load", errors)
                    done: List[Tuple[Record, Any]] = []
                    if batch.records:
                        try:
                            t0 = time.perf_counter()
                            outputs = _infer(self.model, self.mode, batch.inputs, batch.records)
                            if self._first_model_s is None:
                                self._first_model_s = (time.perf_counter() - t0) / len(batch.records)
                            _check_count(self.model, outputs, len(batch.records))
                            done = list(zip(batch.records, outputs))
                        except ModelError:
                            raise
                        except Exception as e:
                            if not self.skip_failures and len(batch.records) == 1:
                                r = batch.records[0]
                                raise PredictionError(r.sample_id, r.filepath, f"{type(e).__name__}: {e}") from e
                            # isolate the failing sample(s); without skip_failures this raises naming it
                            done = self._one_by_one(batch, errors)
                    self.report.processed += len(done)
                    writer.submit((done, errors))
                    bar.update(len(batch.records) + len(batch.failures))
        except BaseException as e:
            bar.close()
            try:
                writer.close(timeout=60)  # keep every finished batch (Ctrl-C included)
            except Exception as write_error:
                logger.error("Could not store the last batches: %s", write_error)
            if isinstance(e, pymongo.errors.PyMongoError):
                raise DatabaseError(
                    f"Lost the database while running {type(self.model).__name__} on {self.samples.name!r} "
                    f"({self.report.processed} samples done): {type(e).__name__}: {e}. Every batch written "
                    "before is kept; once the database is back, rerun with skip_existing=True to finish."
                ) from e
            raise
        bar.close()
        try:
            writer.close()
        except pymongo.errors.PyMongoError as e:
            raise DatabaseError(
                f"Lost the database while storing the last batches of {self.samples.name!r}: {e}. "
                "Rerun with skip_existing=True once it is back."
            ) from e
        if self.report.failed:
            logger.warning(
                "%d of %d samples failed (the returned report lists each one); first: %s",
                self.report.failed, total, self.report.failures[0],
            )
        logger.info("%s", self.report)
        return self.report


def _resolve_model_opts(model: Model, mode: str, store_logits: bool) -> None:
    if mode == "embed" and not (isinstance(model, EmbeddingsMixin) and model.has_embeddings):
        raise ModelError(
            f"{type(model).__name__} cannot compute embeddings (it does not implement EmbeddingsMixin "
            "or has_embeddings is False); for a TorchImageModel set embeddings_layer in its config."
        )
    if store_logits and not (isinstance(model, LogitsMixin) and model.has_logits):
        raise ModelError(
            f"{type(model).__name__} does not produce logits, so store_logits=True cannot be honoured. "
            "Call apply_model without store_logits."
        )


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
    **kwargs: Any,
) -> ApplyReport:
    """Runs ``model`` on ``samples`` and stores its labels on them.

    Args:
        samples: a Dataset or DatasetView.
        model: any :class:`~modelzoo.Model`.
        label_field: where a Label goes; for a dict of Labels, the prefix
            (``label_field + "_" + key``) or a ``{key: field}`` mapping.
        confidence_thresh: drop predictions below this confidence.
        store_logits: keep logits on the labels (the model must have them).
        batch_size: inputs per ``predict_all`` call (default: the model's
            ``default_batch_size``, else 16).
        num_workers: loader processes (TorchModelMixin models) or decoding
            threads (others); chosen from the machine when None.
        skip_failures: a sample that cannot be read or predicted costs that
            sample only and is listed in the report; False raises
            :class:`~modelzoo.PredictionError` naming it.
        skip_existing: only process samples that lack ``label_field``
            (resume an interrupted run).
        progress: show a progress bar (default: when stderr is a terminal).
        **kwargs: ``error_field`` (record each failure's message on its sample
            in this field) and ``num_threads`` (torch threads for the forward).

    Returns:
        an :class:`ApplyReport`.
    """
    unknown = set(kwargs) - _APPLY_EXTRAS
    if unknown:
        from ..errors import did_you_mean

        name = sorted(unknown)[0]
        raise ConfigError(
            f"apply_model() got an unexpected argument {name!r}." + did_you_mean(name, _APPLY_EXTRAS)
            + f" Extra arguments it takes: {sorted(_APPLY_EXTRAS)}."
        )
    if confidence_thresh is not None and not 0 <= confidence_thresh <= 1:
        raise ConfigError(f"confidence_thresh must be in [0, 1], got {confidence_thresh!r}")
    _validate(samples, model, batch_size, num_workers)
    _resolve_model_opts(model, "predict", store_logits)

    query = None
    if skip_existing:
        if isinstance(label_field, str):
            query = {label_field: None}
        elif isinstance(label_field, Mapping) and label_field:
            query = {"$or": [{f: None} for f in label_field.values()]}

    dataset = samples.dataset if hasattr(samples, "dataset") else None

    def write(item: Tuple[List[Tuple[Record, Any]], Dict]) -> None:
        done, errors = item
        updates: Dict[Any, Dict[str, Any]] = dict(errors)
        for record, output in done:
            if confidence_thresh is not None:
                output = (
                    {k: filter_confidence(v, confidence_thresh) for k, v in output.items()}
                    if isinstance(output, Mapping)
                    else filter_confidence(output, confidence_thresh)
                )
            fields = label_updates(output, label_field)
            updates[record.sample_id] = fields
        if updates:
            dataset._bulk_set(updates)

    with _model_state(model, store_logits):
        run = _Run(
            samples, model, "predict", write, batch_size, num_workers, kwargs.get("num_threads"),
            skip_failures, progress, query=query, error_field=kwargs.get("error_field"),
        )
        if skip_existing:
            run.report.skipped = len(samples) - run.source.count()
        return run.run()


def compute_embeddings(
    samples: Any,
    model: Model,
    embeddings_field: Optional[str] = None,
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    skip_failures: bool = True,
    progress: Optional[bool] = None,
    **kwargs: Any,
) -> Union[np.ndarray, ApplyReport]:
    """Embeds ``samples`` with ``model`` (an :class:`~modelzoo.EmbeddingsMixin`).

    Returns:
        without ``embeddings_field``: a float32 ``(N, D)`` array in sample
        order (rows of failed samples are NaN; they are logged). With it: the
        embeddings are stored on each sample and an :class:`ApplyReport` is
        returned.
    """
    unknown = set(kwargs) - _APPLY_EXTRAS
    if unknown:
        raise ConfigError(f"compute_embeddings() got unexpected arguments {sorted(unknown)}; it takes {sorted(_APPLY_EXTRAS)}")
    _validate(samples, model, batch_size, num_workers)
    _resolve_model_opts(model, "embed", False)
    dataset = samples.dataset if hasattr(samples, "dataset") else None
    rows: Dict[int, np.ndarray] = {}

    def write(item: Tuple[List[Tuple[Record, Any]], Dict]) -> None:
        done, errors = item
        if embeddings_field is None:
            for record, vector in done:
                rows[record.index] = np.asarray(vector, dtype=np.float32)
            return
        updates: Dict[Any, Dict[str, Any]] = dict(errors)
        for record, vector in done:
            updates[record.sample_id] = {embeddings_field: np.asarray(vector, dtype=np.float32)}
        if updates:
            dataset._bulk_set(updates)

    if embeddings_field is not None:
        check_field_name(embeddings_field)
    with _model_state(model, False):
        run = _Run(
            samples, model, "embed", write, batch_size, num_workers, kwargs.get("num_threads"),
            skip_failures, progress, error_field=kwargs.get("error_field"),
        )
        report = run.run()
    if embeddings_field is not None:
        return report
    n = report.processed + report.failed
    dims = {v.shape for v in rows.values()}
    if len(dims) > 1:
        raise ModelError(f"{type(model).__name__} returned embeddings of different shapes: {sorted(dims)}")
    shape = dims.pop() if dims else (0,)
    out = np.full((n,) + shape, np.nan, dtype=np.float32)
    for index, vector in rows.items():
        out[index] = vector
    return out
