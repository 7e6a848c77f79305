"""The zero-shot path of TorchImageModel (``text_prompt``): prompts embedded
once, images embedded, softmax over the prompts' similarities; checked
against the same computation written out with torch on a tiny CLIP-like
model built here (two seeded encoders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import modelzoo as mz
from tests.images import write_photos

CLASSES = ["cat", "cup of coffee", "astronaut", "rocket"]


class TinyClip(torch.nn.Module):
    """An image encoder (conv, pool, linear) and a text encoder (bag of
    characters, linear), both seeded; CLIP's interface."""

    def __init__(self, dim: int = 12, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.image_proj = torch.nn.Linear(8, dim)
        self.text_proj = torch.nn.Linear(128, dim)
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(20.0), dtype=torch.float32))
        self.text_calls = 0

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(images)).mean(dim=(2, 3))
        return self.image_proj(x)

    def encode_text(self, prompts):
        self.text_calls += 1
        bags = torch.zeros(len(prompts), 128)
        for i, p in enumerate(prompts):
            for ch in p.lower():
                bags[i, ord(ch) % 128] += 1.0
        return self.text_proj(bags)


def _config(clip, **over):
    return {
        "entrypoint_fcn": lambda: clip,
        "classes": CLASSES,
        "text_prompt": "A photo of a",
        "image_size": 64,
        "device": "cpu",
        "optimize": False,
        **over,
    }


def _reference(clip, images):
    """By hand: the tensor of each 64 x 64 image, both encoders, cosine, softmax."""
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in images])
        img = torch.nn.functional.normalize(clip.encode_image(x), dim=1)
        txt = torch.nn.functional.normalize(clip.encode_text([f"A photo of a {c}" for c in CLASSES]), dim=1)
        return (20.0 * img @ txt.T).softmax(dim=1).numpy()


@pytest.fixture
def photos(tmp_path, db):
    paths = write_photos(str(tmp_path), ["chelsea", "coffee", "astronaut", "rocket"], scale=1)
    for p in paths:  # the model's input size exactly: no resize between here and the reference
        Image.open(p).convert("RGB").resize((64, 64)).save(p)
    ds = mz.Dataset("zero-shot", overwrite=True)
    ds.add_samples([mz.Sample(filepath=p) for p in paths])
    yield ds
    ds.delete()


def test_zero_shot_classifier_equals_the_computation_by_hand(photos):
    clip = TinyClip()
    model = mz.TorchImageModel(_config(clip))
    assert clip.text_calls == 1  # the prompts are embedded once, when the model is built
    assert model.can_embed_prompts and model.has_embeddings
    photos.apply_model(model, label_field="zs", batch_size=3, num_workers=0)
    photos.apply_model(model, label_field="zs2", batch_size=2, num_workers=0, store_logits=True)
    assert clip.text_calls == 1
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos.values("filepath")]
    probs = _reference(clip, images)
    assert photos.values("zs.label") == [CLASSES[i] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose(photos.values("zs.confidence"), probs.max(axis=1), rtol=1e-4)
    assert photos.values("zs2.label") == photos.values("zs.label")
    logits = np.stack(photos.values("zs2.logits"))
    np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), probs, rtol=1e-4)
    # image embeddings are the image encoder's; prompt embeddings the text encoder's
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in images])
        np.testing.assert_allclose(photos.compute_embeddings(model, num_workers=0), clip.encode_image(x).numpy(), atol=1e-5)
        np.testing.assert_allclose(model.embed_prompts(["a dog"]), clip.encode_text(["a dog"]).numpy(), atol=1e-6)


def test_classes_per_run_are_the_prompts_of_that_run(photos):
    """apply_model(classes=...) on a zero-shot model: those classes are its
    prompts for this run, embedded once; the labels are those of the same
    model loaded with these classes (an independent path), and the model's
    own classes are unchanged."""
    clip = TinyClip()
    model = mz.TorchImageModel(_config(clip))
    assert model.takes_classes
    before = clip.text_calls
    photos.apply_model(model, label_field="some", classes=["rocket", "cat"], batch_size=2, num_workers=0)
    assert clip.text_calls == before + 1  # the run's prompts, embedded once for its two batches
    assert model.classes == CLASSES
    photos.apply_model(model, label_field="all", num_workers=0)
    reference = mz.TorchImageModel(_config(TinyClip(), classes=["rocket", "cat"]))
    photos.apply_model(reference, label_field="ref", num_workers=0)
    assert photos.values("some.label") == photos.values("ref.label")
    assert set(photos.values("some.label")) <= {"rocket", "cat"}
    np.testing.assert_allclose(photos.values("some.confidence"), photos.values("ref.confidence"), rtol=1e-5)
    # the model's own run is as before: its four classes
    images = [np.asarray(Image.open(p).convert("RGB")) for p in photos.values("filepath")]
    assert photos.values("all.label") == [CLASSES[i] for i in _reference(clip, images).argmax(axis=1)]


def test_classes_per_run_need_names(photos):
    model = mz.TorchImageModel(_config(TinyClip()))
    with pytest.raises(mz.ConfigError, match="non-empty list"):
        photos.apply_model(model, label_field="x", classes=[], num_workers=0)


def test_zero_shot_config_errors():
    with pytest.raises(mz.ConfigError, match="encode_text"):
        mz.TorchImageModel(_config(torch.nn.Linear(2, 2)))
    with pytest.raises(mz.ConfigError, match="needs classes"):
        mz.TorchImageModel(_config(TinyClip(), classes=None))
    with pytest.raises(mz.ConfigError, match="text_prompt must be a string"):
        mz.TorchImageModelConfig(_config(TinyClip(), text_prompt=3))
