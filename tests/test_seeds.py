"""The seeds' examples (../shared/seeds/000-003: Nucleus, Launch, Tungstenkit, VESSL), copied into
tests/seeds/ as a user would copy them (only the import changed, plus the documented pydantic-2
change for ``__root__`` and the seed bugs listed in each guide's "known differences" table), run
through ``predict``, ``apply_model`` on real photographs, the zoo in a second process, and
``modelzoo serve`` with real HTTP requests. Expected values come from plain torch / torchvision /
PIL runs of the same weights, or from the arithmetic the examples state."""

from __future__ import annotations

import importlib.util
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image as PILImage

import modelzoo as mz
from modelzoo.bundles import LaunchClient
from modelzoo.testing import tiny_classifier, tiny_detector
from tests.images import write_photos
from tests.processes import child_env
from tests.served import Served

SEEDS = Path(__file__).resolve().parent / "seeds"
PHOTOS = ("astronaut", "chelsea", "coffee")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> List[str]:
    return write_photos(str(tmp_path_factory.mktemp("seed-photos")), PHOTOS)


@pytest.fixture
def dataset(photos, request):
    ds = mz.Dataset.from_images(photos, name=f"seeds-{request.node.name}"[:60], overwrite=True)
    try:
        yield ds
    finally:
        ds.delete()


def _manifest(path: Path, name: str, model_type: str, config: Dict[str, Any]) -> str:
    entry = {
        "name": name, "version": "1.0", "description": f"seed example {name}", "source": "tests/seeds",
        "license": "Apache-2.0", "size_bytes": 0, "tags": ["seed"],
        "requirements": {"packages": ["torch"], "cpu": True, "gpu": True}, "weights": None,
        "date_added": "2026-01-01", "training_data": "none", "model": {"type": model_type, "config": config},
    }
    path.write_text(json.dumps({"manifest_version": 1, "models": [entry]}))
    return str(path)


def _second_process(code: str, env: Dict[str, str], cwd: str) -> Any:
    """Runs ``code`` in a fresh interpreter; it prints one JSON line, returned decoded."""
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _import_from(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------------------------- Launch
def test_launch_callable_seed_predict_apply_zoo_and_serve(bundle_home, dataset, tmp_path):
    ns = runpy.run_path(str(SEEDS / "launch_callable.py"), run_name="__main__")
    bundle = ns["client"].get_latest_model_bundle_v2("test-bundle")
    model = bundle.to_model(input="request")
    assert model.predict({"x": 3, "y": "ab"}) == 3 * 2 + 2

    xs, ys = [4, 7, 11], ["a", "bcd", ""]
    dataset.set_values("x", xs)
    dataset.set_values("y", ys)
    report = dataset.apply_model(bundle.to_model(input="request", input_fields={"x": "x", "y": "y"}), label_field="answer")
    assert report.processed == 3 and report.failed == 0
    assert dataset.values("answer") == [x * 2 + len(y) for x, y in zip(xs, ys)]

    # the zoo, in a second process: the stored bundle by name (its pickle needs trust=True there)
    manifest = _manifest(tmp_path / "m.json", "seed-callable", "modelzoo.bundles.StoredBundleModel",
                         {"bundle": "test-bundle", "trust": True, "input": "request"})
    env = child_env(MODELZOO_MANIFEST_PATHS=manifest, MODELZOO_HOME=os.environ["MODELZOO_HOME"], PORT=None)
    got = _second_process(
        "import json, modelzoo as mz; m = mz.load_zoo_model('seed-callable'); "
        "print(json.dumps(m.predict({'x': 5, 'y': 'abc'})))", env, str(tmp_path))
    assert got == 5 * 2 + 3
    server = None
    try:
        server = Served(["seed-callable"], env)
        r = server.post({"x": 20, "y": "abcd"})
        assert r.status_code == 200 and r.json() == 44
        r = server.post({"x": 20, "yy": "abcd"})  # a misspelled argument: named, with the close match
        assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["yy"]
        assert "'yy'" in r.json()["detail"] and "Did you mean 'y'?" in r.json()["detail"]
    finally:
        if server is not None:
            server.kill()


def test_launch_dirs_seed(bundle_home):
    ns = runpy.run_path(str(SEEDS / "launch_dirs.py"), run_name="__main__")
    assert not os.path.exists(ns["directory"])  # the demo cleaned up: the bundle holds its own copy
    bundle = ns["client"].get_latest_model_bundle_v2("test-bundle")
    assert bundle.requirements == ("pytest==7.2.1", "numpy")
    assert bundle.to_model(input="request").predict({"x": 1, "y": "abc"}) == 5


def test_launch_app_config_seed_single_and_batched(bundle_home, dataset):
    ns = runpy.run_path(str(SEEDS / "launch_app_config.py"), run_name="__main__")
    client = ns["client"]
    single = client.get_model_bundle_v2(ns["bundle_single"].model_bundle_id).to_model(input="request")
    batched = client.get_model_bundle_v2(ns["bundle_batch"].model_bundle_id).to_model(input="request")
    assert single.predict({"kind": "single", "x": 3, "y": "ab"}) == 8
    assert batched.predict({"kind": "batched", "x": [1, 2, 3], "y": ["a", "", "bcd"]}) == [3, 4, 9]

    dataset.set_values("kind", ["single"] * 3)
    dataset.set_values("n", [1, 2, 3])
    dataset.set_values("text", ["x", "yy", "zzz"])
    model = client.get_model_bundle_v2(ns["bundle_single"].model_bundle_id).to_model(
        input="request", input_fields={"kind": "kind", "x": "n", "y": "text"})
    assert dataset.apply_model(model, label_field="sum").failed == 0
    assert dataset.values("sum") == [1 * 2 + 1, 2 * 2 + 2, 3 * 2 + 3]


def test_launch_runnable_seed_over_photos(bundle_home, dataset):
    from modelzoo.bundles.runnable import running_pids

    ns = runpy.run_path(str(SEEDS / "launch_runnable.py"), run_name="__main__")
    bundle = ns["client"].get_latest_model_bundle_v2("test-bundle")
    dataset.set_values("x", [1, 2, 3])
    dataset.set_values("y", ["", "a", "bb"])
    try:
        with bundle.to_model(input_fields={"x": "x", "y": "y"}) as model:
            assert model.predict({"x": 3, "y": "ab"}) == 8
            report = dataset.apply_model(model, label_field="answer", num_workers=0)
        assert report.failed == 0 and dataset.values("answer") == [2, 5, 8]
    finally:
        leftover = running_pids()
    assert leftover == []


def test_launch_and_nucleus_seeds_from_a_second_process_and_served(bundle_home, photos, tmp_path, monkeypatch):
    weights = tmp_path / "detector.pth"
    torch.save(tiny_detector(seed=3).state_dict(), weights)
    monkeypatch.setenv("SEED_DETECTOR_WEIGHTS", str(weights))
    runpy.run_path(str(SEEDS / "launch_dirs.py"), run_name="__main__")
    runpy.run_path(str(SEEDS / "launch_app_config.py"), run_name="__main__")
    runpy.run_path(str(SEEDS / "launch_runnable.py"), run_name="__main__")  # also named "test-bundle": newest wins
    ns = runpy.run_path(str(SEEDS / "nucleus_detector.py"), run_name="__main__")
    LaunchClient().create_model_bundle_from_callable_v2(
        model_bundle_name="seed-nucleus", load_model_fn=ns["load_model_fn"], load_predict_fn=ns["load_predict_fn"],
        request_schema=None, response_schema=None,
    )
    [dirs_id] = [b.id for b in LaunchClient().list_model_bundles_v2() if b.flavor.flavor == "zip_artifact"]
    entries = []
    for name, config in (("seed-dirs", {"bundle": dirs_id, "trust": True, "input": "request"}),
                         ("seed-batched", {"bundle": "test-bundle-batched", "trust": True, "input": "request"}),
                         ("seed-runnable", {"bundle": "test-bundle", "trust": True}),
                         ("seed-nucleus", {"bundle": "seed-nucleus", "trust": True})):
        path = tmp_path / f"{name}.json"
        _manifest(path, name, "modelzoo.bundles.StoredBundleModel", config)
        entries.append(str(path))
    env = child_env(MODELZOO_MANIFEST_PATHS=os.pathsep.join(entries), MODELZOO_HOME=os.environ["MODELZOO_HOME"],
                    SEED_DETECTOR_WEIGHTS=str(weights), PORT=None)
    got = _second_process(
        "import json, modelzoo as mz\n"
        "out = [mz.load_zoo_model('seed-dirs').predict({'x': 1, 'y': 'abc'}),\n"
        "       mz.load_zoo_model('seed-batched').predict({'kind': 'batched', 'x': [1, 2], 'y': ['a', 'bb']})]\n"
        "with mz.load_zoo_model('seed-runnable') as m:\n"
        "    out.append(m.predict({'x': 3, 'y': 'ab'}))\n"
        f"dets = mz.load_zoo_model('seed-nucleus').predict(open({photos[1]!r}, 'rb').read())\n"
        "out.append([d.bounding_box for d in dets.detections])\n"
        "print(json.dumps(out))", env, str(tmp_path))
    assert got[:3] == [5, [3, 6], 8]
    image = PILImage.open(photos[1]).convert("RGB")
    with torch.no_grad():
        ref = tiny_detector(seed=3).eval()([TF.to_tensor(image)])[0]
    w, h = image.size
    np.testing.assert_allclose(got[3], [[x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h]
                                        for x1, y1, x2, y2 in ref["boxes"].tolist()], atol=1e-5)
    server = None
    try:
        server = Served(["seed-batched"], env, cwd=str(tmp_path))
        r = server.post({"kind": "batched", "x": [4, 5], "y": ["", "abc"]})
        assert r.status_code == 200 and r.json() == [8, 13]
    finally:
        if server is not None:
            server.kill()


# --------------------------------------------------------------------------------------------- Nucleus
def test_nucleus_seed_boxes_match_torchvision_and_load_in_the_nucleus_client(bundle_home, dataset, tmp_path, monkeypatch):
    from nucleus import BoxPrediction

    weights = tmp_path / "detector.pth"
    torch.save(tiny_detector(seed=3).state_dict(), weights)
    monkeypatch.setenv("SEED_DETECTOR_WEIGHTS", str(weights))
    ns = runpy.run_path(str(SEEDS / "nucleus_detector.py"), run_name="__main__")
    bundle_id = LaunchClient().create_model_bundle_from_callable_v2(
        model_bundle_name="seed-nucleus", load_model_fn=ns["load_model_fn"], load_predict_fn=ns["load_predict_fn"],
        request_schema=None, response_schema=None, input="bytes",
    ).model_bundle_id
    model = LaunchClient().get_model_bundle_v2(bundle_id).to_model()
    assert dataset.apply_model(model, label_field="boxes").failed == 0

    reference = tiny_detector(seed=3).eval()
    for sample in dataset:
        image = PILImage.open(sample.filepath).convert("RGB")
        with torch.no_grad():
            ref = reference([TF.to_tensor(image)])[0]
        w, h = image.size
        expected = [[x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h] for x1, y1, x2, y2 in ref["boxes"].tolist()]
        got = [d.bounding_box for d in sample.boxes.detections]
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose(got, expected, atol=1e-5)
        records = sample.boxes.to_nucleus(w, h, reference_id=os.path.basename(sample.filepath))
        loaded = [BoxPrediction.from_json(r) for r in records]
        assert [p.reference_id for p in loaded] == [os.path.basename(sample.filepath)] * len(loaded)
        np.testing.assert_allclose([p.x for p in loaded], [b[0] for b in ref["boxes"].tolist()], atol=1e-3)


# --------------------------------------------------------------------------------------------- Tungsten
@pytest.fixture
def build_dir(tmp_path):
    """The user's build directory: the seed file and its weights.pth, as `tungsten build` packages them."""
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(SEEDS / "tungsten_detection.py", build / "tungsten_detection.py")
    torch.save(tiny_detector(seed=5).state_dict(), build / "weights.pth")
    yield build
    sys.modules.pop("tungsten_detection", None)


def test_tungsten_detection_seed_runs_in_its_build_directory(build_dir, dataset, tmp_path, monkeypatch, zoo_env):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no weights.pth here: setup reads the build directory's
    module = _import_from(build_dir / "tungsten_detection.py", "tungsten_detection")
    model = module.ObjectDetectionModel()
    assert model.build_dir == str(build_dir)

    reference = tiny_detector(seed=5).eval()
    first = dataset.first().filepath
    image = PILImage.open(first).convert("RGB")
    with torch.no_grad():
        ref = reference([TF.to_tensor(image)])[0]
    out = model.predict(module.Input(image=module.Image.from_path(first)))
    assert [[d.bbox.xmin, d.bbox.ymin, d.bbox.xmax, d.bbox.ymax] for d in out.detections] == [
        [int(v) for v in box] for box in ref["boxes"].tolist()]
    outputs, demos = model.predict_demo([module.Input(image=module.Image.from_path(first))])
    assert outputs == [out] and demos[0].result.size == image.size

    assert dataset.apply_model(model, label_field="det").failed == 0
    sample = dataset.first()
    w, h = image.size
    np.testing.assert_allclose(
        [d.bounding_box for d in sample.det.detections],
        [[int(x1) / w, int(y1) / h, (int(x2) - int(x1)) / w, (int(y2) - int(y1)) / h]
         for x1, y1, x2, y2 in ref["boxes"].tolist()], atol=1e-6)
    assert os.getcwd() == str(elsewhere)  # restored

    # the zoo in a second process, started elsewhere, and `modelzoo serve`
    manifest = _manifest(tmp_path / "m.json", "seed-tungsten-detection", "tungsten_detection.ObjectDetectionModel", {})
    env = child_env(MODELZOO_MANIFEST_PATHS=manifest, PORT=None)
    env["PYTHONPATH"] = os.pathsep.join([str(build_dir), env["PYTHONPATH"]])
    got = _second_process(
        "import json, modelzoo as mz; m = mz.load_zoo_model('seed-tungsten-detection'); "
        f"o = m.predict({{'image': {first!r}}}); print(json.dumps([d.bbox.xmin for d in o.detections]))",
        env, str(elsewhere))
    assert got == [int(b[0]) for b in ref["boxes"].tolist()]
    server = None
    try:
        server = Served(["seed-tungsten-detection"], env, cwd=str(elsewhere))
        r = server.post({"image": first})
        assert r.status_code == 200, r.text
        assert [d["bbox"]["xmin"] for d in r.json()["detections"]] == got
    finally:
        if server is not None:
            server.kill()


def test_tungsten_options_seed_misspelled_option_is_refused_in_python_and_over_http(tmp_path, zoo_env):
    from modelzoo.tungsten import TungstenInputError
    from tests.seeds.tungsten_options import Input, TextToImageModel, colour_of

    model = TextToImageModel()
    out = model.predict([Input(prompt="a cat", width=256), Input(prompt="a dog", width=256)])
    assert [o.image.size for o in out] == [(256, 128)] * 2
    assert out[0].image.to_pil_image().getpixel((0, 0)) == colour_of("a cat")
    with pytest.raises(TungstenInputError, match="'widht' is not a field of Input. Did you mean 'width'?"):
        model.predict({"prompt": "a cat", "widht": 256})
    with pytest.raises(ValueError, match="Did you mean 'height'"):
        Input(prompt="a cat", hieght=256)

    manifest = _manifest(tmp_path / "m.json", "seed-tungsten-options", "tests.seeds.tungsten_options.TextToImageModel", {})
    server = None
    try:
        server = Served(["seed-tungsten-options"], child_env(MODELZOO_MANIFEST_PATHS=manifest, PORT=None))
        ok = server.post({"prompt": "a cat", "width": 256})
        assert ok.status_code == 200
        r = server.post({"prompt": "a cat", "widht": 256})
        assert r.status_code == 422
        assert "'widht'" in r.json()["detail"] and "Did you mean 'width'?" in r.json()["detail"]
    finally:
        if server is not None:
            server.kill()


# --------------------------------------------------------------------------------------------- VESSL
def test_vessl_seed_registered_applied_loaded_elsewhere_and_served(dataset, tmp_path, monkeypatch, zoo_env):
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)  # where the user saved model.pt and registers from
    net = tiny_classifier(seed=7).eval()
    torch.save(net.state_dict(), workdir / "model.pt")
    from tests.seeds import vessl_runner

    registered = vessl_runner.register()
    assert registered.name == "seed-vessl-runner/1"
    (workdir / "model.pt").unlink()  # the registered copy in the model volume is what loads

    def expected(path: str) -> Dict[str, Any]:
        image = PILImage.open(path).convert("RGB").resize((32, 32))
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)
        with torch.no_grad():
            logits = net(x)
        return {"class_index": int(logits.argmax(1)), "score": float(logits.softmax(1).max())}

    model = mz.load_zoo_model("seed-vessl-runner/1")
    assert dataset.apply_model(model, label_field="cls").failed == 0
    for sample in dataset:
        want = expected(sample.filepath)
        assert sample["cls_class_index"] == want["class_index"]
        assert sample["cls_score"] == pytest.approx(want["score"], abs=1e-6)

    first = dataset.first().filepath
    env = child_env(PORT=None)
    other = tmp_path / "other"
    other.mkdir()
    got = _second_process(
        "import json, modelzoo as mz; m = mz.load_zoo_model('seed-vessl-runner/1'); "
        f"print(json.dumps(m.predict(open({first!r}, 'rb').read())))", env, str(other))
    assert got["class_index"] == expected(first)["class_index"]
    server = None
    try:
        server = Served(["seed-vessl-runner/1"], env, cwd=str(other))
        import httpx

        with open(first, "rb") as f:
            r = httpx.post(server.url + "/predict", content=f.read(), headers={"content-type": "image/jpeg"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["class_index"] == expected(first)["class_index"]
    finally:
        if server is not None:
            server.kill()


