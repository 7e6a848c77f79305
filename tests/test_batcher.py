"""The batcher: many threads, one input each, batched through predict_all.

Real photographs (scikit-image's), real decoding, a real seeded torch
classifier; synchronised with events and semaphores, never with sleeps.
"""

from __future__ import annotations

import io
import threading
from typing import Any, List, Optional

import numpy as np
import pydantic
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.loaders import BytesLoader, PathLoader
from modelzoo.serving import (
    Batcher,
    BatcherClosedError,
    InputError,
    OutputCountError,
    RequestValidationError,
    ServingError,
)
from modelzoo.testing import TASKS
from modelzoo.torch_image import TorchImageModel
from tests.images import write_bad_images, write_photos

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "camera", "coins")


class GatedClassifier(TorchImageModel):
    """The tiny seeded classifier, recording every batch it gets; its first
    batch waits on ``gate`` (so that the other requests queue behind it)."""

    def __init__(self, **overrides: Any):
        super().__init__({**TASKS["classification"], "device": "cpu", "optimize": False, **overrides})
        self.gate = threading.Event()
        self.batches: List[int] = []

    def predict_all(self, args: Any) -> List[Any]:
        self.batches.append(len(args))
        if len(self.batches) == 1:
            assert self.gate.wait(60), "the test never opened the gate"
        return super().predict_all(args)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> List[str]:
    """One real photograph per file, JPEG and PNG, at their own sizes."""
    return write_photos(str(tmp_path_factory.mktemp("photos")), PHOTOS)


def _decoded(path: str) -> np.ndarray:
    """The test's own decoding: PIL, RGB (the reference the batcher must agree with)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _references(files: List[str]) -> List[Any]:
    alone = TorchImageModel({**TASKS["classification"], "device": "cpu", "optimize": False})
    refs = [alone.predict(_decoded(p)) for p in files]
    confidences = [r.confidence for r in refs]
    # the check below can tell the images' answers apart
    assert min(abs(a - b) for i, a in enumerate(confidences) for b in confidences[i + 1:]) > 1e-4
    return refs


def _as_sent(i: int, path: str) -> Any:
    """Caller i sends its photograph as a path, the file's bytes, or a decoded array."""
    form = i % 3
    if form == 0:
        return path
    if form == 1:
        return open(path, "rb").read()
    return _decoded(path)


def _send_all(batcher: Batcher, inputs: List[Any], gate: Optional[threading.Event]) -> List[Any]:
    """One thread per input, each calling ``batcher.submit`` then waiting for
    its answer; the gate opens once every input is queued. Returns each
    caller's output or exception."""
    results: List[Any] = [None] * len(inputs)
    submitted = threading.Semaphore(0)

    def caller(i: int) -> None:
        future = batcher.submit(inputs[i])
        submitted.release()
        try:
            results[i] = future.result(60)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for _ in inputs:
        assert submitted.acquire(timeout=60)
    if gate is not None:
        gate.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return results


def test_64_threads_each_get_the_label_of_their_own_image(files):
    refs = _references(files)
    model = GatedClassifier()
    inputs = [_as_sent(i, files[i % len(files)]) for i in range(64)]
    with Batcher(model, max_batch_size=16, max_wait_ms=2) as batcher:
        results = _send_all(batcher, inputs, model.gate)
        stats = batcher.stats
    for i, out in enumerate(results):
        ref = refs[i % len(files)]
        assert isinstance(out, mz.Classification), out
        assert out.label == ref.label and out.confidence == pytest.approx(ref.confidence, abs=1e-5), (i, out, ref)
    assert sum(model.batches) == 64 and max(model.batches) > 1 and max(model.batches) <= 16
    assert stats.requests == 64 and stats.failed == 0 and sum(k * v for k, v in stats.batch_sizes.items()) == 64


def test_a_corrupt_image_fails_only_its_caller(files, tmp_path):
    refs = _references(files)
    bad = write_bad_images(str(tmp_path))
    model = GatedClassifier()
    inputs: List[Any] = [_as_sent(i, files[i % len(files)]) for i in range(64)]
    inputs[5] = open(bad["corrupt_jpeg"], "rb").read()  # bytes that are no JPEG
    inputs[40] = bad["truncated_png"]                      # a path to a truncated file
    with Batcher(model, max_batch_size=16, max_wait_ms=2) as batcher:
        results = _send_all(batcher, inputs, model.gate)
    assert isinstance(results[5], InputError) and results[5].field == "image", results[5]
    assert isinstance(results[40], InputError) and results[40].field == "path"
    assert "truncated.png" in str(results[40])
    for i, out in enumerate(results):
        if i not in (5, 40):
            ref = refs[i % len(files)]
            assert out.label == ref.label and out.confidence == pytest.approx(ref.confidence, abs=1e-5), (i, out)
    assert sum(model.batches) == 62


def test_an_input_that_makes_predict_all_raise_costs_its_caller_only(files):
    refs = _references(files)
    model = GatedClassifier()
    model.gate.set()  # no hold: the batch goes when full (max_wait_ms is long)
    inputs: List[Any] = [_decoded(files[i % len(files)]) for i in range(8)]
    inputs[3] = np.zeros((8, 8, 5), dtype=np.uint8)   # five channels: TorchImageModel refuses it
    with Batcher(model, max_batch_size=8, max_wait_ms=60_000) as batcher:
        results = _send_all(batcher, inputs, None)
        stats = batcher.stats
    assert isinstance(results[3], mz.ModelError) and "(8, 8, 5)" in str(results[3])
    for i, out in enumerate(results):
        if i != 3:
            assert out.label == refs[i].label and out.confidence == pytest.approx(refs[i].confidence, abs=1e-5)
    assert model.batches == [8] + [1] * 8      # the batch raised, then each input ran alone
    assert stats.retried_batches == 1 and stats.failed == 1


class Doubler(mz.Model):
    """x -> 2x, recording each batch; ``bad`` inputs raise."""

    def __init__(self, bad=(), drop_one: bool = False, key=None):
        super().__init__()
        self.calls: List[List[Any]] = []
        self.bad, self.drop_one, self.key = set(bad), drop_one, key
        self.entered = self.exited = 0
        self.lock = threading.Lock()

    def build_loader(self):
        return _NoLoader()

    def __enter__(self):
        self.entered += 1
        return self

    def __exit__(self, *exc):
        self.exited += 1

    def batch_key(self, arg):
        return None if self.key is None else self.key(arg)

    def predict(self, arg):
        return self.predict_all([arg])[0]

    def predict_all(self, args):
        with self.lock:
            self.calls.append(list(args))
        for a in args:
            if a in self.bad:
                raise ValueError(f"cannot double {a}")
        out = [2 * a for a in args]
        return out[:-1] if self.drop_one else out


class _NoLoader(mz.loaders.Loader):
    def load(self, item):
        return item


def test_a_wrong_output_count_names_the_model_and_both_counts():
    model = Doubler(drop_one=True)
    with Batcher(model, max_batch_size=4, max_wait_ms=60_000, name="doubler") as batcher:
        futures = [batcher.submit(i) for i in range(4)]
        errors = [f.exception(60) for f in futures]
    assert all(isinstance(e, OutputCountError) for e in errors)
    assert errors[0].inputs == 4 and errors[0].outputs == 3
    assert "'doubler'" in str(errors[0]) and "4 inputs" in str(errors[0]) and "3 outputs" in str(errors[0])


def test_inputs_with_different_keys_never_share_a_batch_and_close_answers_the_queue():
    model = Doubler(key=lambda x: x % 3)
    batcher = Batcher(model, max_batch_size=4, max_wait_ms=60_000)
    futures = [batcher.submit(i) for i in range(30)]
    batcher.close()  # nothing has waited 60 s: close runs what is queued
    assert [f.result(0) for f in futures] == [2 * i for i in range(30)]
    assert sorted(x for call in model.calls for x in call) == list(range(30))
    for call in model.calls:
        assert len(call) <= 4 and len({x % 3 for x in call}) == 1, call
        assert call == sorted(call)  # oldest first within a group
    assert model.entered == 1 and model.exited == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("modelzoo-batcher")]
    late = batcher.submit(1)
    assert isinstance(late.exception(0), BatcherClosedError)
    batcher.close()  # idempotent


def test_model_batcher_is_a_deprecated_alias_of_serving_batcher():
    model = Doubler()
    with pytest.warns(DeprecationWarning, match=r"modelzoo\.serving\.Batcher\(model"):
        batcher = model.batcher(max_batch_size=3, max_wait_ms=60_000, name="old-spelling")
    with batcher:
        assert type(batcher) is Batcher and batcher.model is model
        assert (batcher.name, batcher.max_batch_size, batcher.max_wait_ms) == ("old-spelling", 3, 60_000)
        assert [f.result(60) for f in [batcher.submit(i) for i in range(3)]] == [0, 2, 4]
    assert model.calls == [[0, 1, 2]]


def test_close_with_cancel_pending_fails_the_queued_requests_clearly():
    gate = threading.Event()
    taken = threading.Event()

    class Held(Doubler):
        def predict_all(self, args):
            taken.set()
            assert gate.wait(60)
            return super().predict_all(args)

    batcher = Batcher(Held(), max_batch_size=1, max_wait_ms=0, name="held")
    first = batcher.submit(1)
    assert taken.wait(60)               # the first request runs, held
    queued = [batcher.submit(i) for i in range(2, 6)]
    with pytest.raises(ServingError, match="did not stop within 0 s"):
        batcher.close(timeout=0, cancel_pending=True)
    gate.set()
    batcher.close()
    assert first.result(0) == 2         # the one running was answered
    for f in queued:
        e = f.exception(0)
        assert isinstance(e, BatcherClosedError) and "'held' is closed" in str(e)


def test_a_model_that_fails_to_enter_fails_the_batcher_at_once():
    class Broken(Doubler):
        def __enter__(self):
            raise RuntimeError("weights missing")

    with pytest.raises(RuntimeError, match="weights missing"):
        Batcher(Broken())
    assert not [t for t in threading.enumerate() if t.name.startswith("modelzoo-batcher")]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(Doubler(), max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait_ms"):
        Batcher(Doubler(), max_wait_ms=-1)


class Prompt(pydantic.BaseModel):
    text: str
    width: int = pydantic.Field(128, ge=64)


class Echo(mz.Model):
    """A typed model: Prompt in, Reply out, batched by width."""

    request_schema = Prompt

    def __init__(self):
        super().__init__()
        self.calls: List[List[Prompt]] = []

    def batch_key(self, arg):
        return arg.width

    def predict(self, arg):
        return self.predict_all([arg])[0]

    def predict_all(self, args):
        self.calls.append(list(args))
        assert all(isinstance(a, Prompt) for a in args)
        return [{"text": a.text.upper(), "width": a.width} for a in args]


def test_a_typed_model_gets_validated_instances_grouped_by_key():
    model = Echo()
    with Batcher(model, max_batch_size=8, max_wait_ms=60_000) as batcher:
        good = [batcher.submit({"text": f"t{i}", "width": 64 + 64 * (i % 2)}) for i in range(6)]
        bad = batcher.submit({"text": "x", "width": 10})
    assert [f.result(0)["text"] for f in good] == [f"T{i}" for i in range(6)]
    e = bad.exception(0)
    assert isinstance(e, RequestValidationError) and e.field == "width" and "Prompt" in str(e)
    assert all(len({a.width for a in call}) == 1 for call in model.calls)


def test_inputs_are_given_as_the_models_loader_would(files):
    class Sizes(mz.Model):
        def build_loader(self):
            return BytesLoader()

        def predict(self, data: bytes):
            return Image.open(io.BytesIO(data)).size

    class Paths(mz.Model):
        def build_loader(self):
            return PathLoader()

        def predict(self, path: str):
            return path

    with Batcher(Sizes()) as batcher:
        assert batcher(files[1]) == Image.open(files[1]).size          # a path is read for a bytes model
        with pytest.raises(InputError, match="BytesLoader"):
            batcher(np.zeros((4, 4, 3), np.uint8))
    with Batcher(Paths(), name="paths") as batcher:
        assert batcher(files[0]) == files[0]
        with pytest.raises(InputError, match="'paths' takes a path"):
            batcher(b"\x89PNG")
        with pytest.raises(InputError, match="file not found"):
            batcher(files[0] + ".missing")


def test_a_cancelled_request_is_dropped_before_it_runs():
    model = Doubler()
    batcher = Batcher(model, max_batch_size=2, max_wait_ms=60_000)
    withdrawn = batcher.submit(1)
    assert withdrawn.cancel()                 # still queued: a batch needs two
    kept = [batcher.submit(2), batcher.submit(3)]
    batcher.close()
    assert [f.result(0) for f in kept] == [4, 6]
    assert [x for call in model.calls for x in call] == [2, 3]
    assert batcher.stats.cancelled == 1
