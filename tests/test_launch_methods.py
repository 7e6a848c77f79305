"""Launch's streaming, v1 and docker-image batch-job bundle methods on LaunchClient, run for real
(a real server process on loopback for the streaming bundle, the real mongod for the records)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelzoo.bundles import BundleConfigError, BundleNotFoundError, LaunchClient
from modelzoo.bundles.runnable import running_pids

SERVER = str(Path(__file__).resolve().parent / "seeds" / "launch_server.py")


def test_streaming_bundle_runs_its_streaming_command_when_it_has_no_other(bundle_home):
    client = LaunchClient()
    bid = client.create_model_bundle_from_streaming_enhanced_runnable_image_v2(
        model_bundle_name="streaming", request_schema=None, response_schema=None, repository="r", tag="t",
        streaming_command=[sys.executable, SERVER], env={"TEST_KEY": "test_value"},
        readiness_initial_delay_seconds=30,
    ).model_bundle_id
    bundle = client.get_model_bundle_v2(bid)
    assert bundle.flavor.flavor == "streaming_enhanced_runnable_image"
    assert bundle.flavor.streaming_predict_route == "/stream" and bundle.flavor.command == ()
    with bundle.to_model() as model:
        assert model.predict({"x": 4, "y": "abc"}) == 11
    assert running_pids() == []


class Doubler:
    def __call__(self, x):
        return 2 * x


def test_v1_methods_map_onto_v2(bundle_home):
    client = LaunchClient()
    env = {"framework_type": "pytorch", "pytorch_image_tag": "1.7.1"}
    bundle = client.create_model_bundle("v1-cls", env, predict_fn_or_cls=Doubler, app_config=None)
    assert bundle.flavor.framework == {"framework_type": "pytorch", "pytorch_image_tag": "1.7.1"}
    assert bundle.to_model(input="request").predict({"x": 21}) == 42
    fn = client.create_model_bundle(
        "v1-fn", env, load_predict_fn=lambda app_config, model: (lambda x: model * x * app_config["k"]),
        model=3, app_config={"k": 2},
    )
    assert client.get_model_bundle("v1-fn").id == fn.id
    assert client.get_model_bundle(fn).to_model(input="request").predict({"x": 5}) == 30
    clone = client.clone_model_bundle_with_changes("v1-fn", app_config={"k": 10})
    assert clone.parent_id == fn.id and clone.to_model(input="request").predict({"x": 5}) == 150
    assert {b.name for b in client.list_model_bundles()} == {"v1-cls", "v1-fn"}
    with pytest.raises(BundleConfigError, match="exactly one of"):
        client.create_model_bundle("v1-bad", env, load_predict_fn=lambda model: model)
    with pytest.raises(BundleConfigError, match="framework_type"):
        client.create_model_bundle("v1-bad", {"pytorch_image_tag": "1"}, predict_fn_or_cls=Doubler)


def test_docker_image_batch_job_bundles_are_recorded_and_listed(db):
    client = LaunchClient()
    db["docker_image_batch_job_bundles"].delete_many({})
    try:
        first = client.create_docker_image_batch_job_bundle(
            name="nightly", image_repository="repo", image_tag="1", command=["python", "job.py"], cpus="2",
        )["docker_image_batch_job_bundle_id"]
        second = client.create_docker_image_batch_job_bundle(
            name="nightly", image_repository="repo", image_tag="2", command=["python", "job.py"], gpus=1,
        )["docker_image_batch_job_bundle_id"]
        assert client.get_docker_image_batch_job_bundle(first).image_tag == "1"
        assert client.get_latest_docker_image_batch_job_bundle("nightly").id == second
        assert [b.id for b in client.list_docker_image_batch_job_bundles("nightly", "oldest")] == [first, second]
        with pytest.raises(BundleNotFoundError, match="nightly"):
            client.get_latest_docker_image_batch_job_bundle("nightlly")
    finally:
        db["docker_image_batch_job_bundles"].delete_many({})
