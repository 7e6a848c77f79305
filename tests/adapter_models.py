"""One tiny model per adapter, each built by a module-level function (so that a
recipe, a zoo entry or a second process can build it again by name), for the
adapter contract in tests/test_engine_contract.py."""

from __future__ import annotations

from typing import Any, Callable, List

import numpy as np

import modelzoo as mz
from modelzoo.bundles import LaunchClient
from modelzoo.testing import TASKS
from modelzoo.torch_image import TorchImageModel
from modelzoo.tungsten import BaseIO, Image, define_model


# -- TorchImageModel: the tiny seeded classifier -----------------------------------------------
def torch_image_model() -> TorchImageModel:
    return TorchImageModel({**TASKS["classification"], "device": "cpu", "optimize": False})


# -- a Launch bundle (array input): brightness and aspect, from the decoded pixels --------------
def _load_predict_fn(threshold: Any) -> Callable[[np.ndarray], Any]:
    def predict(image: np.ndarray) -> mz.Classification:
        mean = float(image.mean())
        return mz.Classification(label="bright" if mean > threshold else "dark", confidence=mean / 255.0)

    return predict


def bundle_model() -> Any:
    """The same bundle stored (signed with this user's key), as a model: it
    travels to another process as its bundle id (``BundleModel.rebuild_recipe``)."""
    client = LaunchClient()
    created = client.create_model_bundle_from_callable_v2(
        model_bundle_name="contract-bundle", model=110.0, load_predict_fn=_load_predict_fn, input="array"
    )
    return client.get_model_bundle_v2(created.model_bundle_id).to_model()


# -- a Tungsten model: one Image field in, a label and a score out --------------------------------
class Photo(BaseIO):
    image: Image


class Guess(BaseIO):
    label: str
    score: float


@define_model(input=Photo, output=Guess, batch_size=2)
class Brightness:
    def predict(self, inputs: List[Photo]) -> List[Guess]:
        out = []
        for inp in inputs:
            mean = float(inp.image.to_numpy().mean())
            out.append(Guess(label="bright" if mean > 110 else "dark", score=mean / 255.0))
        return out


def tungsten_model() -> Any:
    return Brightness()
