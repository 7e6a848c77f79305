"""Registrations that last: what register_zoo_model keeps is found by a real
second process (``python -c`` and ``modelzoo serve NAME`` on loopback); what
only this process can rebuild stays here and says so; a bundle made with the
Launch client is a zoo model by its own name."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import subprocess
import sys
import textwrap

import httpx
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo import zoo
from modelzoo.testing import TASKS
from modelzoo.zoo import persist
from tests.images import photo
from tests.processes import REPO, child_env

pytestmark = pytest.mark.usefixtures("zoo_env")

USER_MODULE = '''
"""The user's own models, in a module of their own (importable by a later process)."""
from typing import List

import numpy as np

import modelzoo as mz
from modelzoo.tungsten import BaseIO, define_model


class Text(BaseIO):
    text: str


@define_model(input=Text, output=Text, batch_size=2)
class Shout:
    def predict(self, inputs: List[Text]) -> List[Text]:
        return [Text(text=i.text.upper() + "!") for i in inputs]


class Brightness(mz.Model):
    def predict(self, image):
        return mz.Classification(label="bright" if np.asarray(image).mean() > 100 else "dark")


def make_brightness(**overrides):
    return Brightness()


def load_model_fn():
    def double(x):
        return x * 2

    return double


def load_predict_fn(model):
    def predict(x: int, y: str) -> int:
        return model(x) + len(y)

    return predict
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "persist_user_models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(pkg))
    yield str(pkg)
    sys.modules.pop("persist_user_models", None)


def _child(code: str, user_dir: str) -> subprocess.CompletedProcess:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([user_dir, env["PYTHONPATH"]])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          cwd=str(REPO), timeout=600)


def _classifier_config():
    return mz.TorchImageModelConfig({**TASKS["classification"], "device": "cpu", "optimize": False})


def test_what_can_be_rebuilt_is_kept_and_a_second_process_loads_it(user_module, caplog):
    import persist_user_models as user

    config_info = zoo.register_zoo_model("kept-config", _classifier_config(), tags=["classification", "mine"])
    assert config_info.metadata["persisted"] and config_info.zoo_source == "local"
    zoo.register_zoo_model("kept-tungsten", user.Shout)
    zoo.register_zoo_model("kept-factory", "persist_user_models:make_brightness")
    zoo.register_zoo_model("kept-class", user.Brightness, version="2.0")
    with caplog.at_level(logging.WARNING, logger="modelzoo.zoo"):
        here = zoo.register_zoo_model("here-only", lambda **kw: user.Brightness())
    assert here.metadata["persisted"] is None and "lambda" in here.metadata["in_process_only"]
    assert "registered in this process only: it is a lambda" in caplog.text
    with pytest.raises(mz.ZooError, match="cannot be kept for other processes: it is a lambda"):
        zoo.register_zoo_model("must-keep", lambda **kw: user.Brightness(), persist=True)

    records = sorted(os.path.relpath(os.path.join(d, f), persist.registered_root())
                     for d, _, files in os.walk(persist.registered_root()) for f in files)
    assert records == ["kept-class/2.0.json", "kept-config/1.0.json", "kept-factory/1.0.json", "kept-tungsten/1.0.json"]
    assert "here-only" in zoo.list_zoo_models(source="registered")

    image = photo("chelsea")
    expected = zoo.load_zoo_model("kept-config").predict(image)
    result = _child('''
        import json, modelzoo, skimage.data
        names = modelzoo.list_zoo_models(source="local")
        image = skimage.data.chelsea()
        label = modelzoo.load_zoo_model("kept-config").predict(image)
        shout = modelzoo.load_zoo_model("kept-tungsten")
        print(json.dumps({
            "names": names,
            "config": [label.label, label.confidence],
            "tungsten": shout.predict({"text": "hi"}).text,
            "factory": modelzoo.load_zoo_model("kept-factory").predict(image).label,
            "class": modelzoo.get_zoo_model_info("kept-class").key,
            "tags": list(modelzoo.get_zoo_model_info("kept-config").tags),
            "here-only": "here-only" in modelzoo.list_zoo_models(),
        }))
    ''', user_module)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["names"] == ["kept-class", "kept-config", "kept-factory", "kept-tungsten"]
    assert seen["config"][0] == expected.label and seen["config"][1] == pytest.approx(expected.confidence, abs=1e-6)
    assert seen["tungsten"] == "HI!"
    assert seen["factory"] == ("bright" if image.mean() > 100 else "dark")
    assert seen["class"] == "kept-class@2.0" and seen["tags"] == ["classification", "mine"]
    assert seen["here-only"] is False

    zoo.unregister_zoo_model("kept-factory")
    assert "kept-factory" not in zoo.list_zoo_models()
    assert not os.path.exists(os.path.join(persist.registered_root(), "kept-factory"))


def test_modelzoo_serve_finds_a_kept_registration(user_module, tmp_path):
    from tests.test_serve import Served

    zoo.register_zoo_model("served-config", _classifier_config())
    image = photo("astronaut")[::4, ::4]
    expected = zoo.load_zoo_model("served-config").predict(image)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    env = child_env(PORT=None)
    server = Served(["served-config", "--port", "0"], env)
    try:
        answer = httpx.post(server.url + "/predict", json={"image": base64.b64encode(buf.getvalue()).decode()}, timeout=120)
        assert answer.status_code == 200, answer.text
        label = answer.json()
        assert label["label"] == expected.label
        assert label["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
    finally:
        server.kill()


def test_a_kept_record_edited_by_hand_is_refused(user_module, tmp_path, monkeypatch):
    from modelzoo.errors import UntrustedError

    monkeypatch.setenv("MODELZOO_TRUST_KEY", str(tmp_path / "trust.key"))
    zoo.register_zoo_model("kept-edited", "persist_user_models:make_brightness")
    path = os.path.join(persist.registered_root(), "kept-edited", "1.0.json")
    record = json.load(open(path))
    record["payload"]["model"]["target"] = "os.system"
    json.dump(record, open(path, "w"))
    with pytest.raises(UntrustedError, match="kept-edited"):
        zoo.load_zoo_model("kept-edited")


def test_a_launch_bundle_is_a_zoo_model_by_its_own_name(user_module, bundle_home):
    import persist_user_models as user

    from modelzoo.bundles import LaunchClient

    client = LaunchClient(api_key="unused")
    first, second = (
        client.create_model_bundle_from_callable_v2(
            model_bundle_name="user-bundle", load_predict_fn=user.load_predict_fn, load_model_fn=user.load_model_fn,
            requirements=[], pytorch_image_tag="1.7.1-cuda11.0-cudnn8-runtime", metadata={"version": v},
        )
        for v in (1, 2)
    )
    newest = zoo.load_zoo_model("user-bundle", input="request")
    assert newest.bundle.id == second.model_bundle_id
    assert newest.predict({"x": 3, "y": "ab"}) == 8
    exact = zoo.load_zoo_model(f"user-bundle@{first.model_bundle_id}", input="request")
    assert exact.bundle.id == first.model_bundle_id
    assert zoo.get_zoo_model_info("user-bundle").zoo_source == "bundles"

    result = _child(f'''
        import modelzoo
        model = modelzoo.load_zoo_model("user-bundle", input="request", trust=True)
        exact = modelzoo.load_zoo_model("user-bundle@{first.model_bundle_id}", input="request", trust=True)
        print(model.bundle.id, exact.bundle.id, model.predict({{"x": 5, "y": "abc"}}))
    ''', user_module)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [second.model_bundle_id, first.model_bundle_id, "13"]

