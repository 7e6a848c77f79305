"""The model contract, written once and run on every kind of model.

Subclass :class:`ModelContract` in a test module and define ``make_model``
(a fresh model) and ``inputs`` (uint8 HWC arrays). Every check compares the
model with itself under different batching, so it holds for any model.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch

import modelzoo as mz
from modelzoo.fields import label_updates


def _comparable(labels: Any) -> Any:
    fields = label_updates(labels, "f")
    return {k: (v.to_dict() if v is not None else None) for k, v in fields.items()}


def _assert_same(a: Any, b: Any, atol: float = 1e-5) -> None:
    da, db_ = _comparable(a), _comparable(b)
    assert da.keys() == db_.keys()
    _close(da, db_, atol)


def _close(x: Any, y: Any, atol: float) -> None:
    if isinstance(x, dict):
        # a label's id is new for every label made: the same prediction twice has two ids
        x = {k: v for k, v in x.items() if k != "_id"}
        y = {k: v for k, v in y.items() if k != "_id"} if isinstance(y, dict) else y
        assert isinstance(y, dict) and x.keys() == y.keys(), (x, y)
        for k in x:
            _close(x[k], y[k], atol)
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), (x, y)
        for p, q in zip(x, y):
            _close(p, q, atol)
    elif isinstance(x, float):
        assert y == pytest.approx(x, abs=atol), (x, y)
    elif isinstance(x, bytes):
        from modelzoo.encoding import decode_array

        np.testing.assert_allclose(decode_array(x), decode_array(y), atol=atol)
    else:
        assert x == y


def check_adapter(
    dataset_name: str,
    ways: Sequence[Tuple[str, mz.Model]],
    paths: Sequence[str],
    expected: Dict[str, Tuple[str, float]],
) -> None:
    """The contract of an adapter, through the engine: each way of reaching
    the model (``(name, model)``: an instance, a zoo name, a recipe...) runs
    ``apply_model`` at batch sizes 1 and 3 over ``paths`` and stores, for
    each file, the ``(label, confidence)`` of ``expected`` (an independent
    reference); the runs leave torch's global state as they found it."""
    ds = mz.Dataset(dataset_name, overwrite=True)
    try:
        ds.add_images(list(paths))
        before = (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.is_grad_enabled())
        for way, model in ways:
            assert isinstance(model, mz.Model), way
            for batch_size in (1, 3):
                field = f"{way}_{batch_size}"
                report = ds.apply_model(model, label_field=field, batch_size=batch_size, num_workers=0, progress=False)
                assert report.processed == len(paths) and report.failed == 0, (way, report.failures)
                for sample in ds:
                    got, (label, confidence) = sample[field], expected[sample.filepath]
                    assert isinstance(got, mz.Classification), (way, batch_size, got)
                    assert got.label == label, (way, batch_size, sample.filepath)
                    assert got.confidence == pytest.approx(confidence, abs=1e-5), (way, batch_size, sample.filepath)
        assert (torch.get_num_threads(), torch.backends.cudnn.benchmark, torch.is_grad_enabled()) == before
    finally:
        ds.delete()
        for _, model in ways:
            close = getattr(model, "close", None)
            if callable(close):
                close()


class ModelContract:
    """Mix into a test class; provide ``make_model()`` and ``inputs()``."""

    atol = 1e-5

    def make_model(self) -> mz.Model:
        raise NotImplementedError

    def inputs(self) -> List[np.ndarray]:
        raise NotImplementedError

    def test_predict_equals_predict_all_of_one(self):
        model = self.make_model()
        with model:
            for x in self.inputs()[:3]:
                _assert_same(model.predict(x), model.predict_all([x])[0], self.atol)

    def test_batch_sizes_agree(self):
        model = self.make_model()
        xs = self.inputs()
        with model:
            singles = [model.predict_all([x])[0] for x in xs]
            batched = model.predict_all(xs)
        assert len(batched) == len(xs)
        for a, b in zip(singles, batched):
            _assert_same(a, b, self.atol)

    def test_accepts_pil_images(self):
        from PIL import Image

        model = self.make_model()
        x = self.inputs()[0]
        with model:
            _assert_same(model.predict(Image.fromarray(x)), model.predict(x), self.atol)

    def test_embed_all_shape(self):
        model = self.make_model()
        if not model.has_embeddings:
            with pytest.raises(mz.ModelError):
                mz.compute_embeddings(mz.Dataset("contract-embed", overwrite=True), model)
            mz.delete_dataset("contract-embed")
            return
        xs = self.inputs()
        with model:
            emb = model.embed_all(xs)
            one = model.embed(xs[0])
        assert isinstance(emb, np.ndarray) and emb.dtype == np.float32
        assert emb.ndim == 2 and emb.shape[0] == len(xs) and emb.shape[1] > 0
        np.testing.assert_allclose(one, emb[0], atol=self.atol, rtol=1e-4)

    def test_store_logits_rules(self):
        model = self.make_model()
        if not model.has_logits:
            if isinstance(model, mz.LogitsMixin):
                with pytest.raises(mz.ModelError):
                    model.store_logits = True
            return
        model.store_logits = True
        with model:
            out = model.predict(self.inputs()[0])
        stored = [v for v in label_updates(out, "f").values() if v is not None]
        assert any(getattr(v, "logits", None) is not None for v in stored)

    def test_context_manager_restores_global_state(self):
        model = self.make_model()
        threads = torch.get_num_threads()
        bench = torch.backends.cudnn.benchmark
        grad = torch.is_grad_enabled()
        with model:
            model.predict(self.inputs()[0])
        assert torch.get_num_threads() == threads
        assert torch.backends.cudnn.benchmark == bench
        assert torch.is_grad_enabled() == grad
