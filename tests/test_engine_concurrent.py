"""One model object, two callers with different options at once: a serving
``Batcher`` (no logits) and an ``apply_model`` run (``store_logits=True``).

A run's options travel with each call (:class:`modelzoo.Call`), so the model
is never changed by a run: the batcher's answer, given while the run is
between two of its batches, has no logits, and every label of the run has
them. The run is paused by its own loader (a run option too, handed in by a
:class:`~modelzoo.engine.Runner` passed as ``backend=``), on threading events.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Dict, List, Mapping, Optional

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.engine import Runner, RunOptions, Sink, Source, run_model
from modelzoo.loaders import Loader, WorkItem
from modelzoo.models import Model
from modelzoo.serving import Batcher
from modelzoo.testing import TASKS
from modelzoo.torch_image import TorchImageModel
from tests.images import write_photos

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera")


class PausingLoader(Loader):
    """The model's own loader, pausing before the run's second item: it says
    so (``paused``) and waits for ``resume``."""

    def __init__(self, inner: Loader, paused: threading.Event, resume: threading.Event):
        self.inner, self.paused, self.resume = inner, paused, resume
        self.loaded = 0

    def load(self, item: WorkItem) -> Any:
        self.loaded += 1
        if self.loaded == 2:
            self.paused.set()
            assert self.resume.wait(60), "the test never resumed the run"
        return self.inner.load(item)

    def collate(self, inputs: Any) -> Any:
        return self.inner.collate(inputs)


class PausingRunner(Runner):
    """The local run, loading through a :class:`PausingLoader` (the loader seam of RunOptions)."""

    name = "pausing"

    def __init__(self) -> None:
        self.paused = threading.Event()
        self.resume = threading.Event()

    def run(
        self,
        source: Source,
        model: Model,
        sink: Sink,
        options: RunOptions,
        backend_options: Optional[Mapping[str, Any]] = None,
    ) -> mz.ApplyReport:
        loader = PausingLoader(model.build_loader(), self.paused, self.resume)
        return run_model(source, model, sink, dataclasses.replace(options, loader=loader))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> List[str]:
    return write_photos(str(tmp_path_factory.mktemp("concurrent")), PHOTOS)


def _decoded(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _model() -> TorchImageModel:
    return TorchImageModel({**TASKS["classification"], "device": "cpu", "optimize": False})


def test_a_batcher_and_an_apply_model_share_one_model_with_their_own_options(photos):
    # references: a second model of the same seeds, asked for logits, on PIL's decoding
    reference = _model()
    reference.store_logits = True
    refs: Dict[str, Any] = {p: reference.predict(_decoded(p)) for p in photos}

    model = _model()
    ds = mz.Dataset("engine-concurrent", overwrite=True)
    try:
        ds.add_images(photos)
        runner = PausingRunner()
        outcome: Dict[str, Any] = {}

        def apply() -> None:
            try:
                outcome["report"] = ds.apply_model(
                    model, label_field="p", store_logits=True, batch_size=1, num_workers=0, num_threads=1,
                    skip_failures=False, progress=False, backend=runner,
                )
            except BaseException as e:  # reported by the test thread
                outcome["error"] = e

        run = threading.Thread(target=apply)
        with Batcher(model, max_batch_size=4, max_wait_ms=1) as batcher:
            run.start()
            try:
                assert runner.paused.wait(60), outcome.get("error", "the run never reached its second item")
                served = batcher(_decoded(photos[1]))  # the run has predicted its first batch, and waits
            finally:
                runner.resume.set()
                run.join(120)
        assert not run.is_alive()
        assert "error" not in outcome, outcome.get("error")
        assert outcome["report"].processed == len(photos)

        # the batcher's answer: the right label, and no logits (it did not ask)
        ref = refs[photos[1]]
        assert isinstance(served, mz.Classification)
        assert served.label == ref.label and served.confidence == pytest.approx(ref.confidence, abs=1e-5)
        assert served.logits is None
        # the run's labels, before and after the batcher's call: each with its logits
        for sample in ds:
            got, ref = sample["p"], refs[sample.filepath]
            assert got.label == ref.label and got.confidence == pytest.approx(ref.confidence, abs=1e-5)
            assert got.logits is not None
            np.testing.assert_allclose(got.logits, ref.logits, atol=1e-5)
        # and the model itself was never switched
        assert model.store_logits is False and model.output_processor.store_logits is False
    finally:
        ds.delete()
