"""Models for the serving tests, importable by a ``modelzoo serve`` child process."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import numpy as np
import pydantic

import modelzoo as mz
from modelzoo.testing import TASKS
from modelzoo.torch_image import TorchImageModel

#: the tiny seeded classifier's settings (what the manifest and the in-process reference both use)
CLASSIFIER: Dict[str, Any] = {**TASKS["classification"], "device": "cpu", "optimize": False}


class PickyClassifier(TorchImageModel):
    """The tiny classifier, refusing images under 16 pixels on a side: an
    exception in ``predict`` for one input (raised for the whole batch)."""

    def predict_all(self, args: Any) -> List[Any]:
        if isinstance(args, list):
            for arg in args:
                h, w = np.asarray(arg).shape[:2]
                if min(h, w) < 16:
                    raise ValueError(f"image too small: {w}x{h} pixels, needs at least 16 on each side")
        return super().predict_all(args)


class Prompt(pydantic.BaseModel):
    text: str = pydantic.Field(min_length=1)
    repeat: int = pydantic.Field(1, ge=1, le=4, description="how many times to repeat the text")


class Reply(pydantic.BaseModel):
    text: str
    length: int


class Repeater(mz.Model):
    """A typed model (request and response schemas), batched by ``repeat``;
    the text ``"boom"`` makes it raise."""

    request_schema = Prompt
    response_schema = Reply

    def __init__(self, config: Any = None):
        super().__init__(config)
        self.batches: List[List[Prompt]] = []

    def batch_key(self, arg: Prompt) -> Any:
        return arg.repeat

    def predict(self, arg: Prompt) -> Reply:
        return self.predict_all([arg])[0]

    def predict_all(self, args: Any) -> List[Reply]:
        self.batches.append(list(args))
        if len({a.repeat for a in args}) != 1:
            raise AssertionError("inputs with different keys shared a batch")
        for a in args:
            if a.text == "boom":
                raise RuntimeError("boom is not a word")
        return [Reply(text=a.text * a.repeat, length=len(a.text) * a.repeat) for a in args]


def tungsten_generator() -> Tuple[Any, List[List[Any]]]:
    """A Tungsten-style model class (``@define_model``): a tiny generator
    whose ``width`` / ``height`` options are restricted to 32 or 64; and the
    list its batches' options are recorded in."""
    from PIL import Image as PILImage

    from modelzoo.tungsten import BaseIO, Image, Option, define_model

    class GenInput(BaseIO):
        prompt: str
        width: int = Option(32, choices=[32, 64])
        height: int = Option(32, choices=[32, 64])

    class GenOutput(BaseIO):
        image: Image
        prompt_length: int

    batches: List[List[Any]] = []

    @define_model(input=GenInput, output=GenOutput, batch_size=4)
    class Generator:
        def predict(self, inputs: List[GenInput]) -> List[GenOutput]:
            batches.append([(i.width, i.height) for i in inputs])
            first = inputs[0]
            return [
                GenOutput(image=Image.from_pil_image(PILImage.new("RGB", (first.width, first.height), (len(i.prompt), 0, 0))),
                          prompt_length=len(i.prompt))
                for i in inputs
            ]

    return Generator, batches


class ByteCounter(mz.Model):
    """A model of bytes (``BytesLoader``, the loader of bundles and VESSL
    models): answers the length and sha256 of what it was given, so a test can
    tell which file the server read."""

    def build_loader(self) -> Any:
        from modelzoo.loaders import BytesLoader

        return BytesLoader()

    def predict(self, arg: bytes) -> Dict[str, Any]:
        import hashlib

        return {"bytes": len(arg), "sha256": hashlib.sha256(arg).hexdigest()}


def _read_after_gate(path: str) -> str:
    """Opens the FIFO named by ``$MODELZOO_TEST_GATE`` first: an open that
    blocks until someone writes to it (a decode stuck in flight)."""
    import os

    with open(os.environ["MODELZOO_TEST_GATE"], "rb") as gate:
        gate.read(1)
    return path


class StuckReader(mz.Model):
    """A model whose loader opens its file itself and blocks on a FIFO
    (``$MODELZOO_TEST_GATE``) before it: a decode that never ends unless the
    FIFO is written."""

    def build_loader(self) -> Any:
        from modelzoo.loaders import FileLoader

        return FileLoader(_read_after_gate)

    def predict(self, arg: str) -> str:
        return arg


class Echo(mz.Model):
    """A model that opens files itself (``PathLoader``): answers the path it was given."""

    def build_loader(self) -> Any:
        from modelzoo.loaders import PathLoader

        return PathLoader()

    def predict(self, arg: str) -> str:
        return arg
