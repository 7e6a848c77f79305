"""Small real models for engine tests (picklable: they run under DataLoader workers)."""

from __future__ import annotations

import time
from typing import Any, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

import modelzoo as mz


class MeanColor(mz.Model):
    """Not a torch model: labels an image by its dominant channel; raises on
    images whose width is ``poison_width`` (a model bug on one input)."""

    def __init__(self, poison_width: int = -1, delay: float = 0.0):
        super().__init__()
        self.poison_width = poison_width
        self.delay = delay

    def predict(self, arg: Any) -> mz.Classification:
        arr = np.asarray(arg)
        if arr.shape[1] == self.poison_width:
            raise RuntimeError("poisoned input")
        if self.delay:
            time.sleep(self.delay)
        means = arr.reshape(-1, arr.shape[-1]).mean(0)
        return mz.Classification(label="RGB"[int(means.argmax())], confidence=float(means.max() / 255))


class ToTensor32:
    """uint8 HWC -> float CHW 32x32. Picklable."""

    def __call__(self, image: Any) -> torch.Tensor:
        t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255
        return F.interpolate(t[None], size=(32, 32), mode="bilinear", align_corners=False)[0]


class TinyNet(mz.TorchModelMixin, mz.EmbeddingsMixin, mz.LogitsMixin, mz.Model):
    """A seeded conv net: 4 classes, 8-d embeddings. ``poison_value`` makes
    predict_all raise when a batch holds an input whose first pixel equals it;
    ``wrong_count`` drops an output; ``delay`` sleeps per batch."""

    classes = ["a", "b", "c", "d"]

    def __init__(self, seed: int = 0, poison_value: float = -1.0, wrong_count: bool = False, delay: float = 0.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.randn(8, 3, 3, 3, generator=g)
        self.fc = torch.randn(4, 8, generator=g)
        self.poison_value = poison_value
        self.wrong_count = wrong_count
        self.delay = delay
        self.entered = 0

    @property
    def ragged_batches(self) -> bool:
        return False

    @property
    def transforms(self):
        return ToTensor32()

    def __enter__(self):
        self.entered += 1
        self._threads_before = torch.get_num_threads()
        return self

    def __exit__(self, *exc):
        self.entered -= 1

    def _batch(self, args: Any) -> torch.Tensor:
        if self.preprocess:
            return torch.stack([self.transforms(a) for a in args])
        return args

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        if bool((x[:, 0, 0, 0] == self.poison_value).any()):
            raise RuntimeError("poisoned batch")
        return F.conv2d(x, self.conv, padding=1).relu().mean((2, 3))

    def embed_all(self, args: Sequence[Any]) -> np.ndarray:
        return self._features(self._batch(args)).numpy().astype(np.float32)

    def predict_all(self, args: Sequence[Any]) -> List[mz.Classification]:
        logits = self._features(self._batch(args)) @ self.fc.T
        probs = logits.softmax(1)
        out = []
        for row, p in zip(logits, probs):
            i = int(p.argmax())
            c = mz.Classification(label=self.classes[i], confidence=float(p[i]))
            if self.store_logits:
                c.logits = row.numpy()
            out.append(c)
        return out[:-1] if self.wrong_count else out

    def predict(self, arg: Any) -> mz.Classification:
        return self.predict_all([arg])[0]


class BlockingNet(TinyNet):
    """TinyNet that, on its ``block_at``-th batch, creates ``marker`` and then
    blocks until the process is signalled: a run that cannot finish before
    the test interrupts it, whatever the host's speed."""

    def __init__(self, marker: str, block_at: int = 3):
        super().__init__()
        self.marker = marker
        self.block_at = block_at
        self.batches = 0

    def predict_all(self, args: Sequence[Any]) -> List[mz.Classification]:
        self.batches += 1
        if self.batches == self.block_at:
            import pathlib
            import threading

            pathlib.Path(self.marker).touch()
            threading.Event().wait()  # interrupted by SIGINT (KeyboardInterrupt) or ended by SIGKILL
        return super().predict_all(args)


class TwoHeads(mz.Model):
    """Returns a dict of labels: exercises prefixed / mapped label fields."""

    def predict(self, arg: Any):
        arr = np.asarray(arg)
        h, w = arr.shape[:2]
        return {
            "size": mz.Classification(label="wide" if w >= h else "tall", confidence=0.9),
            "box": mz.Detections(detections=[
                mz.Detection(label="center", bounding_box=[0.25, 0.25, 0.5, 0.5], confidence=0.8),
                mz.Detection(label="low", bounding_box=[0.0, 0.0, 0.1, 0.1], confidence=0.1),
            ]),
        }


class PromptedSize(mz.SamplesMixin, mz.Model):
    """Reads the sample's ``caption`` field: the label is the caption plus the image width."""

    def __init__(self):
        super().__init__()
        self.needs_fields = {"prompt": "caption"}

    def predict(self, arg: Any, sample: Any = None) -> mz.Classification:
        prompt = (sample or {}).get("prompt")
        return mz.Classification(label=f"{prompt}:{np.asarray(arg).shape[1]}")


class FrameCounter(mz.Model):
    """Returns frame-number-keyed labels (the storage of video models)."""

    def predict(self, arg: Any):
        return {1: mz.Classification(label="first"), 2: {"a": mz.Classification(label="second")}}
