import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pymongo
import pytest
import torch

import modelzoo as mz
from tests.contract import ModelContract
from tests.images import photo, write_bad_images, write_good_images, write_odd_images
from tests.processes import RESTORE_SIGINT, stop
from tests.toy_models import MeanColor, TinyNet, TwoHeads


def _small_photos(n=7):
    from PIL import Image

    names = ["astronaut", "chelsea", "coffee", "rocket"]
    return [np.asarray(Image.fromarray(photo(names[i % 4])).resize((48 + 8 * i, 40))) for i in range(n)]


class TestTinyNetContract(ModelContract):
    def make_model(self):
        return TinyNet()

    def inputs(self):
        return _small_photos()


class TestMeanColorContract(ModelContract):
    def make_model(self):
        return MeanColor()

    def inputs(self):
        return _small_photos()


class TestTwoHeadsContract(ModelContract):
    def make_model(self):
        return TwoHeads()

    def inputs(self):
        return _small_photos()


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine-images")
    good = write_good_images(str(root / "good"), n=9, size=(64, 48))
    odd = write_odd_images(str(root / "odd"))
    bad = write_bad_images(str(root / "bad"))
    return good, odd, bad


@pytest.fixture
def mixed(image_dirs, request):
    good, odd, bad = image_dirs
    ds = mz.Dataset(f"engine-{request.node.name}"[:60], overwrite=True)
    ds.add_images(good + list(odd.values()) + list(bad.values()))
    yield ds, good + list(odd.values()), list(bad.values())
    ds.delete()


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("model_cls", [TinyNet, MeanColor])
def test_bad_files_cost_only_themselves(mixed, num_workers, model_cls):
    ds, readable, bad = mixed
    report = ds.apply_model(model_cls(), label_field="p", batch_size=4, num_workers=num_workers, progress=False)
    labelled = {s.filepath for s in ds.exists("p")}
    assert labelled == set(readable)
    assert report.processed == len(readable)
    assert report.failed == len(bad)
    assert {f.filepath for f in report.failures} == set(bad)
    assert all(f.stage == "load" and f.message for f in report.failures)
    by_path = {s.filepath: s for s in ds}
    assert all(by_path[p].p.label in {"a", "b", "c", "d", "R", "G", "B"} for p in readable)


def test_errors_recorded_on_samples_when_asked(mixed):
    ds, readable, bad = mixed
    ds.apply_model(MeanColor(), label_field="p", error_field="p_error", progress=False)
    errors = {s.filepath: s.p_error for s in ds.exists("p_error")}
    assert set(errors) == set(bad)
    assert "not found" in errors[[p for p in bad if "missing" in p][0]]


def test_skip_failures_false_names_the_sample_and_file(mixed):
    ds, readable, bad = mixed
    with pytest.raises(mz.PredictionError) as e:
        ds.apply_model(TinyNet(), skip_failures=False, batch_size=4, num_workers=0, progress=False)
    assert e.value.filepath in bad and e.value.filepath in str(e.value)
    assert e.value.sample_id in str(e.value)


@pytest.mark.parametrize("model", [MeanColor(poison_width=77), TinyNet()], ids=["per-input", "per-batch"])
def test_a_model_that_raises_on_one_input_costs_that_input(image_dirs, model, tmp_path):
    good, _, _ = image_dirs
    from PIL import Image

    poison = str(tmp_path / "poison.png")
    if isinstance(model, TinyNet):
        arr = np.full((40, 40, 3), 0, np.uint8)
        Image.fromarray(arr).save(poison)
        model.poison_value = 0.0  # first pixel black after the transform
    else:
        Image.fromarray(photo("coffee")).resize((77, 30)).save(poison)
    ds = mz.Dataset.from_images(good + [poison], name="poison-test", overwrite=True)
    try:
        report = ds.apply_model(model, batch_size=5, num_workers=0, progress=False)
        assert report.failed == 1 and report.failures[0].filepath == poison
        assert report.failures[0].stage == "predict" and "poison" in report.failures[0].message
        assert ds.count("predictions") == len(good)
    finally:
        ds.delete()


def test_wrong_number_of_outputs_is_an_error_and_writes_nothing(image_dirs):
    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good, name="wrong-count", overwrite=True)
    try:
        with pytest.raises(mz.ModelError, match="returned 3 outputs for a batch of 4"):
            ds.apply_model(TinyNet(wrong_count=True), batch_size=4, num_workers=0, progress=False)
        assert ds.count("predictions") == 0
    finally:
        ds.delete()


def test_batch_sizes_1_and_7_store_identical_labels(image_dirs):
    good, odd, _ = image_dirs
    ds = mz.Dataset.from_images(good + list(odd.values()), name="batch-sizes", overwrite=True)
    try:
        ds.apply_model(TinyNet(), label_field="b1", batch_size=1, num_workers=0, store_logits=True, progress=False)
        ds.apply_model(TinyNet(), label_field="b7", batch_size=7, num_workers=2, store_logits=True, progress=False)
        for a, b in zip(ds.values("b1"), ds.values("b7")):
            assert a.label == b.label
            assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
            np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)
    finally:
        ds.delete()


def test_label_field_prefix_mapping_and_confidence_thresh(image_dirs):
    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good[:3], name="dict-outputs", overwrite=True)
    try:
        ds.apply_model(TwoHeads(), label_field="m", progress=False)
        s = ds.first()
        assert s.m_size.label == "wide" and len(s.m_box.detections) == 2
        ds.apply_model(TwoHeads(), label_field={"size": "shape", "box": "objects"}, confidence_thresh=0.5, progress=False)
        s = ds.first()
        assert s.shape.label == "wide"
        assert [d.label for d in s.objects.detections] == ["center"]
    finally:
        ds.delete()


def test_store_logits_needs_logits():
    ds = mz.Dataset("logits-rule", overwrite=True)
    try:
        with pytest.raises(mz.ModelError, match="logits"):
            ds.apply_model(MeanColor(), store_logits=True)
        with pytest.raises(mz.ConfigError, match="Did you mean 'error_field'"):
            ds.apply_model(MeanColor(), eror_field="x")
    finally:
        ds.delete()


def test_compute_embeddings_in_sample_order_and_stored(mixed):
    ds, readable, bad = mixed
    model = TinyNet()
    emb = ds.compute_embeddings(model, batch_size=3, num_workers=2, progress=False)
    paths = ds.values("filepath")
    assert emb.shape == (len(paths), 8) and emb.dtype == np.float32
    with model:
        model.preprocess = True
        from modelzoo.image_io import read_image

        for i, p in enumerate(paths):
            if p in bad:
                assert np.isnan(emb[i]).all()
            else:
                np.testing.assert_allclose(emb[i], model.embed(read_image(p)), atol=1e-5)
    report = ds.compute_embeddings(model, embeddings_field="emb", progress=False)
    assert report.processed == len(readable)
    stored = dict(zip(paths, ds.values("emb")))
    for i, p in enumerate(paths):
        if p not in bad:
            np.testing.assert_allclose(stored[p], emb[i], atol=1e-6)
    with pytest.raises(mz.ModelError, match="embeddings"):
        ds.compute_embeddings(MeanColor())


def test_engine_restores_model_and_torch_state(image_dirs):
    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good, name="restore-state", overwrite=True)
    model = TinyNet()
    threads = torch.get_num_threads()
    try:
        ds.apply_model(model, num_workers=0, num_threads=1, store_logits=True, progress=False)
        assert torch.get_num_threads() == threads
        assert model.preprocess is True and model.store_logits is False and model.entered == 0
    finally:
        ds.delete()


_RUNNER = textwrap.dedent(
    """
    {restore_sigint}
    import sys
    sys.path.insert(0, {root!r})
    import modelzoo as mz
    from tests.toy_models import BlockingNet, TinyNet
    ds = mz.load_dataset({name!r})
    model = BlockingNet({marker!r}) if {marker!r} else TinyNet()
    report = ds.apply_model(model, batch_size=4, num_workers=0, skip_existing=True, progress=False)
    print("DONE", report.processed, report.skipped, flush=True)
    """
)


def _wait_for(pred, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_interrupted_run_resumes_with_skip_existing(image_dirs, tmp_path, sig):
    good, _, _ = image_dirs
    paths = (good * 4)[:32]
    ds = mz.Dataset("resume-" + sig.name, overwrite=True)
    ds.add_images(paths)
    proc = None
    try:
        script = tmp_path / "runner.py"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        marker = tmp_path / "blocked"
        script.write_text(_RUNNER.format(restore_sigint=RESTORE_SIGINT, root=root, name=ds.name, marker=str(marker)))
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # the model blocks on its third batch until signalled: the run cannot end first
        _wait_for(lambda: marker.exists() or proc.poll() is not None, 120, "the model to block on batch 3")
        assert proc.poll() is None, proc.communicate()
        _wait_for(lambda: ds.count("predictions") >= 8, 60, "two batches written")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert "DONE" not in out
        if sig == signal.SIGINT:
            assert "KeyboardInterrupt" in err
        done_before = ds.count("predictions")
        assert done_before == 8  # the two batches before the blocked one, whole
        stamps = {s.id: s.predictions.confidence for s in ds.exists("predictions")}
        script.write_text(_RUNNER.format(restore_sigint=RESTORE_SIGINT, root=root, name=ds.name, marker=""))
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        processed, skipped = map(int, out.stdout.split()[1:3])
        assert processed == 32 - done_before and skipped == done_before  # each sample labelled once
        assert ds.count("predictions") == 32
        assert all(ds[i].predictions.confidence == c for i, c in stamps.items())
    finally:
        stop(proc)
        ds.delete()


def test_losing_the_database_mid_run_fails_clearly_and_fast(image_dirs, tmp_path):
    """A server of the user's own (MODELZOO_DATABASE_URI) dies mid-run: a clear
    error within 30 s, never a hang. (The embedded server is restarted instead.)"""
    from modelzoo import db as mzdb

    good, _, _ = image_dirs
    port = mzdb.free_port()
    (tmp_path / "data").mkdir()
    mongod = subprocess.Popen(
        [mzdb.resolve_mongod(), "--dbpath", str(tmp_path / "data"), "--port", str(port), "--bind_ip", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    proc = None
    try:
        env = dict(os.environ, MODELZOO_DATABASE_URI=f"mongodb://127.0.0.1:{port}")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        code = textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {root!r})
            import modelzoo as mz
            from tests.toy_models import TinyNet
            ds = mz.Dataset.from_images({(good * 20)!r}, name="lost", overwrite=True)
            print("STARTED", ds.collection_name, flush=True)
            ds.apply_model(TinyNet(delay=0.2), batch_size=2, num_workers=0, progress=False)
            """
        )
        t_start = time.time()
        while True:  # wait for our mongod to answer
            probe = subprocess.run([sys.executable, "-c", "import pymongo; pymongo.MongoClient(%r, serverSelectionTimeoutMS=500).admin.command('ping')" % env["MODELZOO_DATABASE_URI"]], capture_output=True, timeout=60)
            if probe.returncode == 0 or time.time() - t_start > 20:
                break
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started, samples = proc.stdout.readline().split()
        assert started == "STARTED"
        from modelzoo.db.settings import database_name

        # mid-run: two batches of the many are stored when the database dies
        with pymongo.MongoClient(env["MODELZOO_DATABASE_URI"], serverSelectionTimeoutMS=5000) as client:
            stored = client[database_name()][samples]
            _wait_for(lambda: stored.count_documents({"predictions": {"$exists": True}}) >= 4, 60, "two batches stored")
        mongod.kill()
        t0 = time.time()
        try:
            _, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            raise AssertionError("apply_model hung after the database died") from None
        assert time.time() - t0 < 30
        assert proc.returncode != 0
        assert "modelzoo.errors.DatabaseError: Lost the database" in err
        assert "skip_existing=True" in err
    finally:
        stop(proc, mongod)


def test_samples_mixin_reads_other_fields(image_dirs):
    from tests.toy_models import PromptedSize

    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good[:3], name="prompted", overwrite=True)
    try:
        ids = ds.ids()
        ds.set_values("caption", {ids[0]: "cat", ids[1]: "dog"})
        ds.apply_model(PromptedSize(), label_field="out", progress=False)
        assert ds.values("out.label") == ["cat:64", "dog:64", "None:64"]
    finally:
        ds.delete()


def test_frame_keyed_outputs_become_frame_labels(image_dirs):
    from tests.toy_models import FrameCounter

    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good[:2], name="frames", overwrite=True)
    try:
        ds.apply_model(FrameCounter(), label_field="det", progress=False)
        assert [s.frames[1]["det"].label for s in ds] == ["first", "first"]
        assert [s.frames[2]["det_a"].label for s in ds] == ["second", "second"]
        assert ds.count("frames.det") == 2
    finally:
        ds.delete()


def test_model_config_is_strict():
    with pytest.raises(mz.ConfigError, match="Did you mean 'confidence_thresh'"):
        mz.ModelConfig({"confidence_tresh": 0.5})
    with pytest.raises(mz.ConfigError, match="confidence_thresh"):
        mz.ModelConfig(confidence_thresh=2)
    assert mz.ModelConfig({"confidence_thresh": 0.3}).confidence_thresh == 0.3


def test_bad_arguments_fail_before_anything_runs(image_dirs):
    good, _, _ = image_dirs
    ds = mz.Dataset.from_images(good[:2], name="bad-args", overwrite=True)
    try:
        with pytest.raises(mz.ConfigError, match="batch_size"):
            ds.apply_model(MeanColor(), batch_size=0)
        with pytest.raises(mz.ConfigError, match="modelzoo.Model"):
            ds.apply_model(object())
        with pytest.raises(mz.ConfigError, match="Dataset or DatasetView"):
            mz.apply_model([1, 2], MeanColor())
        assert ds.count("predictions") == 0
    finally:
        ds.delete()


@pytest.mark.parametrize(
    "load_ms, model_ms, cores, expected",
    [
        (1.1, 1.2, 2, (1, 1)),  # TorchImageModel mobilenet_v3_small, steady: d ~ 1.0
        (1.1, 4.3, 2, (1, 1)),  # the same, first batch inflated by graph warm-up: d ~ 0.4
        (2.1, 1.4, 2, (2, 1)),  # eager mobilenet_v3_small: decoding-bound
        (1.1, 16.0, 2, (1, 2)),  # resnet18: the lone worker is mostly idle
        (1.0, 30.0, 16, (1, 15)),  # d ~ 0.5: its worker keeps a core
        (1.0, 3.0, 16, (4, 12)),  # d = 4: four workers, four busy cores
        (5.0, 0.1, 4, (4, 1)),  # all decoding: never zero threads
    ],
)
def test_choose_from_costs(load_ms, model_ms, cores, expected):
    from modelzoo.engine.tuning import choose_from_costs

    assert choose_from_costs(load_ms / 1e3, model_ms / 1e3, cores) == expected
