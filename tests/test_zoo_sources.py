"""Zoo sources: the protocol and its registry, sources of one's own, the
``modelzoo list --source`` command, and FiftyOne-style remote sources (a
folder in FiftyOne's layout, written here, registered and loaded unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import modelzoo as mz
from modelzoo import zoo
from modelzoo.cli import main
from modelzoo.errors import ZooError
from modelzoo.zoo import sources
from modelzoo.zoo.manifest import ModelSpec, ZooModelInfo
from tests.processes import REPO, child_env

pytestmark = pytest.mark.usefixtures("zoo_env")


class Constant(mz.Model):
    def __init__(self, label: str = "same"):
        super().__init__(None)
        self.label = label

    def predict(self, image):
        return mz.Classification(label=self.label)


def make_constant(label: str = "same", **overrides):
    return Constant(label)


class ToySource(sources.ZooSource):
    """A source of two factory models, listed without building anything."""

    name = "toy"

    def entries(self):
        return [
            ZooModelInfo(name=f"toy/{label}", version="1.0", tags=("classification", "toy"),
                         model=ModelSpec(type=make_constant, kind="factory"), origin="tests")
            for label in ("cat", "dog")
        ]

    def load(self, info, *, pretrained=True, **options):
        return Constant(info.name.split("/")[1])


@pytest.fixture
def toy_source():
    sources.register_zoo_source("toy", "tests.test_zoo_sources:ToySource", err="the tests' toy source")
    try:
        yield
    finally:
        sources.unregister_zoo_source("toy")


def test_the_sources_are_a_table_of_lazy_strings():
    """Each source is named by ``module:attr``; `import modelzoo` and listing
    the manifests import no source of a library (fresh interpreter)."""
    assert zoo.list_zoo_sources()[:6] == ["manifests", "plugins", "torchvision", "remote", "local", "registered"]
    assert all(":" in spec["class"] for spec in sources.known_sources.values())
    code = (
        "import sys, modelzoo\n"
        "loaded = sorted(m for m in ('modelzoo.zoo.torchvision_source', 'modelzoo.zoo.remote', "
        "'modelzoo.zoo.torchvision_models') if m in sys.modules)\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_source_of_ones_own_lists_and_loads(toy_source):
    assert zoo.list_zoo_models(source="toy") == ["toy/cat", "toy/dog"]
    assert "toy/cat" in zoo.list_zoo_models(tags="toy")
    assert zoo.get_zoo_model_info("toy/dog").zoo_source == "toy"
    assert zoo.load_zoo_model("toy/dog").predict(np.zeros((4, 4, 3), np.uint8)).label == "dog"
    with pytest.raises(ZooError, match="already exists"):
        sources.register_zoo_source("toy", "tests.test_zoo_sources:ToySource")


def test_a_source_that_cannot_import_says_how_to_install_it():
    sources.register_zoo_source("broken", "no_such_package.zoo:Source", err="pip install no-such-package")
    try:
        with pytest.raises(ZooError, match="Zoo source 'broken': pip install no-such-package"):
            zoo.list_zoo_models()
    finally:
        sources.unregister_zoo_source("broken")
    with pytest.raises(ZooError, match="Unknown zoo source 'torchvison'. Did you mean 'torchvision'"):
        sources.get_zoo_source("torchvison")


def test_cli_list_by_source_and_tags(capsys):
    assert main(["list", "--source", "torchvision", "--tags", "keypoints"]) == 0
    out = capsys.readouterr().out
    assert "torchvision/keypointrcnn_resnet50_fpn@1.0" in out and "SOURCE" in out
    assert "keypoint-rcnn-resnet50-fpn-coco-torch" not in out  # a manifest's entry
    assert main(["list", "--source", "manifests", "--tags", "digits", "--json"]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["digits-cnn-torch"]


# -- FiftyOne-style remote sources ----------------------------------------------------------

# An __init__.py as a FiftyOne remote zoo repository writes it: module-level
# download_model(model_name, model_path) and load_model(model_name, model_path, **kwargs).
REMOTE_INIT = '''
import os
import shutil

import modelzoo

CLASSES = [str(i) for i in range(10)]


def download_model(model_name, model_path):
    """Fetches the model's files to ``model_path`` (here: the digits weights that ship with modelzoo)."""
    if model_name == "test-org/digits-remote":
        asset = os.path.join(os.path.dirname(modelzoo.__file__), "zoo", "assets", "digits_cnn-9165c729.pth")
        shutil.copy(asset, model_path)
    else:
        os.makedirs(model_path, exist_ok=True)


class Echo:
    """Not a modelzoo.Model: anything with predict(), as FiftyOne's models are."""

    def predict(self, arg):
        return modelzoo.Classification(label="echo-%d" % arg.shape[0])


def load_model(model_name, model_path, **kwargs):
    if model_name == "test-org/digits-remote":
        config = {
            "entrypoint_fcn": "modelzoo.zoo.nets.digits_cnn",
            "output_processor_cls": "ClassifierOutputProcessor",
            "classes": CLASSES, "image_size": 8, "optimize": False,
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        }
        if kwargs.pop("pretrained", True):
            config["weights_path"] = model_path
        config.update(kwargs)
        return modelzoo.TorchImageModel(config)
    return Echo()
'''

REMOTE_MANIFEST = {
    "name": "test-org/remote-zoo",
    "url": "https://github.com/test-org/remote-zoo",
    "models": [
        {
            "base_name": "test-org/digits-remote",
            "base_filename": "digits-remote.pth",
            "version": None,
            "description": "The digits CNN, served by a remote source",
            "source": "https://github.com/test-org/remote-zoo",
            "author": "tests",
            "license": "MIT",
            "size_bytes": 107597,
            "manager": {"type": "fiftyone.core.models.ModelManager", "config": {}},
            "default_deployment_config_dict": {},
            "requirements": {"packages": ["torch"], "cpu": {"support": True}, "gpu": {"support": True}},
            "tags": ["classification", "digits"],
            "date_added": "2025-03-10 12:00:00",
        },
        {
            "base_name": "test-org/echo",
            "base_filename": "echo",
            "version": "2.1",
            "description": "A model that is not a modelzoo.Model",
            "license": "MIT",
            "tags": ["classification"],
        },
    ],
}


@pytest.fixture
def remote_folder(tmp_path):
    folder = tmp_path / "remote-zoo"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(REMOTE_MANIFEST, indent=2))
    (folder / "__init__.py").write_text(textwrap.dedent(REMOTE_INIT))
    return str(folder)


def test_remote_source_folder_registers_lists_and_loads(remote_folder):
    from modelzoo.zoo.digits import digits_split

    names = mz.register_zoo_model_source(remote_folder)
    assert names == ["test-org/digits-remote", "test-org/echo"]
    assert mz.list_zoo_model_sources() == [remote_folder]
    assert zoo.list_zoo_models(source="remote") == ["test-org/digits-remote", "test-org/echo"]
    info = zoo.get_zoo_model_info("test-org/digits-remote")
    assert info.tags == ("classification", "digits") and info.date_added == "2025-03-10"
    assert zoo.get_zoo_model_info("test-org/echo@2.1").version == "2.1"
    assert not zoo.is_zoo_model_downloaded("test-org/digits-remote")

    model = zoo.load_zoo_model("test-org/digits-remote")  # runs download_model, then load_model
    assert zoo.is_zoo_model_downloaded("test-org/digits-remote")
    _, _, images, labels = digits_split()
    reference = zoo.load_zoo_model("digits-cnn-torch", optimize=False)  # the same weights, from the manifest
    ours = [model.predict(img).label for img in images[:40]]
    assert ours == [reference.predict(img).label for img in images[:40]]
    assert sum(p == str(t) for p, t in zip(ours, labels[:40])) >= 38

    echo = zoo.load_zoo_model("test-org/echo")
    assert isinstance(echo, mz.Model) and echo.predict(np.zeros((5, 3, 3), np.uint8)).label == "echo-5"
    assert zoo.delete_zoo_model("test-org/digits-remote") and not zoo.is_zoo_model_downloaded("test-org/digits-remote")

    untrained = zoo.load_zoo_model("test-org/digits-remote", pretrained=False)  # no download
    assert not zoo.is_zoo_model_downloaded("test-org/digits-remote")
    assert untrained.classes == [str(i) for i in range(10)]

    with pytest.raises(ZooError, match="already registered"):
        mz.register_zoo_model_source(remote_folder)
    mz.delete_zoo_model_source(remote_folder)
    assert mz.list_zoo_model_sources() == [] and zoo.list_zoo_models(source="remote") == []
    with pytest.raises(ZooError, match="No remote zoo source"):
        mz.delete_zoo_model_source(remote_folder)


def test_a_changed_remote_source_does_not_run(remote_folder):
    from modelzoo.zoo.remote import sources_root

    mz.register_zoo_model_source(remote_folder)
    (code,) = [os.path.join(sources_root(), d, "code") for d in os.listdir(sources_root()) if not d.startswith(".")]
    with open(os.path.join(code, "__init__.py"), "a") as f:
        f.write("\nraise SystemExit('this line must never run')\n")
    with pytest.raises(ZooError, match="changed since it was registered"):
        zoo.load_zoo_model("test-org/echo")
    mz.register_zoo_model_source(remote_folder, overwrite=True)  # the user trusts it again
    assert zoo.load_zoo_model("test-org/echo").predict(np.zeros((2, 2, 3), np.uint8)).label == "echo-2"


def test_a_remote_source_registered_by_another_key_is_refused(remote_folder, tmp_path, monkeypatch):
    from modelzoo.errors import UntrustedError

    monkeypatch.setenv("MODELZOO_TRUST_KEY", str(tmp_path / "key-a"))
    mz.register_zoo_model_source(remote_folder)
    monkeypatch.setenv("MODELZOO_TRUST_KEY", str(tmp_path / "key-b"))
    with pytest.raises(UntrustedError, match="remote zoo source 'test-org/remote-zoo'"):
        zoo.load_zoo_model("test-org/echo")


def test_a_second_process_finds_the_remote_source(remote_folder):
    mz.register_zoo_model_source(remote_folder)
    code = (
        "import numpy as np, modelzoo\n"
        "print(modelzoo.list_zoo_model_sources())\n"
        "print(modelzoo.load_zoo_model('test-org/echo').predict(np.zeros((7, 1, 3), np.uint8)).label)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [repr([remote_folder]), "echo-7"]


def test_a_folder_without_the_layout_is_a_clear_error(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"name": "x/y", "models": []}))
    with pytest.raises(ZooError, match="no __init__.py"):
        mz.register_zoo_model_source(str(tmp_path))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ZooError, match="holds no manifest.json"):
        mz.register_zoo_model_source(str(empty))


# -- architecture only, on every kind of source ----------------------------------------------


def test_pretrained_false_on_a_manifest_entry_is_the_seeded_architecture():
    """digits-cnn-torch without its weights: the seeded random init (the
    same as the network's own constructor under the zoo's seed), its classes
    and preprocessing; with its weights, something else."""
    import torch

    from modelzoo.zoo.build import ARCHITECTURE_SEED
    from modelzoo.zoo.nets import digits_cnn

    untrained = zoo.load_zoo_model("digits-cnn-torch", pretrained=False, optimize=False)
    trained = zoo.load_zoo_model("digits-cnn-torch", optimize=False)
    torch.manual_seed(ARCHITECTURE_SEED)
    reference = digits_cnn().state_dict()
    state = untrained.torch_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in reference.items())
    assert not torch.equal(trained.torch_model.state_dict()["classifier.2.weight"], reference["classifier.2.weight"])
    assert untrained.classes == trained.classes and untrained.config.image_size == 8


def test_pretrained_false_for_factories_and_bundles():
    seen = []

    def factory(pretrained=True, **overrides):
        seen.append(pretrained)
        return Constant("untrained" if not pretrained else "trained")

    zoo.register_zoo_model("arch-factory", factory, persist=False)
    assert zoo.load_zoo_model("arch-factory", pretrained=False).predict(None).label == "untrained"
    assert seen == [False]
    zoo.register_zoo_model("no-arch-factory", lambda **kw: Constant(), persist=False)
    with pytest.raises(ZooError, match="takes no 'pretrained' argument"):
        zoo.load_zoo_model("no-arch-factory", pretrained=False)
