"""The backend registry: names and runner objects, duplicates refused, unknown
names listed, and Ray's entry points the engine's own (nothing copied)."""

from __future__ import annotations

import inspect
from typing import Any, List, Mapping, Optional

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.engine import (
    Runner,
    RunOptions,
    Sink,
    Source,
    available_backends,
    get_backend,
    register_backend,
    run_model,
)
from modelzoo.engine import backends as _backends
from tests.images import write_good_images


class Brightness(mz.Model):
    def predict(self, arg: Any) -> mz.Classification:
        return mz.Classification(label="x", confidence=float(np.asarray(arg).mean()) / 255.0)


class Recording(Runner):
    """The local run, recording what it was handed."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: List[Any] = []

    def check_options(self, backend_options: Optional[Mapping[str, Any]]) -> None:
        if backend_options is not None and "bad" in backend_options:
            raise mz.ConfigError("recording: no 'bad' option")

    def run(self, source: Source, model: mz.Model, sink: Sink, options: RunOptions,
            backend_options: Optional[Mapping[str, Any]] = None) -> mz.ApplyReport:
        self.calls.append((options, backend_options))
        return run_model(source, model, sink, options)


@pytest.fixture
def dataset(tmp_path):
    ds = mz.Dataset("engine-backends", overwrite=True)
    ds.add_images(write_good_images(str(tmp_path), n=3, size=(32, 24)))
    yield ds
    ds.delete()


@pytest.fixture
def registered():
    runner = Recording()
    register_backend("recording-test", runner)
    yield runner
    _backends._registry.pop("recording-test", None)


def test_a_registered_name_and_a_runner_object_both_run(dataset, registered):
    report = dataset.apply_model(Brightness(), label_field="by_name", backend="recording-test", num_workers=0,
                                 store_logits=False, ray_options={"k": 1})
    assert report.processed == 3 and len(registered.calls) == 1
    options, backend_options = registered.calls[0]
    assert options.mode == "predict" and backend_options == {"k": 1}
    other = Recording()
    dataset.apply_model(Brightness(), label_field="by_object", backend=other, num_workers=0)
    assert len(other.calls) == 1
    for sample in dataset:
        with Image.open(sample.filepath) as img:
            mean = float(np.asarray(img.convert("RGB"), dtype=np.float64).mean()) / 255.0
        assert sample.by_name.confidence == pytest.approx(mean) and sample.by_object.confidence == pytest.approx(mean)
    with pytest.raises(mz.ConfigError, match="no 'bad' option"):
        dataset.apply_model(Brightness(), label_field="never", backend="recording-test", ray_options={"bad": 1})
    assert dataset.count("never") == 0


def test_duplicates_are_refused_and_unknown_names_list_the_choices(registered):
    with pytest.raises(mz.ConfigError, match="already registered.*overwrite=True"):
        register_backend("recording-test", Recording())
    replacement = Recording()
    register_backend("recording-test", replacement, overwrite=True)
    assert get_backend("recording-test") is replacement
    assert {"local", "ray", "recording-test"} <= set(available_backends())
    with pytest.raises(mz.ConfigError, match=r"backend must be one of .*'local', .*'ray', 'recording-test'.*, got 'rey'"):
        get_backend("rey")
    with pytest.raises(mz.ConfigError, match="must be a modelzoo.engine.Runner"):
        register_backend("thing", object())  # type: ignore[arg-type]


def test_ray_is_registered_by_name_and_its_entry_points_are_the_engines():
    import modelzoo.ray

    runner = get_backend("ray")
    assert isinstance(runner, modelzoo.ray.RayRunner) and runner.name == "ray"
    for name in ("apply_model", "compute_embeddings"):
        alias = getattr(modelzoo.ray, name)
        # no copied parameter list: the alias takes whatever the engine's function takes
        assert list(inspect.signature(alias, follow_wrapped=False).parameters) == ["args", "kwargs"]
        assert alias.__wrapped__ is getattr(mz.engine, name)
