"""TorchImageModel under the engine: the shared model contract for every task,
and apply_model/compute_embeddings through DataLoader workers compared with
predict() on the same decoded images (an independent path: no DataLoader,
no collate, no engine)."""

import numpy as np
import pytest

import modelzoo as mz
from modelzoo.fields import label_updates
from modelzoo.image_io import read_image
from modelzoo.testing import TASKS, tiny_model
from tests.contract import ModelContract, _assert_same
from tests.images import write_bad_images, write_good_images, write_odd_images
from tests.test_engine import _small_photos


def _contract_for(task, optimize):
    class Contract(ModelContract):
        atol = 1e-4

        def make_model(self):
            return tiny_model(task, optimize=optimize)

        def inputs(self):
            return _small_photos(4 if "detect" in task or "segment" in task or "keypoint" in task else 7)

    Contract.__name__ = f"Test{task.title().replace('_', '')}Contract{'Optimized' if optimize else ''}"
    return Contract


for _task in TASKS:
    for _opt in (False, True):
        _cls = _contract_for(_task, _opt)
        globals()[_cls.__name__] = _cls


@pytest.fixture(scope="module")
def mixed_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch-engine")
    good = write_good_images(str(root / "good"), n=6, size=(96, 72))
    odd = write_odd_images(str(root / "odd"))
    bad = write_bad_images(str(root / "bad"))
    ds = mz.Dataset("torch-engine-mixed", overwrite=True)
    ds.add_images(good + list(odd.values()) + list(bad.values()))
    yield ds, good + list(odd.values()), list(bad.values())
    ds.delete()


@pytest.mark.parametrize("task", sorted(TASKS))
def test_apply_model_with_workers_matches_predict(mixed_dataset, task):
    ds, readable, bad = mixed_dataset
    model = tiny_model(task)
    field = "p_" + task
    report = ds.apply_model(model, label_field=field, batch_size=4, num_workers=2, progress=False)
    assert report.processed == len(readable) and report.failed == len(bad)
    assert {f.filepath for f in report.failures} == set(bad)
    reference = tiny_model(task)
    by_path = {s.filepath: s for s in ds}
    with reference:
        for path in readable:
            expected = reference.predict(read_image(path))
            for name, value in label_updates(expected, field).items():  # dict outputs: field_key
                _assert_same(by_path[path][name], value, atol=1e-4)


def test_compute_embeddings_with_workers_matches_embed(mixed_dataset):
    ds, readable, bad = mixed_dataset
    model = tiny_model("classification")
    emb = ds.compute_embeddings(model, batch_size=3, num_workers=2, progress=False)
    paths = ds.values("filepath")
    reference = tiny_model("classification")
    for path, row in zip(paths, emb):
        if path in bad:
            assert np.isnan(row).all()
        else:
            np.testing.assert_allclose(row, reference.embed(read_image(path)), atol=1e-4, rtol=1e-4)


def test_store_logits_through_the_engine(mixed_dataset):
    ds, readable, _ = mixed_dataset
    ds.apply_model(tiny_model("classification"), label_field="with_logits", store_logits=True, progress=False)
    logits = [c.logits for c in ds.exists("with_logits").values("with_logits")]
    assert len(logits) == len(readable) and all(l is not None and l.ndim == 1 for l in logits)


@pytest.mark.parametrize("chosen", [(1, 1), (2, 1)])
def test_calibration_hands_over_every_batch_once(mixed_dataset, monkeypatch, chosen):
    # With no counts given, the first batch is predicted in-process while a
    # provisional one-worker loader starts on the next ones; a choice of more
    # workers hands the rest to a second loader. Nothing may be lost or repeated.
    from modelzoo.engine import tuning

    ds, readable, bad = mixed_dataset
    monkeypatch.setattr(tuning, "choose_from_costs", lambda load_s, model_s, cores: chosen)
    calls = []
    model = tiny_model("classification")
    predict_all = model.predict_all
    monkeypatch.setattr(model, "predict_all", lambda batch: calls.append(len(batch)) or predict_all(batch))
    field = f"calibrated_{chosen[0]}"
    report = ds.apply_model(model, label_field=field, batch_size=2, progress=False)
    assert report.processed == len(readable) and report.failed == len(bad)
    assert sum(calls) == len(readable)  # each readable sample predicted exactly once
    reference = tiny_model("classification")
    for sample in ds:
        if sample.filepath in readable:
            _assert_same(sample[field], reference.predict(read_image(sample.filepath)), atol=1e-4)


def test_optimize_auto_builds_the_graph_for_long_runs_only(mixed_dataset, monkeypatch):
    from modelzoo.optimize import keeps_graph
    from modelzoo.torch_image import ENV_OPTIMIZE_MIN_SAMPLES, optimize_min_samples

    ds, readable, _ = mixed_dataset
    eager = tiny_model("classification", optimize=False)
    short = tiny_model("classification", optimize_min_samples=len(ds) + 1)
    assert short.optimization == "eager"
    short.predict(read_image(readable[0]))  # one predict builds nothing
    assert short.optimization == "eager"
    ds.apply_model(short, label_field="auto_short", progress=False)
    assert short.optimization == "eager"  # a run shorter than the threshold stays eager
    long = tiny_model("classification", optimize_min_samples=len(ds))
    ds.apply_model(long, label_field="auto_long", progress=False)
    decision = long.optimization_decision  # considered for the run: verified, timed against eager
    assert decision is not None and decision.kind == long.optimization
    for kind, (eager_ms, ms) in decision.timings.items():  # kept iff measured faster by the margin
        assert keeps_graph(eager_ms, ms, decision.min_gain) == (kind == long.optimization)
    for sample in ds.exists("auto_long"):
        _assert_same(sample.auto_long, eager.predict(read_image(sample.filepath)), atol=1e-4)
        _assert_same(sample.auto_short, eager.predict(read_image(sample.filepath)), atol=1e-6)
    monkeypatch.setenv(ENV_OPTIMIZE_MIN_SAMPLES, "12")
    assert optimize_min_samples() == 12 and optimize_min_samples(3) == 3
    monkeypatch.setenv(ENV_OPTIMIZE_MIN_SAMPLES, "lots")
    with pytest.raises(mz.ConfigError, match="MODELZOO_OPTIMIZE_MIN_SAMPLES must be an integer"):
        optimize_min_samples()


def _record_threads(model, monkeypatch):
    """The names of the threads each batch's forward ran in."""
    import threading

    names = []
    run_batch = model.run_batch

    def recording(inputs, call, samples=None):
        names.append(threading.current_thread().name)
        return run_batch(inputs, call, samples)

    monkeypatch.setattr(model, "run_batch", recording)
    return names


@pytest.fixture(scope="module")
def longer_dataset(tmp_path_factory):
    """Enough batches of 2 for the calibration to decide (a graph's first 2
    batches are not measured, and it may take 8 more) and streams after it."""
    root = tmp_path_factory.mktemp("torch-engine-longer")
    good = write_good_images(str(root / "good"), n=30, size=(96, 72))
    bad = write_bad_images(str(root / "bad"))
    ds = mz.Dataset("torch-engine-longer", overwrite=True)
    ds.add_images(good[:15] + list(bad.values()) + good[15:])
    yield ds, good, list(bad.values())
    ds.delete()


@pytest.mark.parametrize("task", ["classification", "segmentation"])
def test_two_batches_predicted_at_once_store_what_predict_gives(longer_dataset, monkeypatch, caplog, task):
    # A calibration that chose one torch thread and two streams: once it has
    # decided, the forwards of two batches run at once in stream threads; the
    # labels (in order, for the right samples) and the failures are those of
    # predict() one image at a time.
    import logging

    from modelzoo.engine import tuning

    ds, readable, bad = longer_dataset
    monkeypatch.setattr(tuning, "choose_from_costs", lambda load_s, model_s, cores: (1, 1))
    monkeypatch.setattr(tuning, "predict_streams", lambda load_s, model_s, cores, threads: 2)
    model = tiny_model(task, optimize=True)
    assert model.thread_safe  # a traced graph on the CPU
    names = _record_threads(model, monkeypatch)
    field = "streams_" + task
    with caplog.at_level(logging.INFO, logger="modelzoo"):
        report = ds.apply_model(model, label_field=field, batch_size=2, progress=False)
    assert report.processed == len(readable) and report.failed == len(bad)
    assert {f.filepath for f in report.failures} == set(bad)
    assert "2 batches predicted at once" in caplog.text
    assert names[0] == "MainThread"  # the calibration's batches run here, timed
    assert any(n.startswith("modelzoo-predict") for n in names)
    reference = tiny_model(task, optimize=False)
    by_path = {s.filepath: s for s in ds}
    for path in readable:
        for name, value in label_updates(reference.predict(read_image(path)), field).items():
            _assert_same(by_path[path][name], value, atol=1e-4)


@pytest.mark.parametrize("weight", ["light", "heavy"])
def test_two_threads_chosen_become_two_one_thread_streams(longer_dataset, monkeypatch, caplog, weight):
    # Light: its first batches compiled its kernels for one thread (its
    # provisional count), so two threads would not be used. Heavy (measured
    # on both cores): one-thread streams share no barrier for the loader
    # worker to stall (tuning.Calibration.split).
    import logging

    from modelzoo.engine import tuning

    ds, readable, bad = longer_dataset
    monkeypatch.setattr(tuning, "cpu_count", lambda: 2)
    monkeypatch.setattr(tuning, "choose_from_costs", lambda load_s, model_s, cores: (1, 2))
    if weight == "heavy":
        monkeypatch.setattr(tuning, "LIGHT_MODEL_PARAMS", 1)  # the tiny net counts as heavy
    model = tiny_model("classification", optimize=True)
    names = _record_threads(model, monkeypatch)
    field = "two_streams_" + weight
    with caplog.at_level(logging.INFO, logger="modelzoo"):
        report = ds.apply_model(model, label_field=field, batch_size=2, progress=False)
    assert report.processed == len(readable) and report.failed == len(bad)
    assert f"batches on {1 if weight == 'light' else 2} thread(s))" in caplog.text  # measured on
    assert "using 1 loader workers and 1 torch threads, 2 batches predicted at once" in caplog.text
    assert any(n.startswith("modelzoo-predict") for n in names)
    reference = tiny_model("classification", optimize=False)
    by_path = {s.filepath: s for s in ds}
    for path in readable:
        _assert_same(by_path[path][field], reference.predict(read_image(path)), atol=1e-4)


def test_a_model_not_thread_safe_predicts_one_batch_at_a_time(mixed_dataset, monkeypatch, caplog):
    import logging

    from modelzoo.engine import tuning

    ds, readable, _ = mixed_dataset
    monkeypatch.setattr(tuning, "choose_from_costs", lambda load_s, model_s, cores: (1, 1))
    monkeypatch.setattr(tuning, "predict_streams", lambda load_s, model_s, cores, threads: 2)
    model = tiny_model("classification", optimize=False)  # eager: may hold hooks, not thread safe
    assert not model.thread_safe
    names = _record_threads(model, monkeypatch)
    with caplog.at_level(logging.INFO, logger="modelzoo"):
        report = ds.apply_model(model, label_field="one_stream", batch_size=2, progress=False)
    assert report.processed == len(readable)
    assert set(names) == {"MainThread"} and "predicted at once" not in caplog.text
