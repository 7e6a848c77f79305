"""The input pipeline of TorchImageModel: JPEG decoding, deferred normalization,
collation in DataLoader workers. Each fast path is compared with the plain
one it replaces (PIL decoding, torchvision's normalize, torch.stack)."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import skimage.data
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from modelzoo.testing import tiny_model
from modelzoo.transforms import ImageCollate, ImageFileLoader, ImageTransform, Normalize, _decode_jpeg

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _pil_rgb(path):
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


# -- Normalize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 17, 23), (3, 224, 224), (2, 3, 17, 23), (1, 3, 5, 7)])
def test_normalize_is_bitwise_torchvisions(shape):
    norm = Normalize(MEAN, STD)
    u8 = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = TF.normalize(u8.float().div(255.0), MEAN, STD)
    if u8.dim() == 4:
        channels_last = u8.contiguous(memory_format=torch.channels_last)
    else:  # (3, H, W) over (H, W, 3) memory, as decoders and the resize produce
        channels_last = u8.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    for x in (u8, channels_last):
        y = norm(x)
        assert y.dtype == torch.float32 and y.stride() == x.stride()
        assert torch.equal(y, expected)
    assert torch.equal(Normalize()(u8), u8.float().div(255.0))
    assert norm(u8, torch.float16).dtype == torch.float16


def test_normalize_pickles_without_its_cache_and_rejects_bad_std():
    norm = Normalize(MEAN, STD)
    norm(torch.zeros(3, 4, 5, dtype=torch.uint8).permute(1, 2, 0).contiguous().permute(2, 0, 1))
    copy = pickle.loads(pickle.dumps(norm))
    assert copy == norm and "_row_cache" not in vars(copy)
    with pytest.raises(ValueError, match="zeros"):
        Normalize(MEAN, [0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="both"):
        Normalize(MEAN, None)


# -- JPEG decoding -------------------------------------------------------------------------------


def _jpegs(tmp_path):
    """Real photographs saved as the JPEG variants found in datasets."""
    chelsea, coffee = skimage.data.chelsea(), skimage.data.coffee()
    variants = {
        "baseline_420.jpg": (chelsea, {"quality": 75}),
        "baseline_444.jpg": (coffee, {"quality": 95, "subsampling": 0}),
        "baseline_422.jpg": (chelsea, {"quality": 90, "subsampling": 1}),
        "progressive.jpg": (coffee, {"quality": 85, "progressive": True}),
        "optimized.jpg": (chelsea, {"quality": 60, "optimize": True}),
        "odd_size.jpg": (coffee[:333, :477], {"quality": 80}),
        "gray.jpg": (skimage.data.camera(), {"quality": 90}),
    }
    paths = {}
    for name, (array, options) in variants.items():
        paths[name] = str(tmp_path / name)
        Image.fromarray(np.ascontiguousarray(array)).save(paths[name], **options)
    return paths


def test_torchvision_jpeg_decoding_matches_pil_pixel_for_pixel(tmp_path):
    # No resize and no normalization: the loaders' uint8 output is the decoder's.
    identity = ImageTransform()
    fast = ImageFileLoader(identity, defer_normalize=True)
    slow = ImageFileLoader(identity, jpeg_decoder="pil", defer_normalize=True)
    for name, path in _jpegs(tmp_path).items():
        a, b = fast(path), slow(path)
        expected = torch.from_numpy(np.ascontiguousarray(_pil_rgb(path))).permute(2, 0, 1)
        assert a.image_size == b.image_size == (expected.shape[2], expected.shape[1]), name
        assert torch.equal(_decode_jpeg(path), expected), name  # the fast path was taken...
        assert torch.equal(a.tensor, expected), name  # ...by the loader too
        assert torch.equal(b.tensor, expected), name


def test_resized_and_normalized_inputs_match_a_plain_pil_pipeline(tmp_path):
    transform = ImageTransform(image_size=(224, 224), mean=MEAN, std=STD)
    loader = ImageFileLoader(transform)
    for name, path in _jpegs(tmp_path).items():
        u8 = torch.from_numpy(np.ascontiguousarray(_pil_rgb(path))).permute(2, 0, 1).contiguous()
        expected = TF.normalize(TF.resize(u8, [224, 224], antialias=True).float().div(255.0), MEAN, STD)
        assert torch.equal(loader(path).tensor, expected), name


def test_jpegs_torchvision_cannot_take_go_through_pil(tmp_path):
    loader = ImageFileLoader(ImageTransform(), defer_normalize=True)
    rgb = np.ascontiguousarray(skimage.data.chelsea())
    cmyk = str(tmp_path / "cmyk.jpg")
    Image.fromarray(rgb).convert("CMYK").save(cmyk)
    with Image.open(cmyk) as img:
        assert img.mode == "CMYK"
    assert torch.equal(loader(cmyk).tensor, torch.from_numpy(_pil_rgb(cmyk)).permute(2, 0, 1))
    whole = io.BytesIO()
    Image.fromarray(rgb).save(whole, "JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    with pytest.raises(OSError, match="truncated.jpg.*truncated"):
        loader(str(truncated))


# -- collation -----------------------------------------------------------------------------------


class _LoadAndCollate:
    def __init__(self, loader, collate):
        self.loader, self.collate = loader, collate

    def __call__(self, paths):
        return self.collate([self.loader(p) for p in paths])


@pytest.mark.parametrize("channels_last", [False, True])
def test_worker_batches_are_shared_uint8_in_the_models_layout(tmp_path, channels_last):
    paths = [p for name, p in sorted(_jpegs(tmp_path).items()) if name != "odd_size.jpg"]
    transform = ImageTransform(image_size=(96, 64), mean=MEAN, std=STD)
    work = _LoadAndCollate(ImageFileLoader(transform, defer_normalize=True), ImageCollate(channels_last=channels_last))
    data = torch.utils.data.DataLoader(paths, batch_size=3, num_workers=1, collate_fn=work)
    batches = list(data)
    assert [len(b) for b in batches] == [3, 3]
    for batch, chunk in zip(batches, (paths[:3], paths[3:])):
        x = batch.tensors
        assert x.dtype == torch.uint8 and x.shape == (3, 3, 64, 96) and x.is_shared()
        assert x.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        expected = torch.stack([transform(_pil_rgb(p)).tensor for p in chunk])  # float, PIL-decoded
        assert torch.equal(batch.normalize(x), expected)
    # in the main process the same collate allocates ordinary memory
    local = work(paths[:2])
    assert not local.tensors.is_shared() and local.tensors.shape == (2, 3, 64, 96)


def test_mixed_items_are_normalized_before_stacking():
    transform = ImageTransform(image_size=(32, 32), mean=MEAN, std=STD)
    img = np.ascontiguousarray(skimage.data.astronaut()[:100, :100])
    deferred = transform.apply(img, (100, 100), defer_normalize=True)
    ready = transform(img)
    batch = ImageCollate()([deferred, ready])
    assert batch.normalize is None and batch.tensors.dtype == torch.float32
    assert torch.equal(batch.tensors[0], batch.tensors[1])


@pytest.mark.parametrize("optimize", [False, True])
def test_engine_path_on_jpegs_equals_predict_on_pil_arrays(tmp_path, optimize):
    model = tiny_model("classification", optimize=optimize)
    paths = list(_jpegs(tmp_path).values())
    loader, collate = model.build_input_loader(), model.collate_fn
    # the oneDNN graph profiles (unfused) the first call of a new input shape,
    # then runs fused kernels that may differ in the last bit: compare runs of
    # the same graph, after that first call
    model.predict_all([_pil_rgb(p) for p in paths])
    model.preprocess = False
    try:
        engine = model.predict_all(collate([loader(p) for p in paths]))
    finally:
        model.preprocess = True
    direct = model.predict_all([_pil_rgb(p) for p in paths])
    assert [(c.label, c.confidence) for c in engine] == [(c.label, c.confidence) for c in direct]
