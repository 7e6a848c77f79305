"""On a CUDA device, the same models give the same answers as on the CPU.

Every test here is marked ``gpu`` and skipped without a CUDA device
(``pytest -m gpu`` runs only these; ``pytest -m "not gpu"`` leaves them out).
"""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from modelzoo.testing import tiny_model

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

#: photographs that ship with scikit-image (no download), uint8 HWC
PHOTOS = [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in ("astronaut", "chelsea", "coffee", "rocket")]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("optimize", [False, True])
def test_tiny_classifier_on_cuda_matches_the_cpu(optimize):
    cpu = tiny_model("classification", device="cpu", optimize=optimize)
    gpu = tiny_model("classification", device="cuda", optimize=optimize)
    assert next(gpu.torch_model.parameters()).device.type == "cuda"
    with cpu, gpu:
        expected = cpu.predict_all(PHOTOS)
        got = gpu.predict_all(PHOTOS)
        assert len(got) == len(expected) == len(PHOTOS)
        assert [c.label for c in got] == [c.label for c in expected]
        np.testing.assert_allclose([c.confidence for c in got], [c.confidence for c in expected], atol=1e-3)
        emb_cpu, emb_gpu = cpu.embed_all(PHOTOS), gpu.embed_all(PHOTOS)
        assert emb_gpu.shape == emb_cpu.shape == (len(PHOTOS), 16)
        np.testing.assert_allclose(emb_gpu, emb_cpu, rtol=1e-3, atol=1e-3)


def _photo_files(root):
    from PIL import Image

    paths = []
    for i, array in enumerate(PHOTOS):
        path = str(root / f"photo_{i}.jpg")
        Image.fromarray(array).save(path, quality=92)
        paths.append(path)
    return paths


@pytest.mark.gpu
@needs_cuda
def test_apply_model_on_cuda_writes_the_cpu_labels(tmp_path):
    """The engine's CUDA path: pinned uint8 batches, non-blocking copies,
    normalization on the device."""
    import modelzoo as mz

    dataset = mz.Dataset.from_images(_photo_files(tmp_path), name="gpu-apply", overwrite=True)
    try:
        for device in ("cpu", "cuda"):
            report = dataset.apply_model(tiny_model("classification", device=device), f"on_{device}", batch_size=2)
            assert report.processed == len(PHOTOS) and not report.failures
        for sample in dataset:
            assert sample.on_cuda.label == sample.on_cpu.label
            assert sample.on_cuda.confidence == pytest.approx(sample.on_cpu.confidence, abs=1e-3)
    finally:
        dataset.delete()


@pytest.mark.gpu
@needs_cuda
def test_half_precision_matches_float32_on_cuda():
    full = tiny_model("classification", device="cuda")
    half = tiny_model("classification", device="cuda", use_half_precision=True)
    assert next(half.torch_model.parameters()).dtype == torch.float16
    with full, half:
        a, b = full.predict_all(PHOTOS), half.predict_all(PHOTOS)
    assert [c.label for c in a] == [c.label for c in b]
    np.testing.assert_allclose([c.confidence for c in a], [c.confidence for c in b], atol=1e-2)


@pytest.mark.gpu
@needs_cuda
def test_cudnn_benchmark_is_set_inside_with_and_restored():
    before = torch.backends.cudnn.benchmark
    model = tiny_model("classification", device="cuda", cudnn_benchmark=not before)
    with model:
        assert torch.backends.cudnn.benchmark is (not before)
        model.predict(PHOTOS[0])
    assert torch.backends.cudnn.benchmark is before


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("task", ["detection", "segmentation"])
def test_dense_models_on_cuda_match_the_cpu(task):
    cpu = tiny_model(task, device="cpu")
    gpu = tiny_model(task, device="cuda")
    with cpu, gpu:
        expected, got = cpu.predict_all(PHOTOS[:2]), gpu.predict_all(PHOTOS[:2])
    for e, g in zip(expected, got):
        if task == "detection":
            e = e["detections"] if isinstance(e, dict) else e
            g = g["detections"] if isinstance(g, dict) else g
            assert len(g.detections) == len(e.detections)
            np.testing.assert_allclose([d.bounding_box for d in g.detections],
                                       [d.bounding_box for d in e.detections], atol=1e-3)
        else:
            agree = (np.asarray(g.mask) == np.asarray(e.mask)).mean()
            assert agree > 0.99
