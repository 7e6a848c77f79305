"""The mistakes a new user of each seed system makes (issue #24), one row each: the error names
the thing (the key, the function, the folder, the port) and says what to write instead. Every
row runs real code: real models, a real mongod, real processes and HTTP on loopback."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import List

import httpx
import pytest
from pydantic import BaseModel

import modelzoo as mz
import modelzoo.vessl as vessl
from modelzoo.bundles import BundleConfigError, BundleServerError, LaunchClient, ModelBundle, SchemaError, runnable
from modelzoo.bundles.runnable import running_pids
from modelzoo.engine.report import ApplyReport, Failure
from modelzoo.tungsten import BaseIO, Option, TungstenDefinitionError, TungstenInputError, define_model
from modelzoo.vessl import RunnerDefinitionError
from modelzoo.workdir import ModelFileNotFoundError
from tests.images import write_bad_images, write_photos

SERVER = str(Path(__file__).resolve().parent / "seeds" / "launch_server.py")


class Req(BaseModel):
    x: int
    y: str


class Prompt(BaseIO):
    prompt: str
    width: int = Option(128, choices=[128, 256])


class Picture(BaseIO):
    width: int


@define_model(input=Prompt, output=Picture)
class Painter:
    def predict(self, inputs):
        return [Picture(width=i.width) for i in inputs]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> List[str]:
    return write_photos(str(tmp_path_factory.mktemp("mistake-photos")), ("astronaut", "chelsea", "coffee"))


@pytest.fixture
def dataset(photos, request):
    ds = mz.Dataset.from_images(photos, name=f"mistakes-{request.node.name}"[:60], overwrite=True)
    try:
        yield ds
    finally:
        ds.delete()


# -- unknown keys ---------------------------------------------------------------------------------
def test_misspelled_tungsten_option_in_python():
    with pytest.raises(TungstenInputError) as e:
        Painter().predict({"prompt": "a cat", "widht": 256})
    assert "'widht' is not a field of Prompt. Did you mean 'width'?" in str(e.value)
    assert Painter().predict({"prompt": "a cat", "width": 256}).width == 256


def test_misspelled_tungsten_option_over_http():
    from modelzoo.serving.server import ModelServer

    with ModelServer(Painter(), name="painter", port=0, max_batch_size=2, max_wait_ms=1) as server:
        r = httpx.post(server.url + "/predict", json={"prompt": "a cat", "widht": 256}, timeout=60)
        assert r.status_code == 422
        assert "'widht'" in r.json()["detail"] and "Did you mean 'width'?" in r.json()["detail"]
        assert httpx.post(server.url + "/predict", json={"prompt": "a cat", "width": 256}, timeout=60).json() == {"width": 256}


def test_misspelled_key_of_any_typed_model_over_http():
    from modelzoo.serving.server import ModelServer
    from tests.serve_models import Repeater

    with ModelServer(Repeater(), name="repeater", port=0, max_batch_size=2, max_wait_ms=1) as server:
        r = httpx.post(server.url + "/predict", json={"text": "ab", "repaet": 2}, timeout=60)
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["repaet"]
        assert "Did you mean 'repeat'?" in r.json()["detail"]


def test_misspelled_define_model_keyword():
    with pytest.raises(TungstenDefinitionError, match="'batchsize'. Did you mean 'batch_size'?"):
        define_model(input=Prompt, output=Picture, batchsize=4)


def test_misspelled_bundle_request_argument():
    bundle = ModelBundle("adder", model=None, load_model_fn=lambda: 2, load_predict_fn=lambda m: (lambda x, y: m * x + len(y)),
                         request_schema=Req, input="request")
    model = bundle.to_model()
    assert model.predict({"x": 3, "y": "ab"}) == 8
    with pytest.raises(SchemaError) as e:
        model.predict({"x": 3, "yy": "ab"})
    assert e.value.field == "yy" and "Did you mean 'y'?" in str(e.value) and "Its fields: x, y" in str(e.value)


def test_near_miss_vessl_hook_is_refused_at_registration(zoo_env):
    class Runner(vessl.RunnerBase):
        @staticmethod
        def load_model(props, artifacts):
            return 2

        @staticmethod
        def preprocess(data):  # meant: preprocess_data
            return data * 10

        @staticmethod
        def predict(model, data):
            return model * data

    with pytest.raises(RunnerDefinitionError) as e:
        vessl.register_model("near-miss", runner_cls=Runner)
    msg = str(e.value)
    assert "defines preprocess" in msg and "Did you mean 'preprocess_data'?" in msg and "'_preprocess'" in msg

    class Helper(vessl.RunnerBase):  # a helper of one's own, underscored, is fine
        @staticmethod
        def load_model(props, artifacts):
            return 2

        @staticmethod
        def _preprocess(data):
            return data

        @staticmethod
        def predict(model, data):
            return model * data

    assert vessl.register_model("helper-ok", runner_cls=Helper).name == "helper-ok/1"


class _TextIn(BaseModel):
    text: str
    repeat: int = 1


class _TypedRunner(vessl.RunnerBase[_TextIn, None]):
    @staticmethod
    def load_model(props, artifacts):
        return None

    @staticmethod
    def predict(model, data):
        return {"text": data.text * data.repeat}


def test_misspelled_key_of_a_typed_vessl_request(zoo_env):
    vessl.register_model("typed-keys", runner_cls=_TypedRunner)
    model = mz.load_zoo_model("typed-keys/1")
    assert model.predict({"text": "ab", "repeat": 2}) == {"text": "abab"}
    with pytest.raises(mz.RequestError) as e:
        model.predict({"text": "ab", "repaet": 2})
    assert e.value.field == "repaet" and "Did you mean 'repeat'?" in str(e.value)


def test_misspelled_manifest_entry_setting(tmp_path, zoo_env, monkeypatch):
    entry = {
        "name": "typo", "version": "1.0", "description": "d", "source": "s", "license": "MIT", "size_bytes": 0,
        "tags": [], "requirements": {"packages": [], "cpu": True, "gpu": True}, "weights": None,
        "date_added": "2026-01-01", "training_data": "none",
        "model": {"type": "modelzoo.bundles.StoredBundleModel", "config": {"bundel": "x"}},
    }
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"manifest_version": 1, "models": [entry]}))
    monkeypatch.setenv(mz.zoo.ENV_MANIFEST_PATHS, str(path))
    mz.zoo.reload_zoo()
    with pytest.raises(mz.ZooError) as e:
        mz.load_zoo_model("typo")
    assert "'bundel'" in str(e.value) and "Did you mean 'bundle'?" in str(e.value)


# -- Launch's calling conventions ---------------------------------------------------------------------
def _docstring_form(model, app_config=None):  # Launch's client docstring: load_predict_fn(model, app_config=None)
    scale = (app_config or {}).get("scale", 1)
    return lambda x: model * x * scale


def test_docstring_form_of_load_predict_fn_with_and_without_app_config(bundle_home):
    client = LaunchClient()
    for config, expected in ((None, 6), ({"scale": 10}, 60)):
        bid = client.create_model_bundle_from_callable_v2(
            model_bundle_name="docstring-form", load_predict_fn=_docstring_form, model=2, request_schema=None,
            response_schema=None, app_config=config, input="request",
        ).model_bundle_id
        assert client.get_model_bundle_v2(bid).to_model().predict({"x": 3}) == expected


def _forgets_return(model):
    def predict(x):
        return model * x


def test_load_predict_fn_that_returns_nothing_is_refused_at_load(bundle_home):
    bundle = ModelBundle("forgetful", model=2, load_predict_fn=_forgets_return, input="request")
    with pytest.raises(BundleConfigError) as e:
        with bundle.to_model():
            pass
    msg = str(e.value)
    assert "_forgets_return()" in msg and "returned NoneType" in msg and "return predict" in msg


def test_request_bundle_without_input_fields_is_refused_before_any_sample_runs(bundle_home, dataset):
    dataset.set_values("x", [1, 2, 3])
    dataset.set_values("text", ["a", "b", "c"])
    bundle = ModelBundle("needs-fields", model=2, load_predict_fn=lambda m: (lambda x, y: m * x + len(y)),
                         request_schema=Req, input="request")
    with pytest.raises(BundleConfigError) as e:
        dataset.apply_model(bundle.to_model(), label_field="out")
    msg = str(e.value)
    assert "no input_fields" in msg and "input_fields={'x': 'x', 'y': '<sample field>'}" in msg
    assert "filepath" in msg and "text" in msg
    with pytest.raises(BundleConfigError) as e:
        dataset.apply_model(bundle.to_model(input_fields={"x": "x", "y": "txt"}), label_field="out")
    assert "'y' -> 'txt'" in str(e.value) and "Did you mean 'text'?" in str(e.value)
    assert dataset.count("out") == 0  # nothing ran
    report = dataset.apply_model(bundle.to_model(input_fields={"x": "x", "y": "text"}), label_field="out")
    assert report.failed == 0 and dataset.values("out") == [3, 5, 7]


# -- working directories -----------------------------------------------------------------------------
def test_tungsten_setup_missing_relative_file_names_the_build_directory(tmp_path, monkeypatch):
    build = tmp_path / "build"
    build.mkdir()
    (build / "needs_weights.py").write_text(
        "from modelzoo.tungsten import BaseIO, define_model\n"
        "class I(BaseIO):\n    x: int\n"
        "class O(BaseIO):\n    y: int\n"
        "@define_model(input=I, output=O)\n"
        "class NeedsWeights:\n"
        "    def setup(self):\n        self.k = int(open('./weights.txt').read())\n"
        "    def predict(self, inputs):\n        return [O(y=self.k * i.x) for i in inputs]\n"
    )
    monkeypatch.syspath_prepend(str(build))
    monkeypatch.chdir(tmp_path)
    import needs_weights

    try:
        with pytest.raises(ModelFileNotFoundError) as e:
            needs_weights.NeedsWeights().predict({"x": 2})
        assert e.value.directory == str(build) and "'./weights.txt' not found in " + str(build) in str(e.value)
        assert isinstance(e.value, FileNotFoundError) and "build_dir=" in str(e.value)
        (build / "weights.txt").write_text("5")
        assert needs_weights.NeedsWeights().predict({"x": 2}).y == 10  # found in the build dir, not the cwd
        assert os.getcwd() == str(tmp_path)
    finally:
        sys.modules.pop("needs_weights", None)


class _OpensMissing(vessl.RunnerBase):
    @staticmethod
    def load_model(props, artifacts):
        return open("model.pt", "rb").read()

    @staticmethod
    def predict(model, data):
        return len(model)


def test_vessl_load_model_missing_relative_file_names_the_volume(zoo_env):
    vessl.register_model("opens-missing", runner_cls=_OpensMissing)
    with pytest.raises(ModelFileNotFoundError) as e:
        mz.load_zoo_model("opens-missing/1")
    assert e.value.directory.endswith(os.sep + "volume") or "volume" in e.value.directory
    assert "'model.pt' not found in" in str(e.value) and "artifacts=" in str(e.value)


# -- runnable bundles ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runnable_command_on_its_own_port_is_found_and_used(bundle_home):
    port = _free_port()  # stands for Launch's 5005 (fixed here, so that tests running at once do not collide)
    bid = LaunchClient().create_model_bundle_from_runnable_image_v2(
        model_bundle_name="fixed-port", request_schema=None, response_schema=None, repository="r", tag="t",
        command=[sys.executable, SERVER, str(port)], env={"TEST_KEY": "test_value", "PORT": str(port)},
        readiness_initial_delay_seconds=30,
    ).model_bundle_id
    with LaunchClient().get_model_bundle_v2(bid).to_model() as model:
        assert model._runner.port == port
        assert model.predict({"x": 3, "y": "ab"}) == 8
    assert running_pids() == []


def test_runnable_command_whose_port_is_taken_says_so(bundle_home):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        bid = LaunchClient().create_model_bundle_from_runnable_image_v2(
            model_bundle_name="taken-port", request_schema=None, response_schema=None, repository="r", tag="t",
            command=[sys.executable, SERVER, str(port)], env={"TEST_KEY": "test_value", "PORT": str(port)},
            readiness_initial_delay_seconds=30,
        ).model_bundle_id
        with pytest.raises(BundleServerError) as e:
            LaunchClient().get_model_bundle_v2(bid).to_model().predict({"x": 1, "y": ""})
    msg = str(e.value)
    assert f"127.0.0.1:{port} was already taken" in msg and "$PORT" in msg and "Address already in use" in msg
    assert running_pids() == []


def test_runnable_command_that_never_opens_a_port_ends_early_with_its_stderr(bundle_home, monkeypatch):
    monkeypatch.setattr(runnable, "CLOSED_GRACE_S", 0.5)
    bid = LaunchClient().create_model_bundle_from_runnable_image_v2(
        model_bundle_name="never-opens", request_schema=None, response_schema=None, repository="r", tag="t",
        command=[sys.executable, "-c", "import sys, time; print('loading weights', file=sys.stderr, flush=True); time.sleep(600)"],
        env={}, readiness_initial_delay_seconds=0, readiness_timeout_seconds=600,
    ).model_bundle_id
    with pytest.raises(BundleServerError) as e:
        LaunchClient().get_model_bundle_v2(bid).to_model().predict({"x": 1})
    assert "has not opened any port" in str(e.value) and "loading weights" in str(e.value)
    assert running_pids() == []


# -- seeds' conventions and messages -----------------------------------------------------------------------
def test_vessl_account_calls_are_accepted_locally(zoo_env):
    vessl.configure(access_token="secret", organization_name="my-org", project_name="my-project")
    assert vessl.settings()["organization_name"] == "my-org" and "secret" not in json.dumps(vessl.settings())
    assert vessl.create_model_repository("seed-repo", description="mine") == "seed-repo"
    assert vessl.read_model_repository("seed-repo")["description"] == "mine"
    assert "seed-repo" in vessl.list_model_repositories()
    with pytest.raises(mz.ConfigError, match="Did you mean 'organization_name'"):
        vessl.create_model_repository("seed-repo", organisation_name="my-org")


def test_apply_warning_counts_samples_and_frames_apart(dataset, tmp_path, caplog):
    bad = write_bad_images(str(tmp_path))
    dataset.add_images([next(iter(bad.values()))])
    with caplog.at_level(logging.WARNING, logger="modelzoo"):
        report = dataset.apply_model(mz.load_zoo_model("digits-cnn-torch"), label_field="d", progress=False)
    assert report.failed == 1
    assert "1 of 4 samples failed" in caplog.text
    videos = ApplyReport(processed=3, frames_processed=38, frames_failed=12,
                         failures=[Failure("v1", "v1.mp4", "bad", "load", frame_number=n) for n in range(12)])
    assert videos.failure_summary() == "1 of 3 samples (12 of 50 frames) failed"


# -- the real peers' signatures ------------------------------------------------------------------------
def test_launch_client_has_the_real_clients_18_bundle_methods():
    """Every call the real ``launch.LaunchClient`` accepts for its 18 bundle methods, ours accepts:
    the same parameters, kinds and defaults (recorded from the real source, see the JSON's
    ``source``); parameters of ours that Launch lacks are optional keywords."""
    import inspect

    real = json.loads((Path(__file__).resolve().parent / "seeds" / "launch_client_signatures.json").read_text())["methods"]
    assert len(real) == 18
    matching = []
    for name, params in real.items():
        ours = getattr(LaunchClient, name, None)
        assert ours is not None, f"LaunchClient.{name} is missing"
        sig = list(inspect.signature(ours).parameters.values())[1:]  # self
        by_name = {p.name: p for p in sig}
        for pname, kind, default in params:
            p = by_name.get(pname)
            assert p is not None, f"LaunchClient.{name} lacks {pname!r}"
            assert p.kind.name == kind, f"LaunchClient.{name}({pname}) is {p.kind.name}, Launch's is {kind}"
            if default is not None:
                # clone_model_bundle_with_changes_v2: UNSET keeps the config, as Launch's None does
                # (documented: an explicit None clears it here)
                assert p.default is not inspect.Parameter.empty and repr(p.default) in (default, "UNSET"), (name, pname)
        positional = [p.name for p in sig if p.kind.name == "POSITIONAL_OR_KEYWORD"]
        assert positional[: len([q for q in params if q[1] == "POSITIONAL_OR_KEYWORD"])] == [
            q[0] for q in params if q[1] == "POSITIONAL_OR_KEYWORD"], name
        extra = [p for p in sig if p.name not in {q[0] for q in params}]
        assert all(p.default is not inspect.Parameter.empty for p in extra), (name, [p.name for p in extra])
        matching.append(name)
    assert len(matching) == 18
