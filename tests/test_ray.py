"""apply_model / compute_embeddings on a real local Ray (``ray.init(num_cpus=2)``).

One module-scoped Ray serves the file (Ray takes seconds to start); it is
shut down at the end, and no raylet/GCS process may outlive it. Labels,
failures and embeddings are compared with the in-process engine's on the
same real photographs and broken files.
"""

import concurrent.futures
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo.ray import RayOptions, Recipe, check_database_reach, plan_resources, recipe_of, remember, uri_is_loopback
from modelzoo.testing import tiny_model
from tests.images import write_bad_images, write_good_images
from tests.processes import REPO, child_env
from tests.ray_models import Barrier, KillOnce
from tests.toy_models import TinyNet

ray = pytest.importorskip("ray")

# A run that hangs (replicas holding every CPU) fails the test instead of the suite.
CALL_TIMEOUT_S = 300


def _ray_processes(marker: str):
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace")
        except OSError:
            continue
        if marker in args:
            found.append((int(entry), args.replace("\0", " ")[:200]))
    return found


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs, no dashboard, its own temp dir;
    its workers import this checkout (PYTHONPATH, inherited from the raylet)."""
    temp_dir = tempfile.mkdtemp(prefix="mzray", dir="/tmp")  # short: Ray's socket paths
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), saved]))
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="warning")
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    deadline = time.monotonic() + 60
    while _ray_processes(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _ray_processes(temp_dir)
    for pid, _ in left:
        os.kill(pid, 9)
    assert not left, f"Ray processes left running after ray.shutdown(): {left}"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray-images")
    good = write_good_images(str(root / "good"), n=9, size=(48, 36))
    bad = write_bad_images(str(root / "bad"))
    return good, list(bad.values())


@pytest.fixture
def dataset(files, request):
    good, bad = files
    yield from _dataset_of(request, good[:5] + bad[:2] + good[5:] + bad[2:])  # broken files among the photographs


@pytest.fixture
def photos(files, request):
    """Photographs only, 18 samples: after 5 labelled, 7 batches of 2 that each reach predict_all.
    (A batch of broken files never calls the model: with them among the samples left, one replica
    could hold both predicted batches in flight while Ray Data retired the other, idle, for having
    no input left; a barrier across both replicas then waited for one that was gone.)"""
    good, _ = files
    yield from _dataset_of(request, good + good)


def _dataset_of(request, paths):
    ds = mz.Dataset(f"ray-{request.node.name}"[:60], overwrite=True)
    ds.add_images(paths)
    yield ds
    ds.delete()


def _call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, failing the test if it does not return in CALL_TIMEOUT_S."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout=CALL_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            pytest.fail(f"{fn.__name__} did not finish in {CALL_TIMEOUT_S} s: a deadlock")


def _failures(report):
    return [(f.sample_id, f.filepath, f.stage, f.message) for f in report.failures]


# -- on the live cluster ---------------------------------------------------------------------
@pytest.mark.slow
def test_defaults_on_two_cpus_give_the_in_process_labels_and_failures(local_ray, dataset):
    model = tiny_model("classification")
    local = dataset.apply_model(model, label_field="local", progress=False)
    t0 = time.perf_counter()
    report = _call(dataset.apply_model, model, label_field="remote", backend="ray", progress=False)
    elapsed = time.perf_counter() - t0

    # where the seconds went: every stage, in order, adding up to no more than the call took
    assert list(report.timings) == ["session", "checks", "probe", "to_first_batch", "rest", "shutdown"]
    assert all(v >= 0 for v in report.timings.values())
    assert sum(report.timings.values()) <= elapsed
    assert report.first_batch_s == pytest.approx(sum(list(report.timings.values())[:4]), abs=1e-6)
    assert report.probe_s is not None and 0 < report.probe_s < report.timings["probe"]  # its own part of the stage
    assert set(report.replica_models) == set(report.replicas)
    assert set(report.replica_models.values()) == {f"{type(model).__name__} ({model.optimization})"}
    assert report.replica_build_s and set(report.replica_build_s) <= set(report.replicas)
    assert all(0 < v < elapsed for v in report.replica_build_s.values())

    plan = report.plan  # sized from ray.cluster_resources(): a decoding task always fits beside the replicas
    assert plan.num_replicas * plan.num_cpus + plan.decode_cpus <= 2
    assert (report.processed, report.failed) == (local.processed, local.failed) == (9, 4)
    assert _failures(report) == _failures(local)  # same samples, stages and messages
    for sample in dataset.exists("local"):
        assert sample.remote.label == sample.local.label
        assert sample.remote.confidence == pytest.approx(sample.local.confidence, abs=1e-6)
    assert dataset.count("remote") == 9
    hosts_pids = list(report.replicas)
    assert sum(report.replicas.values()) == 9
    assert all(int(name.rsplit(":", 1)[1]) != os.getpid() for name in hosts_pids)  # written by the replicas


@pytest.mark.slow
def test_embeddings_array_in_sample_order(local_ray, dataset, files):
    model = tiny_model("classification", embeddings_layer="<head")
    local = dataset.compute_embeddings(model, progress=False)
    remote = _call(mz.ray.compute_embeddings, dataset, model, progress=False, ray_options={"batch_size": 3})
    assert remote.shape == local.shape == (len(dataset), 16)
    bad = np.isnan(remote).all(1)
    ids = dataset.ids()
    assert {ids[i] for i in np.flatnonzero(bad)} == {str(s.id) for s in dataset if s.filepath in files[1]}
    np.testing.assert_allclose(remote, local, atol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_skip_existing_resumes_on_two_replicas_each_doing_work(local_ray, photos, tmp_path):
    dataset = photos
    (tmp_path / "alone").mkdir()
    (tmp_path / "pair").mkdir()
    alone = Recipe.factory(Barrier, str(tmp_path / "alone"), 1).build()
    first = dataset.limit(5).apply_model(alone, label_field="mean", progress=False, num_workers=0)  # interrupted
    done = {str(s.id) for s in dataset.exists("mean_value")}
    pair = Recipe.factory(Barrier, str(tmp_path / "pair"), 2).build()  # both replicas must get a batch
    report = _call(
        dataset.apply_model, pair, label_field="mean", skip_existing=True, batch_size=2, backend="ray",
        progress=False, ray_options={"num_replicas": 2},
    )
    assert report.skipped == first.processed == len(done)
    assert report.processed + report.failed + report.skipped == len(dataset)
    assert dataset.count("mean_value") == first.processed + report.processed  # each sample labelled once
    assert len(report.replicas) == 2 and all(n > 0 for n in report.replicas.values()), report.replicas
    assert sum(report.replicas.values()) == report.processed
    assert report.plan.num_cpus <= 0.5  # two replicas and a decoding task on 2 CPUs
    assert len(os.listdir(tmp_path / "pair")) == 2
    replica_pids = {int(name.rsplit(":", 1)[1]) for name in report.replicas}
    for sample in dataset.exists("mean_value"):  # plain PIL as the reference
        pixels = np.asarray(Image.open(sample.filepath).convert("RGB"))
        assert sample.mean_value.label == str(int(round(float(pixels.mean()))))
        if str(sample.id) not in done:  # decoded in a Ray CPU task, predicted in a replica
            decoded_in, predicted_in = map(int, sample.mean_pids.label.split(":"))
            assert predicted_in in replica_pids and decoded_in not in replica_pids | {os.getpid()}


@pytest.mark.slow
def test_a_replica_killed_mid_run_then_skip_existing_labels_every_sample_once(local_ray, dataset, tmp_path):
    marker = tmp_path / "killed"
    model = Recipe.factory(KillOnce, str(marker)).build()
    try:
        first = _call(dataset.apply_model, model, label_field="mean", batch_size=2, backend="ray", progress=False)
        assert first.processed == dataset.count("mean")  # Ray replaced the actor and retried its batch
    except mz.ModelzooError as e:  # or the run failed: what finished is stored
        assert isinstance(e, mz.BackendError) and "skip_existing=True" in str(e), e
    assert marker.exists()  # the replica did die
    before = dataset.count("mean")
    again = _call(
        dataset.apply_model, model, label_field="mean", batch_size=2, skip_existing=True, backend="ray",
        progress=False,
    )
    assert again.skipped == before
    assert again.processed + again.failed + again.skipped == len(dataset)
    assert dataset.count("mean") == before + again.processed == 9  # every readable sample, once
    for sample in dataset.exists("mean"):  # plain PIL as the reference
        pixels = np.asarray(Image.open(sample.filepath).convert("RGB"))
        assert sample.mean.label == str(int(round(float(pixels.mean()))))


@pytest.mark.slow  # starts the module's Ray cluster (local_ray)
def test_a_recipe_that_fails_on_the_workers_fails_before_any_work(local_ray, dataset, tmp_path):
    """The weights exist where the driver built the model, not where the workers run."""
    import torch

    from modelzoo.testing import TASKS

    weights = tmp_path / "tiny.pt"
    torch.save(tiny_model("classification").torch_model.state_dict(), weights)
    model = mz.TorchImageModel({**TASKS["classification"], "device": "cpu", "weights_path": str(weights)})
    weights.unlink()  # gone before the run: the workers cannot build it
    with pytest.raises(mz.ModelError) as info:
        _call(dataset.apply_model, model, label_field="never", backend="ray", progress=False)
    message = str(info.value)
    assert "Recipe.config" in message and "could not be built on a Ray worker" in message
    assert "ray::probe()" in message and "in load_state_dict" in message  # the worker's own traceback
    assert "tiny.pt' does not exist" in message
    assert "Recipe.factory" in message  # says what to pass
    assert dataset.count("never") == 0


@pytest.mark.slow  # starts the module's Ray cluster (local_ray)
def test_an_unreachable_database_is_an_error_within_30_s(local_ray, dataset):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    uri = f"mongodb://127.0.0.1:{port}/"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(
            dataset.apply_model, tiny_model("classification"), label_field="never", backend="ray",
            progress=False, ray_options={"database_uri": uri},
        )
        with pytest.raises(mz.DatabaseError, match=rf"Ray workers cannot reach the database.*{port}"):
            future.result(timeout=30)
    assert dataset.count("never") == 0


@pytest.mark.slow  # starts the module's Ray cluster (local_ray)
def test_loopback_database_with_another_node_is_refused(local_ray):
    nodes = ray.nodes()
    here = ray.get_runtime_context().get_node_id()
    uri = "mongodb://127.0.0.1:27017/"
    check_database_reach(uri, nodes, here)  # a single-machine cluster: fine
    foreign = {"NodeID": "f" * 56, "Alive": True, "NodeManagerAddress": "10.20.30.40", "Resources": {"CPU": 8.0}}
    with pytest.raises(mz.DatabaseError, match=r"MODELZOO_DATABASE_URI.*|10\.20\.30\.40") as info:
        check_database_reach(uri, nodes + [foreign], here)
    assert "MODELZOO_DATABASE_URI" in str(info.value) and "10.20.30.40" in str(info.value)
    check_database_reach("mongodb://db.internal:27017/", nodes + [foreign], here)  # reachable by name
    check_database_reach(uri, nodes + [{**foreign, "Alive": False}], here)  # a dead node runs nothing
    assert uri_is_loopback("mongodb://user:pw@localhost:1,[::1]:2/x?authSource=admin")
    assert not uri_is_loopback("mongodb://127.0.0.1:1,10.0.0.2:2/")
    assert not uri_is_loopback("mongodb+srv://cluster0.example.net/")


# -- before Ray is asked for anything -----------------------------------------------------------
def test_a_model_without_a_recipe_is_refused_before_any_work(dataset):
    with pytest.raises(mz.ConfigError, match=r"TinyNet cannot be rebuilt on a Ray worker.*Recipe\.factory"):
        dataset.apply_model(TinyNet(), backend="ray", progress=False)
    assert dataset.count("predictions") == 0
    # the recipe it says to pass
    model = Recipe.factory(TinyNet, seed=3).build()
    assert recipe_of(model) == Recipe.factory(TinyNet, seed=3)
    assert recipe_of(tiny_model("classification")).kind == "config"
    logits = tiny_model("classification")
    logits.store_logits = True
    assert recipe_of(logits).attributes == {"store_logits": True}
    assert recipe_of(remember(TinyNet(), Recipe.zoo("x", device="cpu"))).describe() == "Recipe.zoo('x', device='cpu')"


def test_a_zoo_model_travels_as_its_name_and_overrides(files, zoo_env):
    # zoo_env: the registration persists in a temporary zoo home, never the user's ~/.modelzoo
    from modelzoo.testing import TASKS

    mz.register_zoo_model("ray-test-tiny", dict(TASKS["classification"]), overwrite=True)
    try:
        model = mz.load_zoo_model("ray-test-tiny", device="cpu")
        recipe = recipe_of(model)
        assert recipe == Recipe.zoo("ray-test-tiny", device="cpu")
        rebuilt = recipe.build()  # what a worker does
        image = np.asarray(Image.open(files[0][0]).convert("RGB"))
        assert rebuilt.predict(image).label == model.predict(image).label
        assert rebuilt.predict(image).confidence == pytest.approx(model.predict(image).confidence, abs=1e-6)
    finally:
        mz.unregister_zoo_model("ray-test-tiny")


def test_unknown_and_bad_ray_options(dataset):
    with pytest.raises(mz.ConfigError, match=r"ray_options has no key 'num_replica'.*'num_replicas'.*Valid keys: address"):
        dataset.apply_model(tiny_model("classification"), backend="ray", ray_options={"num_replica": 2})
    with pytest.raises(mz.ConfigError, match=r"num_cpus.*>= 0"):
        RayOptions.from_mapping({"num_cpus": -1})
    with pytest.raises(mz.ConfigError, match=r"ray_options is for backend='ray'"):
        dataset.apply_model(tiny_model("classification"), ray_options={"num_replicas": 2})
    with pytest.raises(mz.ConfigError, match=r"backend must be one of .*'local', .*'ray'.*, got 'spark'"):
        dataset.apply_model(tiny_model("classification"), backend="spark")
    with pytest.raises(mz.ConfigError, match=r"disagree"):
        dataset.apply_model(tiny_model("classification"), batch_size=4, backend="ray", ray_options={"batch_size": 8})
    assert dataset.count("predictions") == 0


def test_resource_plans_never_leave_the_decoders_without_a_cpu():
    for cpus in (1, 2, 3, 16, 64):
        for replicas in (None, 1, 2):
            plan = plan_resources(RayOptions(num_replicas=replicas), {"CPU": float(cpus)})
            assert plan.num_replicas * plan.num_cpus + plan.decode_cpus <= cpus, plan
            assert plan.num_cpus > 0 and plan.threads >= 1
    # the hang: two replicas holding a CPU each on 2 CPUs
    with pytest.raises(mz.ConfigError, match=r"nothing would be left to read and decode.*hang"):
        plan_resources(RayOptions(num_replicas=2, num_cpus=1), {"CPU": 2.0})
    gpu = plan_resources(RayOptions(), {"CPU": 16.0, "GPU": 4.0})
    assert (gpu.num_replicas, gpu.num_gpus) == (4, 1.0)
    with pytest.raises(mz.ConfigError, match=r"num_gpus.*the cluster has 0 GPU"):
        plan_resources(RayOptions(num_gpus=1), {"CPU": 4.0})


_SHIM = textwrap.dedent(
    """
    import sys

    class _NoRay:
        def find_spec(self, name, path=None, target=None):
            if name == "ray" or name.startswith("ray."):
                raise ImportError(f"No module named {name!r} (hidden for this test)")
            return None

    sys.meta_path.insert(0, _NoRay())
    """
)

_NO_RAY = textwrap.dedent(
    """
    import sys
    import modelzoo as mz
    import modelzoo.ray
    assert "ray" not in sys.modules  # importing modelzoo.ray does not import Ray
    try:
        mz.apply_model(None, None, backend="ray")
    except mz.ModelzooError as e:
        assert isinstance(e, ImportError)
        print("ERROR:", e)
    """
)


def test_without_ray_the_error_names_the_extra(tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(_SHIM)
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shim), env["PYTHONPATH"]])
    out = subprocess.run([sys.executable, "-c", _NO_RAY], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install 'modelzoo[ray]'" in out.stdout and "backend='ray'" in out.stdout
