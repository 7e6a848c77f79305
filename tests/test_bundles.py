"""Model bundles: the Launch docs' examples (import changed only), schemas,
persistence across processes, immutability, refusals, apply_model and the zoo."""

import io
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import modelzoo as mz
from modelzoo.bundles import (
    BundleConfigError,
    ModelBundle,
    SchemaError,
    UnsafeArchiveError,
)
from modelzoo.bundles.artifacts import safe_extract
from modelzoo.bundles.zoo_source import load_bundle
from modelzoo.recipes import Recipe, recipe_of
from tests.images import write_good_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the seed examples, verbatim but for the imports ---------------------------------------------
# `from launch import LaunchClient` -> `from modelzoo.bundles import LaunchClient`; the docs'
# `class X(BaseModel): __root__: int` needs pydantic v1 semantics: `from pydantic.v1 import BaseModel`.
SEED_CALLABLE = '''
import os
import pickle
from pydantic.v1 import BaseModel
from modelzoo.bundles import LaunchClient


class MyRequestSchema(BaseModel):
    x: int
    y: str

class MyResponseSchema(BaseModel):
    __root__: int


def my_load_predict_fn(model):
    def returns_model_of_x_plus_len_of_y(x: int, y: str) -> int:
        """MyRequestSchema -> MyResponseSchema"""
        assert isinstance(x, int) and isinstance(y, str)
        return model(x) + len(y)

    return returns_model_of_x_plus_len_of_y


def my_load_model_fn():
    def my_model(x):
        return x * 2

    return my_model

BUNDLE_PARAMS = {
    "model_bundle_name": "test-bundle",
    "load_model_fn": my_load_model_fn,
    "load_predict_fn": my_load_predict_fn,
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "requirements": ["pytest==7.2.1", "numpy"],  # list your requirements here
    "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
}

client = LaunchClient(api_key=os.getenv("LAUNCH_API_KEY"))
response = client.create_model_bundle_from_callable_v2(**BUNDLE_PARAMS)
'''

SEED_APP_CONFIG = '''
import os
import pickle
from modelzoo.bundles import LaunchClient
from pydantic.v1 import BaseModel
from typing import List, Union
from typing_extensions import Literal


class MyRequestSchemaSingle(BaseModel):
    kind: Literal['single']
    x: int
    y: str

class MyRequestSchemaBatched(BaseModel):
    kind: Literal['batched']
    x: List[int]
    y: List[str]

class MyRequestSchema(BaseModel):
    __root__: Union[MyRequestSchemaSingle, MyRequestSchemaBatched]

class MyResponseSchema(BaseModel):
    __root__: Union[int, List[int]]


def my_load_predict_fn(app_config, model):
    def returns_model_of_x_plus_len_of_y(x: Union[int, List[int]], y: Union[str, List[str]]) -> Union[int, List[int]]:
        """MyRequestSchema -> MyResponseSchema"""
        if app_config["mode"] == "single":
            assert isinstance(x, int) and isinstance(y, str)
            return model(x) + len(y)

        result = []
        for x_i, y_i in zip(x, y):
            result.append(model(x_i) + len(y_i))
        return result

    return returns_model_of_x_plus_len_of_y


def my_load_model_fn(app_config):
    def my_model_single(x: int):
        return x * 2

    def my_model_batched(x: List[int]):
        return [my_model_single(x_i) for x_i in x]

    if app_config["mode"] == "single":
        return my_model_single

    return my_model_batched


BUNDLE_PARAMS_SINGLE = {
    "model_bundle_name": "test-bundle-single",
    "load_predict_fn": my_load_predict_fn,
    "load_model_fn": my_load_model_fn,
    "requirements": ["pytest==7.2.1", "numpy"],
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
    "app_config": {"mode": "single"},
}
BUNDLE_PARAMS_BATCHED = {
    "model_bundle_name": "test-bundle-batched",
    "load_predict_fn": my_load_predict_fn,
    "load_model_fn": my_load_model_fn,
    "requirements": ["pytest==7.2.1", "numpy"],
    "request_schema": MyRequestSchema,
    "response_schema": MyResponseSchema,
    "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
    "app_config": {"mode": "batched"},
}

client = LaunchClient(api_key=os.getenv("LAUNCH_API_KEY"))
bundle_single = client.create_model_bundle_from_callable_v2(**BUNDLE_PARAMS_SINGLE)
bundle_batch = client.create_model_bundle_from_callable_v2(**BUNDLE_PARAMS_BATCHED)
'''

# The docs' batched mode cannot work as written: load_model_fn returns my_model_batched (it takes a
# list), and predict_fn calls it on each element. The fixed variant calls it once on the list.
SEED_APP_CONFIG_FIXED = SEED_APP_CONFIG.replace(
    "for x_i, y_i in zip(x, y):\n            result.append(model(x_i) + len(y_i))",
    "for m_i, y_i in zip(model(x), y):\n            result.append(m_i + len(y_i))",
)
assert SEED_APP_CONFIG_FIXED != SEED_APP_CONFIG


def _run(code):
    ns = {"__name__": "__seed__"}
    exec(compile(code, "seed", "exec"), ns)
    return ns


def test_seed_callable_bundle_runs_and_enforces_its_schemas(bundle_home):
    ns = _run(SEED_CALLABLE)
    client, bundle_id = ns["client"], ns["response"].model_bundle_id
    bundle = client.get_model_bundle_v2(bundle_id)
    assert bundle.name == "test-bundle" and bundle.id == bundle_id and bundle.id.startswith("bun_")
    assert bundle.requirements == ("pytest==7.2.1", "numpy")
    assert bundle.flavor.framework["pytorch_image_tag"] == "1.7.1-cuda11.0-cudnn8-runtime"  # recorded
    model = bundle.to_model(input="request")
    with model:
        assert model.predict({"x": 3, "y": "ab"}) == 8  # predict_fn(**args): 3 * 2 + len("ab")
        with pytest.raises(SchemaError) as e:
            model.predict({"x": "a", "y": "b"})
    err = e.value
    assert (err.bundle, err.direction, err.field, err.value) == ("test-bundle", "request", "x", "a")
    assert "'test-bundle'" in str(err) and "field 'x' = 'a'" in str(err) and "MyRequestSchema" in str(err)
    # the response is checked too: a predict_fn breaking MyResponseSchema (__root__: int)
    bad = ModelBundle(
        "bad-response", load_model_fn=ns["my_load_model_fn"], load_predict_fn=lambda model: (lambda x, y: "many"),
        request_schema=ns["MyRequestSchema"], response_schema=ns["MyResponseSchema"], input="request",
    )
    with pytest.raises(SchemaError) as e:
        bad.to_model().predict({"x": 1, "y": "b"})
    assert e.value.direction == "response" and e.value.value == "many" and "response_schema" in str(e.value)
    # no schema means no check
    free = ModelBundle("free", model=len, load_predict_fn=lambda model: model, input="bytes")
    assert free.to_model().predict(b"abc") == 3  # a non-dict input is the single argument


def test_seed_app_config_single_and_batched(bundle_home):
    ns = _run(SEED_APP_CONFIG)
    client = ns["client"]
    as_written = client.get_model_bundle_v2(ns["bundle_batch"].model_bundle_id).to_model(input="request")
    with pytest.raises(TypeError, match="'int' object is not iterable"):  # the docs' own bug, see above
        as_written.predict({"kind": "batched", "x": [1, 2], "y": ["a", "bb"]})
    ns = _run(SEED_APP_CONFIG_FIXED)
    single = client.get_model_bundle_v2(ns["bundle_single"].model_bundle_id).to_model(input="request")
    batched = client.get_model_bundle_v2(ns["bundle_batch"].model_bundle_id).to_model(input="request")
    # load_model_fn(app_config) and load_predict_fn(app_config, model), config first, as Launch's server does;
    # the union's `kind` tag is validated, and not passed to a predict_fn that does not take it
    assert single.predict({"kind": "single", "x": 2, "y": "abc"}) == 7
    assert batched.predict({"kind": "batched", "x": [1, 2], "y": ["a", "bb"]}) == [3, 6]
    with pytest.raises(SchemaError, match="'test-bundle-batched'.*field 'x.1' = 'q'"):
        batched.predict({"kind": "batched", "x": [1, "q"], "y": ["a", "b"]})
    with pytest.raises(SchemaError, match="field 'x' = 'a'"):
        single.predict({"kind": "single", "x": "a", "y": "b"})


def test_wrong_arity_for_the_app_config_is_refused_at_creation_showing_both_conventions(bundle_home):
    ns = _run(SEED_CALLABLE)
    with pytest.raises(BundleConfigError) as e:
        ns["client"].create_model_bundle_from_callable_v2(
            model_bundle_name="arity", load_model_fn=ns["my_load_model_fn"], load_predict_fn=ns["my_load_predict_fn"],
            request_schema=None, response_schema=None, app_config={"mode": "single"},
        )
    msg = str(e.value)
    assert "load_model_fn(app_config) and load_predict_fn(app_config, model)" in msg
    assert "load_model_fn() and load_predict_fn(model)" in msg and "an app_config was given" in msg
    with pytest.raises(BundleConfigError, match="exactly one of load_model_fn"):
        ModelBundle("neither", load_predict_fn=lambda m: m)


def test_bundles_are_immutable_and_a_clone_shows_its_own_config(bundle_home):
    ns = _run(SEED_APP_CONFIG_FIXED)
    client = ns["client"]
    original_id = ns["bundle_single"].model_bundle_id
    original = client.get_model_bundle_v2(original_id)
    with pytest.raises(TypeError):
        original.app_config["mode"] = "batched"  # read-only
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        original.name = "other"  # frozen
    clone_id = client.clone_model_bundle_with_changes_v2(original_id, new_app_config={"mode": "batched"}).model_bundle_id
    latest = client.get_latest_model_bundle_v2("test-bundle-single")
    assert latest.id == clone_id != original_id
    assert dict(latest.app_config) == {"mode": "batched"}  # not the parent's (Launch's read API shows the parent's)
    assert latest.parent_id == original_id and latest.metadata["__cloned_from_bundle_id"] == original_id
    assert dict(client.get_model_bundle_v2(original_id).app_config) == {"mode": "single"}
    assert latest.to_model(input="request").predict({"kind": "batched", "x": [1], "y": ["ab"]}) == [4]
    # the same content gives the same id; the store keeps one record
    again = client.create_model_bundle_from_callable_v2(**ns["BUNDLE_PARAMS_SINGLE"]).model_bundle_id
    assert again == original_id
    names = [b.name for b in client.list_model_bundles_v2()]
    assert sorted(names) == ["test-bundle-batched", "test-bundle-single", "test-bundle-single"]


def _other_process(code, env_extra=None):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_second_process_runs_them_when_signed_by_this_user_else_needs_trust(bundle_home):
    ns = _run(SEED_CALLABLE)
    bundle_id = ns["response"].model_bundle_id
    code = f"""
        from modelzoo.bundles import LaunchClient, UntrustedBundleError
        client = LaunchClient()
        print("LIST", [(b.name, b.id) for b in client.list_model_bundles_v2()])
        bundle = client.get_model_bundle_v2({bundle_id!r})
        try:
            print("SIGNED", bundle.to_model(input="request").predict({{"x": 5, "y": "abc"}}))
        except UntrustedBundleError as e:
            print("REFUSED", e)
            print("TRUSTED", bundle.to_model(input="request", trust=True).predict({{"x": 5, "y": "abc"}}))
    """
    same_user = _other_process(code)
    assert same_user.returncode == 0, same_user.stderr
    assert f"LIST [('test-bundle', '{bundle_id}')]" in same_user.stdout
    assert "SIGNED 13" in same_user.stdout  # the record carries this user's signature
    other_key = _other_process(code, {"MODELZOO_TRUST_KEY": str(bundle_home / "someone-else.key")})
    assert other_key.returncode == 0, other_key.stderr
    assert "REFUSED" in other_key.stdout and "trust=True" in other_key.stdout
    assert "unpickling runs arbitrary code" in other_key.stdout and "TRUSTED 13" in other_key.stdout


def test_a_bundle_model_travels_as_its_signed_id_and_the_other_process_checks_the_signature(bundle_home):
    ns = _run(SEED_CALLABLE)
    bundle = ns["client"].get_model_bundle_v2(ns["response"].model_bundle_id)
    plain = recipe_of(bundle.to_model(input="request"))
    assert plain == Recipe.factory(load_bundle, bundle.id, input="request", input_fields={}, output="auto", validate=True)
    trusted = recipe_of(bundle.to_model(input="request", trust=True))  # the caller's trust, and only the caller's
    assert dict(trusted.kwargs) == {**plain.kwargs, "trust": True}
    code = f"""
        import pickle
        from modelzoo.bundles import UntrustedBundleError
        for name, blob in (("PLAIN", {pickle.dumps(plain).hex()!r}), ("TRUSTED", {pickle.dumps(trusted).hex()!r})):
            try:
                print(name, pickle.loads(bytes.fromhex(blob)).build().predict({{"x": 5, "y": "abc"}}))
            except UntrustedBundleError as e:
                print(name, "REFUSED", e)
    """
    same_user = _other_process(code)
    assert same_user.returncode == 0, same_user.stderr
    assert "PLAIN 13" in same_user.stdout and "TRUSTED 13" in same_user.stdout  # 5 * 2 + len("abc")
    other_key = _other_process(code, {"MODELZOO_TRUST_KEY": str(bundle_home / "someone-else.key")})
    assert other_key.returncode == 0, other_key.stderr
    assert "PLAIN REFUSED" in other_key.stdout and "trust=True" in other_key.stdout
    assert "TRUSTED 13" in other_key.stdout
    # a bundle that was never stored has no id another process can load: refused, saying how to store it
    loose = ModelBundle("loose", model=2, load_predict_fn=lambda model: lambda x: model * x, input="request")
    with pytest.raises(BundleConfigError, match="create_model_bundle_from_callable_v2"):
        recipe_of(loose.to_model())


# -- from directories ------------------------------------------------------------------------
def _seed_dirs(directory, predict_body="return model(x) + len(y)"):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "model.py"), "w") as f:
        f.write("def my_load_model_fn():\n    def my_model(x):\n        return x * 2\n\n    return my_model\n")
    with open(os.path.join(directory, "predict.py"), "w") as f:
        f.write(
            "def my_load_predict_fn(model):\n"
            "    def returns_model_of_x_plus_len_of_y(x: int, y: str) -> int:\n"
            "        assert isinstance(x, int) and isinstance(y, str)\n"
            f"        {predict_body}\n\n"
            "    return returns_model_of_x_plus_len_of_y\n"
        )
    # The docs' example writes this to predict_filename (overwriting predict.py): a bug in the docs.
    with open(os.path.join(directory, "requirements.txt"), "w") as f:
        f.write("\npytest==7.2.1\n# a comment\nnumpy  # trailing\n\n")


def _dirs_params(directory, ns, **kw):
    return {
        "model_bundle_name": "test-bundle",
        "base_paths": [directory],
        "load_predict_fn_module_path": "predict.my_load_predict_fn",
        "load_model_fn_module_path": "model.my_load_model_fn",
        "request_schema": ns["MyRequestSchema"],
        "response_schema": ns["MyResponseSchema"],
        "requirements_path": "requirements.txt",
        "pytorch_image_tag": "1.7.1-cuda11.0-cudnn8-runtime",
        **kw,
    }


def test_seed_dirs_bundle_isolated_modules_and_requirements(bundle_home, tmp_path):
    ns = _run(SEED_CALLABLE)
    client = ns["client"]
    first, second = str(tmp_path / "code_a"), str(tmp_path / "code_b")
    _seed_dirs(first)
    _seed_dirs(second, predict_body="return -(model(x) + len(y))")  # same module names, other behaviour
    a = client.get_model_bundle_v2(client.create_model_bundle_from_dirs_v2(**_dirs_params(first, ns)).model_bundle_id)
    b = client.get_model_bundle_v2(client.create_model_bundle_from_dirs_v2(
        **_dirs_params(second, ns, load_predict_fn_module_path="code_b.predict.my_load_predict_fn")).model_bundle_id)
    assert a.requirements == ("pytest==7.2.1", "numpy")  # blank lines and comments skipped
    assert a.flavor.flavor == "zip_artifact" and "predict" in a.flavor.modules
    ma, mb = a.to_model(input="request"), b.to_model(input="request")
    assert ma.predict({"x": 3, "y": "ab"}) == 8 and mb.predict({"x": 3, "y": "ab"}) == -8
    assert "predict" not in sys.modules and "model" not in sys.modules and "code_b" not in sys.modules
    with pytest.raises(SchemaError, match="field 'x' = 'a'"):
        ma.predict({"x": "a", "y": "b"})
    # an unknown module path lists the modules found in the zip
    with pytest.raises(BundleConfigError) as e:
        client.create_model_bundle_from_dirs_v2(**_dirs_params(first, ns, load_predict_fn_module_path="predictor.fn"))
    assert "'predictor'" in str(e.value) and "Modules found:" in str(e.value)
    assert "code_a.predict" in str(e.value) and "model" in str(e.value)


def test_zip_entries_outside_the_directory_are_refused(tmp_path):
    for bad in ("../evil.py", "/abs/evil.py", "pkg/../../evil.py"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("pkg/ok.py", "x = 1\n")
            zf.writestr(bad, "x = 2\n")
        dest = tmp_path / "out"
        with pytest.raises(UnsafeArchiveError, match="outside its directory"):
            safe_extract(buf.getvalue(), str(dest))
        assert not (tmp_path / "evil.py").exists() and not dest.exists()  # nothing extracted


# -- apply_model and the zoo ------------------------------------------------------------------
@pytest.fixture
def photos(tmp_path_factory, request):
    paths = write_good_images(str(tmp_path_factory.mktemp("bundle-photos")), n=6, size=(64, 48))
    ds = mz.Dataset(f"bundles-{request.node.name}"[:60], overwrite=True)
    ds.add_images(paths)
    yield ds
    ds.delete()


def _bytes_bundle(name="img-stats"):
    """Like the Nucleus seed: predict_fn(img_bytes); returns JSON, or raises on one image."""

    def load_predict_fn(model):
        def predict(img_bytes):
            if img_bytes[:4] == b"\x89PNG" and len(img_bytes) % 7 == 0:
                raise ValueError("unlucky png")
            return {"n_bytes": len(img_bytes), "jpeg": model(img_bytes)}

        return predict

    return ModelBundle(name, model=lambda b: b[:2] == b"\xff\xd8", load_predict_fn=load_predict_fn, input="bytes")


def test_apply_model_with_a_bytes_bundle_stores_json_as_plain_fields(bundle_home, photos):
    bundle = _bytes_bundle()
    report = photos.apply_model(bundle.to_model(), label_field="stats", num_workers=2)
    assert report.processed + report.failed == 6
    for sample in photos:
        size = os.path.getsize(sample.filepath)
        if sample.filepath.endswith(".png") and size % 7 == 0:
            assert sample["stats_n_bytes"] is None  # predict raised: that sample only
            continue
        assert sample["stats_n_bytes"] == size and sample["stats_jpeg"] == sample.filepath.endswith(".jpg")


def test_one_failing_sample_costs_that_sample_only(bundle_home, photos):
    def load_predict_fn(model):
        def predict(image):
            if image.shape[1] == 64 and image[0, 0, 0] == model:
                raise RuntimeError("bad pixel")
            return mz.Classification(label="wide" if image.shape[1] > image.shape[0] else "tall")
        return predict

    first = photos.first()
    from PIL import Image

    poison = int(np.asarray(Image.open(first.filepath).convert("RGB"))[0, 0, 0])
    bundle = ModelBundle("poisoned", model=poison, load_predict_fn=load_predict_fn, input="array")
    report = photos.apply_model(bundle.to_model(), label_field="shape", skip_failures=True, num_workers=0)
    assert report.failed >= 1 and report.processed == 6 - report.failed
    assert "bad pixel" in report.failures[0].message
    assert photos.count("shape") == report.processed
    with pytest.raises(mz.PredictionError, match="bad pixel"):
        photos.apply_model(bundle.to_model(), label_field="shape2", skip_failures=False, num_workers=0)


def test_zoo_keeps_bundle_versions_newest_by_default(bundle_home, zoo_env):
    ns = _run(SEED_APP_CONFIG_FIXED)
    client = ns["client"]
    v1 = client.get_model_bundle_v2(ns["bundle_single"].model_bundle_id)
    v2 = client.get_model_bundle_v2(client.clone_model_bundle_with_changes_v2(v1.id, {"mode": "batched"}).model_bundle_id)
    mz.register_zoo_model("test-bundle-single", v1)
    mz.register_zoo_model("test-bundle-single", v2)  # a second version of the same name
    with pytest.raises(mz.ZooError, match="already registered"):
        mz.register_zoo_model("test-bundle-single", v2)  # the same version twice
    newest = mz.load_zoo_model("test-bundle-single", input="request")
    assert newest.bundle.id == v2.id
    assert newest.predict({"kind": "batched", "x": [1, 2], "y": ["a", "b"]}) == [3, 5]
    exact = mz.load_zoo_model(f"test-bundle-single@{v1.id}", input="request")
    assert exact.bundle.id == v1.id and exact.predict({"kind": "single", "x": 1, "y": "a"}) == 3
    assert sorted(mz.list_zoo_models(pattern="test-bundle-single", versions=True)) == sorted(
        [f"test-bundle-single@{v1.id}", f"test-bundle-single@{v2.id}"])
