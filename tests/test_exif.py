"""EXIF orientation: images are decoded upright (phone photos), their
metadata sizes are the upright ones, and exif_orientation=False keeps the
stored pixel order. References: the stored pixels turned with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import modelzoo as mz
from modelzoo.image_io import read_image
from modelzoo.loaders import ImageLoader, PILLoader, WorkItem
from modelzoo.transforms import ImageFileLoader, ImageTransform
from tests.images import photo

#: EXIF orientation -> how the stored pixels turn upright (np.rot90's k)
TURNS = {3: 2, 6: -1, 8: 1}


def _jpeg(path, orientation=None) -> np.ndarray:
    img = Image.fromarray(photo("chelsea")).resize((64, 40))
    if orientation is None:
        img.save(path, quality=95)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, quality=95, exif=exif)
    with Image.open(path) as stored:  # PIL does not turn what it decodes
        return np.asarray(stored.convert("RGB"))


@pytest.mark.parametrize("orientation", sorted(TURNS))
def test_jpeg_with_exif_orientation_is_decoded_upright(tmp_path, orientation):
    path = str(tmp_path / f"o{orientation}.jpg")
    stored = _jpeg(path, orientation)
    upright = np.rot90(stored, TURNS[orientation])
    assert np.array_equal(read_image(path), upright)
    assert np.array_equal(ImageLoader().load(WorkItem(None, path)), upright)
    assert np.array_equal(np.asarray(PILLoader().load(WorkItem(None, path))), upright)
    # the torch models' loader: torchvision's libjpeg op, asked to apply the orientation
    pixels = ImageFileLoader(ImageTransform(), defer_normalize=True)(path)
    assert pixels.image_size == (upright.shape[1], upright.shape[0])
    assert torch.equal(pixels.tensor.permute(1, 2, 0), torch.from_numpy(upright.copy()))
    pil_path = ImageFileLoader(ImageTransform(), jpeg_decoder="pil", defer_normalize=True)(path)
    assert torch.equal(pil_path.tensor, pixels.tensor)
    # the stored pixel order, when asked
    assert np.array_equal(read_image(path, exif_orientation=False), stored)
    kept = ImageFileLoader(ImageTransform(), defer_normalize=True, exif_orientation=False)(path)
    assert torch.equal(kept.tensor.permute(1, 2, 0), torch.from_numpy(stored.copy()))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_matches_pil_exif_transpose(tmp_path, orientation):
    from PIL import ImageOps

    path = str(tmp_path / f"o{orientation}.jpg")
    _jpeg(path, orientation)
    with Image.open(path) as img:
        expected = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))  # PIL's own reading of the tag
    assert np.array_equal(read_image(path), expected)
    pixels = ImageFileLoader(ImageTransform(), defer_normalize=True)(path).tensor
    assert np.array_equal(pixels.permute(1, 2, 0).numpy(), expected)


def test_metadata_sizes_are_upright(tmp_path):
    rotated = str(tmp_path / "rotated.jpg")
    plain = str(tmp_path / "plain.jpg")
    _jpeg(rotated, 6)
    _jpeg(plain)
    ds = mz.Dataset.from_images([rotated, plain], name="exif-meta", overwrite=True)
    try:
        sizes = {s.filepath.rsplit("/", 1)[1]: (s.metadata.width, s.metadata.height) for s in ds}
        assert sizes == {"rotated.jpg": (40, 64), "plain.jpg": (64, 40)}
        kept = mz.Dataset("exif-meta-kept", overwrite=True)
        try:
            kept.add_images([rotated], exif_orientation=False)
            assert (kept.first().metadata.width, kept.first().metadata.height) == (64, 40)
        finally:
            kept.delete()
    finally:
        ds.delete()


def test_torch_model_sees_the_upright_image_unless_told(tmp_path):
    from modelzoo.testing import tiny_model

    path = str(tmp_path / "rotated.jpg")
    stored = _jpeg(path, 6)
    upright = np.rot90(stored, -1).copy()
    ds = mz.Dataset.from_images([path], name="exif-model", overwrite=True)
    try:
        model = tiny_model("classification")
        ds.apply_model(model, label_field="up", num_workers=0, progress=False)
        assert ds.first().up.confidence == pytest.approx(model.predict(upright).confidence, abs=1e-6)
        keep = tiny_model("classification", exif_orientation=False)
        ds.apply_model(keep, label_field="stored", num_workers=0, progress=False)
        assert ds.first().stored.confidence == pytest.approx(keep.predict(stored).confidence, abs=1e-6)
        assert model.predict(upright).confidence != pytest.approx(model.predict(stored).confidence, abs=1e-6)
    finally:
        ds.delete()
