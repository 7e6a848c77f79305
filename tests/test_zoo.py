"""The zoo: manifests, the zoo-wide metadata contract, registration, requirements,
the local weights search, and the models that ship (real weights, offline)."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Dict

import numpy as np
import pytest
import torch

import modelzoo as mz
from modelzoo import zoo
from modelzoo.errors import ChecksumError, ConfigError, ModelNotFoundError, RequirementsError, ZooError
from modelzoo.zoo import ManifestError
from modelzoo.zoo import requirements as requirements_mod
from modelzoo.zoo.registry import build_model, expand_placeholders, registry

REQUIRED = [
    "mobilenet-v2-imagenet-torch",
    "digits-cnn-torch",
    "resnet50-imagenet-torch",
    "mobilenet-v3-large-imagenet-torch",
    "efficientnet-b0-imagenet-torch",
    "faster-rcnn-resnet50-fpn-v2-coco-torch",
    "mask-rcnn-resnet50-fpn-v2-coco-torch",
    "keypoint-rcnn-resnet50-fpn-coco-torch",
    "deeplabv3-resnet50-coco-torch",
]


pytestmark = pytest.mark.usefixtures("zoo_env")


def _zoo_names():
    """The zoo's manifest models as the registry lists them (built-in manifests and
    installed plugins; user manifests left out, as zoo_env does; the library
    catalogues have their own tests), read at collection time so that each is its own test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(zoo.ENV_MANIFEST_PATHS, raising=False)
        zoo.reload_zoo()
        try:
            return zoo.list_zoo_models(source=["manifests", "plugins"])
        finally:
            zoo.reload_zoo()


def _entry(name: str = "user-model", **changes: Any) -> Dict[str, Any]:
    e = {
        "name": name,
        "version": "1.0",
        "description": "a test entry",
        "source": "tests",
        "license": "MIT",
        "size_bytes": 0,
        "tags": ["classification", "test"],
        "requirements": {"packages": ["torch"], "cpu": True, "gpu": True},
        "weights": None,
        "model": {
            "type": "modelzoo.torch_image.TorchImageModel",
            "config": {
                "entrypoint_fcn": "modelzoo.zoo.nets.digits_cnn",
                "output_processor_cls": "ClassifierOutputProcessor",
                "classes": [str(i) for i in range(10)],
                "image_size": 8,
                "optimize": False,
            },
        },
        "date_added": "2026-01-01",
        "training_data": "none",
    }
    e.update(changes)
    return e


def _write_manifest(path, *entries) -> str:
    path.write_text(json.dumps({"manifest_version": 1, "models": list(entries)}))
    return str(path)


def _use_manifests(monkeypatch, *paths) -> None:
    monkeypatch.setenv(zoo.ENV_MANIFEST_PATHS, os.pathsep.join(str(p) for p in paths))
    zoo.reload_zoo()


# -- the built-in manifests: the zoo-wide metadata contract ---------------------------------


def test_builtin_manifests_list_the_shipped_models():
    names = zoo.list_zoo_models()
    for name in REQUIRED:
        assert name in names
    assert "digits-cnn-torch" in zoo.list_zoo_models(tags="digits")
    assert zoo.list_zoo_models(tags=["detection", "keypoints"], source="manifests") == ["keypoint-rcnn-resnet50-fpn-coco-torch"]
    assert set(zoo.list_zoo_models(pattern="*-imagenet-*")) >= {"mobilenet-v2-imagenet-torch", "resnet50-imagenet-torch"}
    assert "mobilenet-v2-imagenet-torch" in zoo.list_zoo_models(pattern="mobilenet")
    assert "mobilenet-v2-imagenet-torch@1.0" in zoo.list_zoo_models(versions=True)


def test_builtin_manifests_are_installed_as_package_data():
    from modelzoo.zoo.plugins import builtin_manifest_dir

    d = builtin_manifest_dir()
    assert os.path.samefile(d, os.path.join(os.path.dirname(mz.__file__), "zoo", "manifests"))
    assert sorted(f for f in os.listdir(d) if f.endswith(".json"))


def _head_width(module: torch.nn.Module, processor: str) -> int:
    if processor in ("DetectorOutputProcessor", "InstanceSegmenterOutputProcessor", "KeypointDetectorOutputProcessor"):
        return module.roi_heads.box_predictor.cls_score.out_features
    if processor == "SemanticSegmenterOutputProcessor":
        return module.classifier[-1].out_channels
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1].out_features


#: entries heavier than this take 12-56 s to build on a 2-core CPU (measured with
#: --durations: the ResNet-50 FPN detectors and DeepLabV3, 168-237 MB); the others
#: build in under 2.1 s. Their builds are marked slow (make test-fast skips them).
_HEAVY_BUILD_BYTES = 150_000_000


def _zoo_params():
    return [
        pytest.param(n, marks=pytest.mark.slow) if (zoo.get_zoo_model_info(n).size_bytes or 0) > _HEAVY_BUILD_BYTES else n
        for n in _zoo_names()
    ]


@pytest.mark.parametrize("name", _zoo_params())
def test_every_entry_validates_imports_and_builds_without_weights(name, monkeypatch):
    """Zoo-wide: the entry is valid, its dotted paths import, the model builds
    with weight loading patched out (nothing is downloaded) and its classes
    match the width of its head."""
    from modelzoo.imports import import_object
    from modelzoo.zoo import weights as weights_mod

    def no_download(*args, **kwargs):
        raise AssertionError("the zoo-wide test must not download anything")

    monkeypatch.setattr(weights_mod, "download_weights", no_download)
    info = zoo.get_zoo_model_info(name)
    assert info.weights is not None and len(info.weights.sha256) == 64
    assert info.size_bytes and info.size_bytes > 0
    assert info.date_added and info.license and info.training_data and info.source and info.description
    config = expand_placeholders(dict(info.model.config), info)
    import_object(info.model.type, "model.type")
    import_object(config["entrypoint_fcn"], "entrypoint_fcn")
    for key in ("labels_path",):
        if key in config:
            assert os.path.isfile(config[key]), config[key]
    processor = config["output_processor_cls"]
    # the load-time processor check runs one forward pass: at small inputs for
    # the resnet50 dense models (their 800 px / 520 px defaults cost ~10 s each
    # here), the architecture and head being what this test checks
    small: dict = {}
    if processor in ("DetectorOutputProcessor", "InstanceSegmenterOutputProcessor", "KeypointDetectorOutputProcessor"):
        small["entrypoint_args"] = {**(config.get("entrypoint_args") or {}), "min_size": 64, "max_size": 96}
    elif processor == "SemanticSegmenterOutputProcessor":
        small.update(image_min_dim=64, image_max_dim=96)
    model = build_model(info, weights_path=None, device="cpu", **small)  # no weights_path: nothing is loaded
    assert isinstance(model, mz.Model)
    classes = model.classes
    assert classes, "every shipped entry names its classes"
    assert _head_width(model.torch_model, processor) == len(classes)
    if processor == "KeypointDetectorOutputProcessor":
        points = model.torch_model.roi_heads.keypoint_predictor.kps_score_lowres.out_channels
        assert points == len(config["skeleton"]["labels"])
    if config.get("embeddings_layer"):
        assert model.has_embeddings


def test_torchvision_entries_match_torchvision_official_weights():
    """URL, size and checksum prefix of each torchvision entry agree with
    torchvision's own weight metadata (the URL's file name carries the hash prefix)."""
    import torchvision

    checked = 0
    for info in registry.all():
        if info.zoo_source != "manifests" or not info.weights or not (info.weights.url or "").startswith("https://download.pytorch.org/models/"):
            continue
        stem = info.weights.filename[: -len(".pth")]
        prefix = stem.rsplit("-", 1)[1]
        assert info.weights.sha256.startswith(prefix), info.key
        assert info.weights.url.endswith("/" + info.weights.filename)
        fn_name = info.model.config["entrypoint_fcn"].rsplit(".", 1)[1]
        enum = torchvision.models.get_model_weights(fn_name)
        matches = [w for w in enum if w.url == info.weights.url]
        assert matches, f"{info.key}: {info.weights.url} is not one of torchvision's {fn_name} weights"
        meta = matches[0].meta
        assert abs(info.size_bytes / 2**20 - meta["_file_size"]) < 0.001, info.key
        classes = expand_placeholders(info.model.config, info)
        names = classes.get("classes") or open(classes["labels_path"]).read().split("\n")[:-1]
        assert names == list(meta["categories"]) or fn_name.startswith("keypointrcnn"), info.key
        checked += 1
    assert checked == 8


# -- strict validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, key, words",
    [
        ({"tagz": ["x"]}, "tagz", "Did you mean 'tags'"),
        ({"version": "one"}, "version", "version string"),
        ({"size_bytes": -1}, "size_bytes", "non-negative"),
        ({"date_added": "01/02/2026"}, "date_added", "ISO date"),
        ({"requirements": {"packages": ["torch"], "cpu": False, "gpu": False}}, "requirements.cpu", "CPU, the GPU"),
        ({"weights": {"url": "ftp://x/y.pth", "sha256": "0" * 64, "filename": "y.pth"}}, "weights.url", "http"),
        ({"weights": {"url": "https://x/y.pth", "sha256": "abc123", "filename": "y.pth"}}, "weights.sha256", "64"),
        ({"weights": {"url": "https://x/y.pth", "sha256": "0" * 64, "filename": "a/y.pth"}}, "weights.filename", "bare file name"),
        ({"name": "Bad Name"}, "name", "lowercase"),
    ],
)
def test_bad_manifest_fails_naming_file_entry_and_key(tmp_path, monkeypatch, change, key, words):
    path = _write_manifest(tmp_path / "bad.json", _entry(**change))
    _use_manifests(monkeypatch, path)
    with pytest.raises(ManifestError) as e:
        zoo.list_zoo_models()
    msg = str(e.value)
    assert path in msg and "#0" in msg and repr(key) in msg and words in msg
    assert e.value.key == key and e.value.path == path


def test_missing_key_and_config_typo_are_errors(tmp_path, monkeypatch):
    entry = _entry()
    del entry["name"], entry["model"]
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "a.json", entry))
    with pytest.raises(ManifestError, match="missing required keys 'name', 'model'"):
        zoo.list_zoo_models()

    entry = _entry()
    entry["model"]["config"]["confidence_tresh"] = 0.5
    path = _write_manifest(tmp_path / "b.json", entry)
    _use_manifests(monkeypatch, path)
    with pytest.raises(ManifestError) as e:
        zoo.get_zoo_model_info("user-model")
    assert "model.config.confidence_tresh" in str(e.value) and "Did you mean 'confidence_thresh'" in str(e.value)
    assert path in str(e.value)

    entry = _entry()
    entry["model"]["config"]["image_size"] = -3
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "c.json", entry))
    with pytest.raises(ManifestError, match="image_size"):
        zoo.list_zoo_models()

    entry = _entry()
    entry["model"]["type"] = "modelzoo.torch_image.TorchImageModle"
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "d.json", entry))
    with pytest.raises(ManifestError, match="model.type.*TorchImageModel"):
        zoo.list_zoo_models()


def test_a_python_model_needs_only_a_name_and_an_import_path(tmp_path, monkeypatch):
    """``{"name", "model": "package.module.Name"}``: a Model subclass or a
    factory; every other key defaults (version 1.0, no weights, no tags)."""
    path = _write_manifest(
        tmp_path / "short.json",
        {"name": "short-class", "model": "test_zoo._ConstantModel"},
        {"name": "short-factory", "model": {"type": "modelzoo.testing.tiny_model", "config": {"task": "segmentation"}}},
    )
    monkeypatch.syspath_prepend(os.path.dirname(os.path.abspath(__file__)))
    _use_manifests(monkeypatch, path)
    info = zoo.get_zoo_model_info("short-class")
    assert info.version == "1.0" and info.tags == () and info.weights is None and info.license == ""
    assert zoo.load_zoo_model("short-class").predict(np.zeros((2, 2, 3), np.uint8)).label == "constant"
    factory = zoo.load_zoo_model("short-factory", optimize=False)
    assert isinstance(factory.predict(np.zeros((16, 16, 3), np.uint8)), mz.Segmentation)


def test_invalid_json_and_duplicates_are_errors(tmp_path, monkeypatch):
    bad = tmp_path / "broken.json"
    bad.write_text('{"models": [ {"name": "x",, } ]}')
    _use_manifests(monkeypatch, bad)
    with pytest.raises(ManifestError, match=r"broken\.json.*line 1, column"):
        zoo.list_zoo_models()

    a = _write_manifest(tmp_path / "one.json", _entry("dup-model"))
    b = _write_manifest(tmp_path / "two.json", _entry("dup-model"))
    _use_manifests(monkeypatch, a, b)
    with pytest.raises(ManifestError) as e:
        zoo.list_zoo_models()
    assert "one.json" in str(e.value) and "two.json" in str(e.value)

    # a user manifest may not redefine a built-in entry either
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "three.json", _entry("digits-cnn-torch")))
    with pytest.raises(ManifestError, match="already defined"):
        zoo.list_zoo_models()

    monkeypatch.setenv(zoo.ENV_MANIFEST_PATHS, str(tmp_path / "nowhere"))
    zoo.reload_zoo()
    with pytest.raises(ZooError, match="MODELZOO_MANIFEST_PATHS.*does not exist"):
        zoo.list_zoo_models()


# -- names, versions, overrides -------------------------------------------------------------


def test_versions_newest_by_default_and_name_at_version(tmp_path, monkeypatch):
    d = tmp_path / "manifests"
    d.mkdir()
    _write_manifest(d / "v.json", _entry("versioned", version="1.0"), _entry("versioned", version="1.10"), _entry("versioned", version="1.2"))
    _use_manifests(monkeypatch, d)
    assert zoo.get_zoo_model_info("versioned").version == "1.10"
    assert zoo.get_zoo_model_info("versioned@1.2").version == "1.2"
    with pytest.raises(ModelNotFoundError, match="versioned@1.0"):
        zoo.get_zoo_model_info("versioned@3.0")
    model = zoo.load_zoo_model("versioned@1.0")
    assert model.classes == [str(i) for i in range(10)]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ModelNotFoundError) as e:
        zoo.load_zoo_model("resnet-50")
    assert "Did you mean one of " in str(e.value)
    assert "'resnet50-imagenet-torch'" in str(e.value) and "'torchvision/resnet50'" in str(e.value)
    with pytest.raises(ModelNotFoundError, match="mobilenet-v2-imagenet-torch"):
        zoo.get_zoo_model_info("mobilenet-v2-imagenet")
    assert isinstance(e.value, KeyError) and isinstance(e.value, mz.ModelzooError)


def test_overrides_replace_config_fields_and_unknown_ones_raise():
    model = zoo.load_zoo_model("digits-cnn-torch", confidence_thresh=0.9, embeddings_layer=None, device="cpu")
    assert model.config.confidence_thresh == 0.9 and not model.has_embeddings
    assert model.config.weights_path.endswith("digits_cnn-9165c729.pth")
    with pytest.raises(ConfigError) as e:
        zoo.load_zoo_model("digits-cnn-torch", confidence_tresh=0.5)
    assert "Did you mean 'confidence_thresh'" in str(e.value)


# -- registration ---------------------------------------------------------------------------


class _ConstantModel(mz.Model):
    def predict(self, arg):
        return mz.Classification(label="constant")


class _Bundle:
    def __init__(self):
        self.calls = []

    def load_model(self, **overrides):
        self.calls.append(overrides)
        return _ConstantModel()


def test_register_config_class_factory_and_bundle():
    from modelzoo.torch_image import TorchImageModelConfig

    config = TorchImageModelConfig(_entry()["model"]["config"])
    info = zoo.register_zoo_model("my-config-model", config, tags=["mine"], description="from a config")
    assert info.model.kind == "class" and "my-config-model" in zoo.list_zoo_models(tags="mine")
    m = zoo.load_zoo_model("my-config-model", confidence_thresh=0.1)
    assert m.config.confidence_thresh == 0.1 and m.classes[3] == "3"

    zoo.register_zoo_model("my-dict-model", _entry()["model"]["config"])
    assert zoo.load_zoo_model("my-dict-model").classes == [str(i) for i in range(10)]

    zoo.register_zoo_model("my-class-model", _ConstantModel)
    assert zoo.load_zoo_model("my-class-model").predict(np.zeros((4, 4, 3), np.uint8)).label == "constant"

    made = []
    zoo.register_zoo_model("my-factory-model", lambda **kw: made.append(kw) or _ConstantModel(), version="2.0")
    assert isinstance(zoo.load_zoo_model("my-factory-model", flavour="x"), _ConstantModel)
    assert made == [{"flavour": "x"}]
    assert zoo.get_zoo_model_info("my-factory-model").key == "my-factory-model@2.0"

    bundle = _Bundle()
    zoo.register_zoo_model("my-bundle-model", bundle)
    zoo.load_zoo_model("my-bundle-model", device="cpu")
    assert bundle.calls == [{"device": "cpu"}]


def test_a_config_names_its_model_class():
    import dataclasses

    from modelzoo.torch_image import TorchImageModel, TorchImageModelConfig

    assert zoo.config_model_cls(TorchImageModelConfig) is TorchImageModel

    @dataclasses.dataclass(init=False)
    class Unnamed(mz.ModelConfig):
        pass

    with pytest.raises(ConfigError, match="Unnamed does not name the model class.*pass model_cls="):
        zoo.register_zoo_model("unnamed-config-model", Unnamed())

    class ConstantFromConfig(_ConstantModel):
        config_cls = Unnamed

    Unnamed.model_cls = ConstantFromConfig
    zoo.register_zoo_model("named-config-model", Unnamed())
    assert isinstance(zoo.load_zoo_model("named-config-model"), ConstantFromConfig)

    class Sub(TorchImageModelConfig):  # a subclass names its own model class, or none
        pass

    with pytest.raises(ConfigError, match="Sub does not name the model class"):
        zoo.config_model_cls(Sub)


def test_unknown_keys_read_the_same_everywhere(tmp_path, monkeypatch):
    """One check (errors.check_keys), one message: what, the key, the close match, the valid keys."""
    from modelzoo.errors import UnknownKeyError
    from modelzoo.torch_image import TorchImageModelConfig

    with pytest.raises(UnknownKeyError) as e:
        TorchImageModelConfig(entrypoint_fcn="x.y", fast_decod=False)
    assert str(e.value).startswith("TorchImageModelConfig has no setting 'fast_decod'. Did you mean 'fast_decode'? Valid settings: ")
    assert e.value.key == "fast_decod" and "image_size" in e.value.allowed
    with pytest.raises(UnknownKeyError, match=r"^load_zoo_model\('digits-cnn-torch@1.0'\): TorchImageModel has no setting 'devise'. Did you mean 'device'\?"):
        zoo.load_zoo_model("digits-cnn-torch", devise="cpu")
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "w.json", _entry(weights={"url": None, "sha256": "0" * 64, "filename": "a", "local_source": []})))
    with pytest.raises(ManifestError, match="'weights' has no key 'local_source'. Did you mean 'local_sources'\\? Valid keys: url, sha256, filename, local_sources."):
        zoo.list_zoo_models()


def test_register_duplicates_raise_unless_overwrite_and_unregister():
    zoo.register_zoo_model("dup-user-model", _ConstantModel)
    with pytest.raises(ZooError, match="already registered.*overwrite=True"):
        zoo.register_zoo_model("dup-user-model", _ConstantModel)
    with pytest.raises(ZooError, match="already registered"):
        zoo.register_zoo_model("digits-cnn-torch", _ConstantModel)
    zoo.register_zoo_model("dup-user-model", lambda **kw: _ConstantModel(), overwrite=True)
    assert zoo.get_zoo_model_info("dup-user-model").model.kind == "factory"
    zoo.unregister_zoo_model("dup-user-model")
    assert "dup-user-model" not in zoo.list_zoo_models()
    with pytest.raises(ModelNotFoundError, match="Did you mean 'digits-cnn-torch'"):
        zoo.unregister_zoo_model("digits-cnn-torh")
    with pytest.raises(ZooError, match="instance"):
        zoo.register_zoo_model("an-instance", _ConstantModel())
    with pytest.raises(ManifestError, match="name"):
        zoo.register_zoo_model("Bad@Name", _ConstantModel)
    with pytest.raises(ConfigError, match="confidence_tresh"):
        zoo.register_zoo_model("bad-config", {"entrypoint_fcn": "modelzoo.zoo.nets.digits_cnn", "confidence_tresh": 1})


# -- requirements ---------------------------------------------------------------------------


def test_missing_packages_are_listed_or_installed(monkeypatch):
    zoo.register_zoo_model(
        "needs-packages", _ConstantModel,
        requirements={"packages": ["torch", "surely-not-installed-pkg-xyz>=1.0", "numpy<0.1"]},
    )
    with pytest.raises(RequirementsError) as e:
        zoo.load_zoo_model("needs-packages")
    msg = str(e.value)
    assert "surely-not-installed-pkg-xyz>=1.0" in msg and "numpy<0.1 (installed:" in msg
    assert "pip install" in msg and "install_requirements=True" in msg and "torch," not in msg

    installed = []

    def fake_pip(packages):
        installed.extend(packages)
        monkeypatch.setattr(requirements_mod, "missing_packages", lambda pkgs: [])

    monkeypatch.setattr(requirements_mod, "_pip_install", fake_pip)
    assert isinstance(zoo.load_zoo_model("needs-packages", install_requirements=True), _ConstantModel)
    assert installed == ["surely-not-installed-pkg-xyz>=1.0", "numpy<0.1"]


def test_gpu_only_model_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(requirements_mod, "_cuda_available", lambda: False)
    zoo.register_zoo_model("gpu-only", _ConstantModel, requirements={"cpu": False, "gpu": True})
    with pytest.raises(RequirementsError, match="runs only on a GPU.*no CUDA GPU"):
        zoo.load_zoo_model("gpu-only")
    zoo.register_zoo_model("cpu-only", _ConstantModel, requirements={"cpu": True, "gpu": False})
    with pytest.raises(RequirementsError, match="runs only on the CPU"):
        zoo.load_zoo_model("cpu-only", device="cuda")


def test_manifest_of_model_with_missing_packages_lists_but_cannot_load(tmp_path, monkeypatch):
    entry = _entry("needs-plugin-pkg", requirements={"packages": ["not-a-real-package-abc"], "cpu": True, "gpu": True})
    entry["model"]["type"] = "not_a_real_package_abc.Model"
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "m.json", entry))
    assert "needs-plugin-pkg" in zoo.list_zoo_models()
    with pytest.raises(RequirementsError, match="not-a-real-package-abc"):
        zoo.load_zoo_model("needs-plugin-pkg")


# -- weights: local sources, cache, checksum ----------------------------------------------


def test_local_directory_is_searched_by_checksum(tmp_path, monkeypatch):
    src = zoo.get_zoo_model_info("digits-cnn-torch")
    shutil.copy(zoo.download_zoo_model("digits-cnn-torch"), tmp_path / "renamed.bin")
    entry = _entry("local-weights-model", size_bytes=src.size_bytes, weights={
        "url": "https://127.0.0.1:9/never-contacted.pth", "sha256": src.weights.sha256, "filename": "digits.pth",
        "local_sources": [str(tmp_path)],
    })
    _use_manifests(monkeypatch, _write_manifest(tmp_path / "m.json", entry))
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    assert zoo.is_zoo_model_downloaded("local-weights-model")
    model = zoo.load_zoo_model("local-weights-model")
    assert model.config.weights_path == str(tmp_path / "renamed.bin")
    # deleting the zoo's records never touches a local source
    assert zoo.delete_zoo_model("local-weights-model")
    assert (tmp_path / "renamed.bin").exists()


def test_cached_file_with_wrong_checksum_is_set_aside(tmp_path):
    zoo.register_zoo_model("cache-check", _entry()["model"]["config"], weights={
        "url": "https://127.0.0.1:9/x.pth", "sha256": "0" * 64, "filename": "x.pth"})
    info = zoo.get_zoo_model_info("cache-check")
    from modelzoo.zoo import weights

    path = weights.cache_path(info)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as f:
        f.write(b"placed by hand, but wrong")
    with pytest.raises(ChecksumError) as e:
        zoo.load_zoo_model("cache-check")
    assert e.value.expected == "0" * 64 and e.value.actual in str(e.value) and "0" * 64 in str(e.value)
    assert not os.path.exists(path) and os.path.exists(path + ".sha256-mismatch")


def test_verified_file_is_not_hashed_again(monkeypatch):
    from modelzoo.zoo import weights

    first = zoo.download_zoo_model("digits-cnn-torch")
    calls = []
    real = weights.sha256_file
    monkeypatch.setattr(weights, "sha256_file", lambda p: calls.append(p) or real(p))
    assert zoo.download_zoo_model("digits-cnn-torch") == first
    assert calls == []


# -- the models that ship ---------------------------------------------------------------------


@pytest.mark.slow
def test_mobilenet_v2_classifies_chelsea_as_a_cat_offline(monkeypatch):
    import skimage.data

    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")  # found on this machine by checksum, never downloaded
    model = zoo.load_zoo_model("mobilenet-v2-imagenet-torch")
    label = model.predict(skimage.data.chelsea())
    assert label.label in {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}, label
    assert label.confidence > 0.3
    emb = model.embed(skimage.data.chelsea())
    assert emb.shape == (1280,)


@pytest.mark.slow
def test_digits_model_held_out_accuracy_through_the_dataset(tmp_path):
    from modelzoo.zoo.digits import digits_split, write_digit_images

    _, _, images, labels = digits_split()
    assert len(labels) == 450
    truth = {os.path.abspath(p): t for p, t in write_digit_images(images, labels, str(tmp_path / "digits"))}
    name = f"test-digits-{uuid.uuid4().hex[:8]}"
    dataset = mz.Dataset.from_images_dir(str(tmp_path / "digits"), name=name)
    try:
        assert len(dataset) == 450
        report = dataset.apply_model(zoo.load_zoo_model("digits-cnn-torch"), label_field="pred", progress=False)
        assert report.processed == 450 and report.failed == 0
        preds = dict(zip(dataset.values("filepath"), dataset.values("pred")))
        accuracy = np.mean([preds[p].label == t for p, t in truth.items()])
        assert accuracy >= 0.97, accuracy
    finally:
        dataset.delete()


def test_digits_training_is_reproducible_from_the_split():
    """The committed weights' held-out split does not overlap the training split."""
    from modelzoo.zoo.digits import digits_split

    xtr, ytr, xte, yte = digits_split()
    assert len(xtr) + len(xte) == 1797 and len(xte) == 450
    train_rows = {x.tobytes() for x in xtr}
    # a few digits are exact duplicates in the source data; nearly all held-out images are unseen
    assert sum(x.tobytes() in train_rows for x in xte) < 10


def test_reading_the_zoo_does_not_import_torch():
    """Listing the zoo and reading an entry validate every manifest (configs
    included) without importing torch, which costs seconds."""
    import subprocess
    import sys

    code = (
        "import sys, modelzoo\n"
        "names = modelzoo.list_zoo_models()\n"
        "assert 'keypoint-rcnn-resnet50-fpn-coco-torch' in names, names\n"
        "info = modelzoo.get_zoo_model_info('keypoint-rcnn-resnet50-fpn-coco-torch')\n"
        "assert info.model.config['skeleton']\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'modelzoo.torch_image') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert result.returncode == 0, result.stderr
