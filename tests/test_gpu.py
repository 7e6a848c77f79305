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
