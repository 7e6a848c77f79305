"""The engine's public parts: Source shards, loaders any model declares, sinks, merged reports."""

import hashlib
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import modelzoo as mz
from modelzoo.engine import ApplyReport, EmbeddingSink, LabelSink, RunOptions, Sink, Source, run_model
from modelzoo.loaders import BytesLoader, PathLoader, PILLoader, WorkItem
from tests.images import write_bad_images, write_good_images
from tests.processes import stop
from tests.toy_models import MeanColor, TinyNet, TwoHeads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts-images")
    good = write_good_images(str(root / "good"), n=10, size=(40, 30))
    bad = write_bad_images(str(root / "bad"))
    return good, list(bad.values())


@pytest.fixture
def dataset(files, request):
    good, bad = files
    ds = mz.Dataset(f"parts-{request.node.name}"[:60], overwrite=True)
    ds.add_images(good * 2 + bad)  # 20 readable samples, some unreadable
    yield ds
    ds.delete()


def test_split_covers_every_sample_once(dataset):
    source = Source.from_samples(dataset)
    ids = [item.sample_id for item in source.items()]
    assert len(ids) == len(dataset)
    for n in (1, 2, 3, 7, len(ids) + 3):
        parts = source.split(n)
        seen = [item.sample_id for part in parts for item in part.items()]
        assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))  # disjoint, complete
        assert [p.count() for p in parts] == [len(list(p.items())) for p in parts]
    # a view's query is kept by its shards
    view = dataset.limit(5)
    shards = [Source.from_samples(view).shard(i, 2) for i in range(2)]
    assert sum(s.count() for s in shards) == 5


def test_parts_pickle():
    source = Source("samples.x.1", {"a": 1}, "x", (("p", "caption"),), ("lo", "hi"))
    sink = LabelSink("samples.x.1", "x", {"k": "f"}, 0.5, "err")
    for part in (source, sink, EmbeddingSink(field="emb"), RunOptions("embed", 4, 0, 1), BytesLoader(), PILLoader()):
        clone = pickle.loads(pickle.dumps(part))
        assert vars(clone) == vars(part) if not isinstance(part, Source) else clone == part


_SHARD_RUNNER = textwrap.dedent(
    """
    import pickle, sys
    sys.path.insert(0, {root!r})
    from modelzoo.engine import LabelSink, RunOptions, run_model
    from tests.toy_models import TinyNet
    with open({path!r}, "rb") as f:
        source = pickle.load(f)
    sink = LabelSink(source.collection, source.dataset_name, "sharded")
    report = run_model(source, TinyNet(), sink, RunOptions(batch_size=3, num_workers=1, progress=False))
    with open({path!r} + ".report", "wb") as f:
        pickle.dump(report, f)
    """
)


def test_three_processes_three_shards_equal_one_run(dataset, tmp_path):
    source = Source.from_samples(dataset)
    procs = []
    for i, shard in enumerate(source.split(3)):
        path = str(tmp_path / f"shard{i}.pkl")
        with open(path, "wb") as f:
            pickle.dump(shard, f)
        script = tmp_path / f"run{i}.py"
        script.write_text(_SHARD_RUNNER.format(root=ROOT, path=path))
        procs.append((path, subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)))
    reports = []
    try:
        for path, proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            with open(path + ".report", "rb") as f:
                reports.append(pickle.load(f))
    finally:
        stop(*(proc for _, proc in procs))
    merged = reports[2].merge(reports[0], reports[1])  # any order

    single = run_model(
        source, TinyNet(), LabelSink(source.collection, dataset.name, "single"), RunOptions(batch_size=5, progress=False)
    )
    assert merged == single, "\n".join(
        ["shards merged:"] + [f"  {f}" for f in merged.failures] + ["one run:"] + [f"  {f}" for f in single.failures]
    )
    assert merged.processed == 20 and merged.failed == len(dataset) - 20
    assert sum(r.processed for r in reports) == dataset.count("sharded") == 20  # each sample labelled once
    for sample in dataset.exists("single"):
        assert sample.sharded.label == sample.single.label
        assert sample.sharded.confidence == pytest.approx(sample.single.confidence, abs=1e-6)


class _PidBytes(BytesLoader):
    """The file's bytes, and the pid of the process that read them."""

    def load(self, item: WorkItem):
        return os.getpid(), super().load(item)


class BytesModel(mz.Model):
    """Not a torch model: labels a file by the sha256 of its bytes."""

    def build_loader(self):
        return _PidBytes()

    def predict(self, arg):
        pid, data = arg
        assert isinstance(data, bytes)
        return {"sha": mz.Classification(label=hashlib.sha256(data).hexdigest()), "pid": mz.Classification(label=str(pid))}


def test_a_model_declares_a_bytes_loader_run_in_workers(dataset):
    report = dataset.apply_model(BytesModel(), label_field="b", num_workers=2, progress=False)
    assert report.processed == len(dataset) - report.failed
    missing = [f for f in report.failures if "not found" in f.message.lower()]
    assert missing, report  # the missing file costs its sample, named
    for sample in dataset.exists("b_sha"):
        with open(sample.filepath, "rb") as f:
            assert sample.b_sha.label == hashlib.sha256(f.read()).hexdigest()
        assert int(sample.b_pid.label) != os.getpid()  # read in a loader worker process


class PathModel(mz.Model):
    def build_loader(self):
        return PathLoader()

    def predict(self, path):
        return mz.Classification(label=os.path.basename(path))


def test_path_loader(dataset):
    dataset.apply_model(PathModel(), label_field="name", num_workers=0, progress=False)
    for sample in dataset.exists("name"):
        assert sample.name.label == os.path.basename(sample.filepath)


class _Collect(Sink):
    """A custom sink: keeps what it gets, in memory."""

    def __init__(self):
        self.outputs, self.failures, self.closed = [], [], 0

    def write(self, batch):
        self.outputs += [(item.sample_id, out.label) for item, out in batch.outputs]
        self.failures += [item.sample_id for item, _ in batch.failures]

    def close(self):
        self.closed += 1


def test_custom_sink_gets_every_output_and_failure_once(dataset):
    sink = _Collect()
    report = run_model(Source.from_samples(dataset), MeanColor(), sink, RunOptions(batch_size=4, num_workers=1))
    ids = [oid for oid, _ in sink.outputs] + sink.failures
    assert sorted(ids) == sorted(item.sample_id for item in Source.from_samples(dataset).items())
    assert len(sink.outputs) == report.processed and len(sink.failures) == report.failed and sink.closed == 1
    assert dataset.count("predictions") == 0  # a custom sink writes nothing else


def test_report_merge_adds_counts_and_orders_failures():
    a = ApplyReport(2, 1, 0, [mz.Failure("b" * 24, "/b", "x", "load")])
    b = ApplyReport(3, 1, 4, [mz.Failure("a" * 24, "/a", "y", "predict")])
    merged = a.merge(b)
    assert (merged.processed, merged.failed, merged.skipped) == (5, 2, 4)
    assert [f.filepath for f in merged.failures] == ["/a", "/b"]
    assert merged == b.merge(a)


def test_embedding_sink_array_in_sample_order_with_nan_rows(dataset, files):
    emb = dataset.compute_embeddings(TinyNet(), batch_size=3, progress=False)
    assert emb.shape == (len(dataset), 8)
    bad = np.isnan(emb).all(1)
    order = dataset.ids()
    assert {order[i] for i in np.flatnonzero(bad)} == {str(s.id) for s in dataset if s.filepath in files[1]}
    model = TinyNet()
    from modelzoo.image_io import read_image

    for i, sample in enumerate(dataset):
        if not bad[i]:
            np.testing.assert_allclose(emb[i], model.embed(read_image(sample.filepath)), atol=1e-5)


def test_skip_existing_with_a_dict_of_labels_and_a_prefix(dataset):
    first = dataset.limit(6).apply_model(TwoHeads(), label_field="two", progress=False, num_workers=0)
    assert first.processed + first.failed == 6
    again = dataset.apply_model(TwoHeads(), label_field="two", skip_existing=True, progress=False, num_workers=0)
    assert again.skipped == first.processed  # samples with two_size / two_box were done
    assert again.processed + again.failed + again.skipped == len(dataset)
    assert dataset.count("two_size") == first.processed + again.processed


def test_keypoint_threshold_keeps_pairs_paired(files):
    from modelzoo.testing import tiny_model

    good, _ = files
    ds = mz.Dataset("parts-keypoints", overwrite=True)
    try:
        ds.add_images(good[:4])
        model = tiny_model("keypoints")
        ds.apply_model(model, label_field="kp", num_workers=0, progress=False)
        scores = sorted(d.confidence for s in ds for d in s.kp_detections.detections)
        assert len(scores) >= 4, "the tiny keypoint model should find objects to filter"
        thresh = scores[len(scores) // 2]
        ds.apply_model(model, label_field="cut", confidence_thresh=thresh, num_workers=0, progress=False)
        kept = 0
        for sample in ds:
            dets, kps = sample.cut_detections.detections, sample.cut_keypoints.keypoints
            assert len(dets) == len(kps)
            for det, kp in zip(dets, kps):
                assert det.confidence >= thresh
                np.testing.assert_allclose(det.bounding_box, kp.bounding_box, atol=1e-6)  # one object
            kept += len(dets)
        assert kept == sum(s >= thresh for s in scores)
    finally:
        ds.delete()


def test_a_model_on_samples_of_another_media_type_is_refused(dataset, files):
    # (an image model on video samples runs on their frames: tests/test_video.py)
    class VideoModel(mz.Model):
        media_type = "video"

        def predict(self, reader):
            return {}

    with pytest.raises(mz.ConfigError, match=r"video model.*is an image.*media_type"):
        dataset.apply_model(VideoModel(), progress=False)
    with pytest.raises(mz.ConfigError, match=r"video model.*is an image.*media_type"):
        run_model(Source.from_samples(dataset), VideoModel(), LabelSink(dataset.collection_name))
    assert dataset.count("predictions") == 0  # refused before anything ran


def test_calibration_waits_for_the_steady_state():
    from modelzoo.engine.tuning import Calibration, choose_from_costs

    cal = Calibration(TinyNet(), cores=2)  # light: measured on 1 worker + 1 thread
    assert cal.provisional == (1, 1)
    cal.observe_load(5e-3)
    # an optimized graph compiling over its first calls, then steady
    decisions = [cal.observe(ms * 1e-3) for ms in (19, 14, 8, 5, 3.1, 3.2)]
    assert decisions[:5] == [None] * 5
    assert decisions[5] == choose_from_costs(5e-3, 3.1e-3, 2) == (2, 1)
    # a model that never settles is decided after max_batches, on its last times
    wobbly = Calibration(TinyNet(), cores=2, max_batches=4)
    wobbly.observe_load(5e-3)
    assert [wobbly.observe(t) for t in (1.0, 2.0, 1.0)] == [None] * 3
    assert wobbly.observe(2.0) == choose_from_costs(5e-3, 1.0, 2)


@pytest.mark.parametrize("after,workers", [(0, 2), (1, 2), (2, 0), (3, 1)])
def test_batch_stream_resize_hands_every_batch_over_once(dataset, after, workers):
    from modelzoo.engine.batching import BatchStream
    from modelzoo.loaders import PathLoader

    source = Source.from_samples(dataset)
    stream = BatchStream(source.batches(2), PathLoader(), num_workers=1)
    first = stream.load_here()
    stream.start()
    seen = [item.sample_id for item in first.items + [f for f, _ in first.failures]]
    for i, batch in enumerate(stream):
        seen += [item.sample_id for item in batch.items] + [item.sample_id for item, _ in batch.failures]
        if i == after:
            stream.resize(workers)
    assert sorted(seen) == sorted(item.sample_id for item in source.items())
    assert len(seen) == len(set(seen))


def test_batch_size_search_keeps_the_default_unless_clearly_slower():
    from modelzoo.engine.tuning import BatchSizeSearch

    # a high-resolution eager model: batch 1 wins over 4 by far, so 16 is never tried
    search = BatchSizeSearch([1, 4, 16], default=16, start=4)
    assert search.current == 4  # the first batch, then downwards
    assert search.observe(4, 0.30) is None
    assert search.observe(16, 0.01) is None  # a batch of another size (loaded ahead) is ignored
    assert search.observe(4, 0.09) is None  # not settled: 0.30 -> 0.09 is more than 15%
    assert search.observe(4, 0.088) is None  # settled at 4
    assert search.current == 1
    assert search.observe(1, 0.065) is None
    assert search.observe(1, 0.066) == 1  # faster than 4 by more than the margin: decided
    assert search.costs == {4: 0.088, 1: 0.065}
    assert "65.00 ms/sample at batch 1" in search.explain()
    # a small input: larger batches are faster; 1 loses, so 16 is tried and kept
    small = BatchSizeSearch([1, 4, 16], default=16, start=4)
    for size, t in ((4, 0.010), (4, 0.010), (1, 0.020), (1, 0.020), (16, 0.008)):
        assert small.observe(size, t) is None
    assert small.observe(16, 0.008) == 16
    # within the margin of the default: the default stays (no flip on noise)
    close = BatchSizeSearch([1, 4, 16], default=16, start=4)
    for size, times in ((4, (0.095, 0.095)), (1, (0.2, 0.2)), (16, (0.1, 0.1))):
        decisions = [close.observe(size, t) for t in times]
    assert decisions[-1] == 16 and close.costs[4] < close.costs[16]
    # a size that never settles is decided after max_batches
    wobbly = BatchSizeSearch([4, 16], default=16, max_batches=3, default_max_batches=3, start=4)
    assert [wobbly.observe(4, t) for t in (1.0, 2.0, 1.0)][-1] is None and wobbly.current == 16
    assert [wobbly.observe(16, t) for t in (0.1, 0.3, 0.1)][-1] == 16 and wobbly.costs[16] == pytest.approx(0.1)


def test_calibration_leaves_a_compiled_graphs_warmup_calls_out():
    from modelzoo.engine.tuning import BatchSizeSearch, Calibration, choose_from_costs

    # what timm's resnet18 (frozen+onednn) measured in a run: its 2 profiling calls at each new shape read alike
    # (so "settled") at twice the steady cost; counted, batch 1 beat batch 4 and the run was 24% slower
    search = BatchSizeSearch([1, 4, 16], default=16, start=4, warmup=2)
    for size, times in ((4, (0.037, 0.037, 0.0205, 0.0199)), (1, (0.044, 0.0206, 0.0209, 0.0206)), (16, (0.0235, 0.0238))):
        assert [search.observe(size, t) for t in times] == [None] * len(times)
    assert search.costs == {4: 0.0199, 1: 0.0206} and search.current == 16
    assert search.observe(16, 0.019) is None
    assert search.observe(16, 0.0192) == 16
    # without the warm-up left out, the same times choose batch 1
    naive = BatchSizeSearch([1, 4, 16], default=16, start=4)
    assert [naive.observe(4, t) for t in (0.037, 0.037)] == [None, None]
    assert [naive.observe(1, t) for t in (0.044, 0.0206, 0.0209, 0.0209)][-1] == 1

    class Graph(TinyNet):
        warmup_batches = 2

    cal = Calibration(Graph(), cores=2)
    assert cal.warmup == 2 and Calibration(TinyNet(), cores=2).warmup == 0
    cal.observe_load(5e-3)
    assert [cal.observe(t) for t in (0.011, 0.011, 0.0031)] == [None] * 3
    assert cal.observe(0.0032) == choose_from_costs(5e-3, 0.0031, 2)


def test_torch_image_model_declares_its_graphs_warmup():
    from modelzoo.testing import tiny_model

    model = tiny_model("classification")
    assert model.warmup_batches == 0  # eager
    model.prepare(10**6)
    assert model.optimization != "eager", model.optimization_reason
    assert model.warmup_batches == (0 if model.optimization == "channels_last" else 2)


def test_batch_size_candidates_and_memory_bound():
    from modelzoo.engine.tuning import ACTIVATION_FACTOR, MEMORY_SHARE, batch_size_candidates, memory_bound

    assert batch_size_candidates(16, total=10_000) == [1, 4, 16]
    assert batch_size_candidates(16, total=10_000, bound=8) == [1, 4, 8]  # never above the bound
    assert batch_size_candidates(16, total=10_000, bound=3) == [1, 3]
    assert batch_size_candidates(16, total=42) == [1, 4, 16]  # two batches of each fit
    assert batch_size_candidates(16, total=41) == [16]
    # 640x480x3 float32 inputs, 8 GiB available: by hand
    per_sample = 640 * 480 * 3 * 4
    assert memory_bound(per_sample, available=8 << 30) == int((8 << 30) * MEMORY_SHARE // (per_sample * ACTIVATION_FACTOR))
    assert memory_bound(per_sample, available=1) == 1 and memory_bound(0, available=8 << 30) is None


@pytest.mark.parametrize(
    "load_ms, model_ms, expected_workers",
    [
        (1.0, 1.0, 1),  # demand 1.0
        (1.1, 1.0, 1),  # demand 1.05: within the margin, no flip to 2 on noise
        (1.2, 1.0, 1),  # demand 1.09
        (1.5, 1.0, 2),  # demand 1.2: clearly decoding-bound
    ],
)
def test_worker_choice_has_a_deadband(load_ms, model_ms, expected_workers):
    from modelzoo.engine.tuning import choose_from_costs

    assert choose_from_costs(load_ms / 1e3, model_ms / 1e3, 2)[0] == expected_workers


def test_rebatch_hands_every_item_over_once_at_changing_sizes(dataset):
    from modelzoo.engine.batching import Rebatch

    source = Source.from_samples(dataset)
    rebatch = Rebatch(source.batches(16), 16)
    sizes, seen = [], []
    for i, batch in enumerate(rebatch):
        sizes.append(len(batch))
        seen += [item.sample_id for item in batch]
        rebatch.size = (4, 1)[min(i, 1)]  # after the first list: 4, then 1
    expected = [item.sample_id for item in source.items()]
    assert seen == expected  # in order, each once
    assert sizes == [16, 4] + [1] * (len(expected) - 20)


def test_apply_model_searches_the_batch_size_and_writes_every_sample_once(files, caplog):
    import logging

    from modelzoo.image_io import read_image
    from modelzoo.testing import tiny_model

    good, _ = files
    ds = mz.Dataset("parts-batch-search", overwrite=True)
    try:
        ds.add_images(good * 6)  # 60 samples: batch sizes 4 and 1 are tried
        model = tiny_model("classification", optimize=False)
        model.default_batch_size = 4
        calls = []
        predict_all = model.predict_all
        model.predict_all = lambda batch: calls.append(len(batch)) or predict_all(batch)
        writes = []
        source = Source.from_samples(ds)
        sink = LabelSink(source.collection, ds.name, "searched")
        write = sink.write
        sink.write = lambda batch: writes.append(len(batch.outputs)) or write(batch)
        with caplog.at_level(logging.INFO, logger="modelzoo.engine"):
            report = run_model(source, model, sink, RunOptions(progress=False))
        assert report.processed == 60 and sum(calls) == 60
        assert set(calls[:-1]) <= {1, 4} and 1 in calls and calls[0] == 4  # 4 first, then 1 (the last may be short)
        assert any(r.getMessage().startswith("Batch size ") for r in caplog.records)
        assert sum(writes) == 60 and all(n >= 4 for n in writes[:-1])  # batches of 1 are merged for writing
        reference = tiny_model("classification", optimize=False)
        for sample in ds:
            expected = reference.predict(read_image(sample.filepath))
            assert sample.searched.label == expected.label
    finally:
        ds.delete()


def test_calibration_counts_a_light_model_on_large_inputs_as_heavy():
    import torch

    from modelzoo.engine.tuning import LIGHT_MODEL_PARAMS, Calibration

    net = torch.nn.Linear(1000, 1000)  # 1,001,000 parameters: light by count
    assert sum(p.numel() for p in net.parameters()) < LIGHT_MODEL_PARAMS
    at_224 = Calibration(net, cores=2)
    assert at_224.provisional == (1, 1)
    assert not at_224.reconsider(3 * 224 * 224)  # 1.0 M x 1 < 5 M: stays light
    assert at_224.provisional == (1, 1)
    at_vga = Calibration(net, cores=2)
    assert at_vga.reconsider(3 * 640 * 480)  # 1.0 M x 6.1 (640x480 / 224x224) >= 5 M
    assert at_vga.provisional == (0, 2) and not at_vga.light
    given = Calibration(net, cores=2, counts=(1, 1))
    assert not given.reconsider(3 * 640 * 480) and given.provisional == (1, 1)  # counts the user gave stay


def test_input_elements_counts_the_tensors_of_a_collated_batch():
    import torch

    from modelzoo.engine.tuning import input_elements
    from modelzoo.transforms import ImageBatch

    stacked = ImageBatch(torch.zeros(2, 3, 480, 640, dtype=torch.uint8), [(640, 480)] * 2)
    assert input_elements(stacked) == 2 * 3 * 480 * 640
    ragged = ImageBatch([torch.zeros(3, 480, 640), torch.zeros(3, 224, 300)], [(640, 480), (300, 224)])
    assert input_elements(ragged) == 3 * 480 * 640 + 3 * 224 * 300
    assert input_elements({"a": [np.zeros((2, 5))], "b": "text"}) == 10


def test_predict_streams_gives_a_one_thread_forward_the_share_decoding_leaves():
    from modelzoo.engine.tuning import Calibration, choose_from_costs, predict_streams

    # mobilenet_v3_small's fused graph on 2 cores: decoding 1.42 ms, forward 2.4 ms a sample
    assert choose_from_costs(1.42e-3, 2.4e-3, 2) == (1, 1)
    assert predict_streams(1.42e-3, 2.4e-3, 2, threads=1) == 2  # demand 0.74: 1.26 cores left
    assert predict_streams(1.42e-3, 2.4e-3, 2, threads=2) == 1  # an intra-op team has the cores
    assert predict_streams(5e-3, 3.1e-3, 2, threads=1) == 1  # demand 1.23: decoding-bound
    assert predict_streams(1.42e-3, 2.4e-3, 1, threads=1) == 1  # one core
    cal = Calibration(TinyNet(), cores=2)  # light: measured on one thread
    assert cal.split(1) == (1, 1)  # nothing measured yet
    cal.observe_load(1.42e-3)
    while cal.observe(2.4e-3) is None:
        pass
    assert cal.split(1) == (1, 2)
    assert cal.split(2) == (1, 2)  # two threads chosen: two one-thread streams (its kernels were compiled on one)
    import torch

    heavy = Calibration(torch.nn.Linear(1000, 1000), cores=2)
    assert heavy.reconsider(3 * 640 * 480)  # 1.0 M parameters at 640x480: heavy, measured on every core
    assert heavy.provisional == (0, 2)
    heavy.observe_load(1.4e-3)
    while heavy.observe(18e-3) is None:
        pass
    assert heavy.split(2) == (1, 2)  # two one-thread streams: no barrier for the loader worker to stall
    assert heavy.split(2, max_streams=1) == (2, 1)  # memory holds one batch: one forward on both threads
    assert heavy.split(8, max_streams=2) == (4, 2)  # an equal share of the threads each
    assert cal.split(2, max_streams=1) == (2, 1) and cal.split(1, max_streams=1) == (1, 1)
