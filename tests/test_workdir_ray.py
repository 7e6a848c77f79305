"""The working directory of a model's own code on Ray workers: a Tungsten model's ``setup``
reads ``./factor.txt`` from its build directory, a VESSL runner's ``load_model`` reads
``model.txt`` from its model volume, while the driver and the workers started elsewhere.
Expected values are computed here with numpy from the same files."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
import modelzoo.vessl as vessl
from tests.images import write_photos
from tests.processes import REPO

ray = pytest.importorskip("ray")

MODEL_SOURCE = '''
import numpy as np
import modelzoo.vessl as vessl
from modelzoo.tungsten import BaseIO, Image, define_model


class In(BaseIO):
    image: Image


class Out(BaseIO):
    value: float


@define_model(input=In, output=Out)
class ScaledBrightness:
    def setup(self):
        self.factor = float(open("./factor.txt").read())

    def predict(self, inputs):
        return [Out(value=self.factor * float(inp.image.to_numpy().mean())) for inp in inputs]


class VolumeRunner(vessl.RunnerBase):
    @staticmethod
    def load_model(props, artifacts):
        return float(open("model.txt").read())

    @staticmethod
    def preprocess_data(data):
        from io import BytesIO

        from PIL import Image as PILImage

        return np.asarray(PILImage.open(BytesIO(data)).convert("RGB"))

    @staticmethod
    def predict(model, data):
        return {"value": model * float(data.mean())}
'''


@pytest.fixture(scope="module")
def setup_dirs(tmp_path_factory):
    build = tmp_path_factory.mktemp("ray-build")
    (build / "ray_build_model.py").write_text(MODEL_SOURCE)
    (build / "factor.txt").write_text("3")
    photos = write_photos(str(tmp_path_factory.mktemp("ray-photos")), ("chelsea", "coffee", "astronaut"))
    return build, photos


@pytest.fixture(scope="module")
def local_ray(setup_dirs, tmp_path_factory):
    build, _ = setup_dirs
    home = tmp_path_factory.mktemp("ray-home")
    temp_dir = tempfile.mkdtemp(prefix="mzwd", dir="/tmp")  # short: Ray's socket paths
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "MODELZOO_HOME")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(build), str(REPO), saved["PYTHONPATH"]]))
    os.environ["MODELZOO_HOME"] = str(home)  # the workers find the registered VESSL model there
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, logging_level="warning")
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            temp_dir in _cmdline(p) for p in os.listdir("/proc") if p.isdigit()
        ):
            time.sleep(0.2)


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.slow
def test_tungsten_build_dir_and_vessl_volume_on_ray_workers(local_ray, setup_dirs, tmp_path, monkeypatch):
    build, photos = setup_dirs
    monkeypatch.chdir(tmp_path)  # neither factor.txt nor model.txt here
    import sys

    sys.path.insert(0, str(build))
    try:
        import ray_build_model

        (tmp_path / "model.txt").write_text("5")
        vessl.register_model("ray-volume", runner_cls=ray_build_model.VolumeRunner, artifacts={"model.txt": "model.txt"})
        (tmp_path / "model.txt").unlink()
        means = {p: float(np.asarray(Image.open(p).convert("RGB")).mean()) for p in photos}
        ds = mz.Dataset.from_images(photos, name="workdir-ray", overwrite=True)
        try:
            tung = ds.apply_model(ray_build_model.ScaledBrightness(), label_field="t", backend="ray", progress=False)
            ves = ds.apply_model(mz.load_zoo_model("ray-volume/1"), label_field="v", backend="ray", progress=False)
            assert tung.failed == 0 and ves.failed == 0
            assert all(int(name.rsplit(":", 1)[1]) != os.getpid() for name in tung.replicas)  # on the workers
            for sample in ds:
                assert sample["t"] == pytest.approx(3 * means[sample.filepath], rel=1e-6)
                assert sample["v_value"] == pytest.approx(5 * means[sample.filepath], rel=1e-6)
        finally:
            ds.delete()
    finally:
        sys.path.remove(str(build))
        sys.modules.pop("ray_build_model", None)
