"""A real plugin distribution (tests/plugin_dist: its own metadata and a
``modelzoo.models`` entry point) is installed into a temporary directory and
its models load by name."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from modelzoo import zoo
from modelzoo.errors import ZooError

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """Builds and installs mz-plugin-demo (no network: no build isolation, no deps)."""
    src = tmp_path_factory.mktemp("plugin-src") / "plugin_dist"
    shutil.copytree(os.path.join(HERE, "plugin_dist"), src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    target = tmp_path_factory.mktemp("plugin-site")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield str(target)
    finally:
        sys.path.remove(str(target))
        for mod in [m for m in sys.modules if m == "mz_plugin_demo" or m.startswith("mz_plugin_demo.")]:
            del sys.modules[mod]
        zoo.reload_zoo()


pytestmark = pytest.mark.usefixtures("zoo_env")


def test_plugin_metadata_declares_the_entry_point(installed_plugin):
    import importlib.metadata as md

    dist = md.distribution("mz-plugin-demo")
    assert dist.version == "0.1.0"
    eps = [ep for ep in dist.entry_points if ep.group == zoo.ENTRY_POINT_GROUP]
    assert [(ep.name, ep.value) for ep in eps] == [("demo", "mz_plugin_demo:zoo_entries")]
    assert os.path.dirname(dist.locate_file("mz_plugin_demo/__init__.py")).startswith(installed_plugin)


def test_plugin_models_load_by_name(installed_plugin, monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")  # the plugin ships its weights: nothing to download
    names = zoo.list_zoo_models(tags="plugin")
    assert names == ["plugin-brightness", "plugin-tiny-torch"]
    info = zoo.get_zoo_model_info("plugin-tiny-torch")
    assert info.origin.startswith(installed_plugin) and info.origin.endswith("manifest.json")

    model = zoo.load_zoo_model("plugin-tiny-torch")
    assert model.classes == ["dark", "bright"]  # labels_path "{manifest_dir}/labels.txt"
    assert model.config.weights_path.startswith(installed_plugin)  # found in the package by checksum
    bright = np.full((20, 30, 3), 230, np.uint8)
    dark = np.full((20, 30, 3), 20, np.uint8)
    assert [l.label for l in model.predict_all([bright, dark])] == ["bright", "dark"]

    other = zoo.load_zoo_model("plugin-brightness")
    assert other.predict(dark).label == "dark"
    assert zoo.get_zoo_model_info("plugin-brightness").origin == "plugin mz-plugin-demo"


def test_plugin_names_cannot_shadow_and_broken_plugins_fail_loudly(installed_plugin, monkeypatch):
    with pytest.raises(ZooError, match="already registered.*mz_plugin_demo"):
        zoo.register_zoo_model("plugin-tiny-torch", lambda **kw: None)
    import mz_plugin_demo

    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(mz_plugin_demo, "zoo_entries", broken)
    zoo.reload_zoo()
    with pytest.raises(ZooError) as e:
        zoo.list_zoo_models()
    assert "mz-plugin-demo" in str(e.value) and "RuntimeError: boom" in str(e.value)
