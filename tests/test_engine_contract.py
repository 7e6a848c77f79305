"""The adapter contract: one parametrized test over one tiny model of each
adapter (``TorchImageModel``, a Launch ``BundleModel``, a Tungsten model, a
VESSL ``RunnerModel``), each reached the same three ways (an instance, a zoo
name, a recipe sent through pickle as to another process), run by the engine
at two batch sizes and compared with an independent reference (PIL's
decoding and numpy by hand; for the torch model, a second model of the same
seeds called without the engine)."""

from __future__ import annotations

import json
import os
import pickle
from typing import List, Tuple

import numpy as np
import pytest
from PIL import Image

import modelzoo as mz
from modelzoo import vessl
from modelzoo.recipes import Recipe, recipe_of
from modelzoo.testing import TASKS
from tests import adapter_models
from tests.contract import check_adapter
from tests.images import write_good_images
from tests.vessl_runners import BrightnessRunner

ADAPTERS = ("torch_image", "bundle", "tungsten", "vessl")
THRESHOLD = 110.0


def _pixels(path: str) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _brightness(path: str) -> Tuple[str, float]:
    """The reference of the three brightness adapters, by hand."""
    mean = float(_pixels(path).astype(np.float64).mean())
    return ("bright" if mean > THRESHOLD else "dark"), mean / 255.0


def _reach(adapter: str, home: str, monkeypatch: pytest.MonkeyPatch) -> Tuple[mz.Model, str, Recipe]:
    """The adapter's model as an instance, the zoo name it is registered
    under, and the recipe that rebuilds it elsewhere."""
    name = f"contract-{adapter.replace('_', '-')}"
    if adapter == "torch_image":
        mz.register_zoo_model(name, {**TASKS["classification"], "device": "cpu", "optimize": False})
        instance: mz.Model = adapter_models.torch_image_model()
        return instance, name, recipe_of(instance)  # its class and config
    if adapter == "bundle":
        instance = adapter_models.bundle_model()
        mz.register_zoo_model(name, instance.bundle)  # the zoo's ModelLoader protocol
        return instance, name, recipe_of(instance)  # what the model declares: its stored, signed bundle id
    if adapter == "tungsten":
        mz.register_zoo_model(name, adapter_models.Brightness)
        instance = adapter_models.tungsten_model()
        return instance, name, recipe_of(instance)  # what the model declares (rebuild_recipe)
    # VESSL: registered as repository/number, built from its config
    monkeypatch.setenv(vessl.ENV_TRUST_KEY, os.path.join(home, "trust.key"))
    monkeypatch.chdir(home)
    os.makedirs("out", exist_ok=True)
    with open("out/classes.json", "w") as f:
        json.dump({"classes": ["dark", "bright"], "threshold": THRESHOLD}, f)
    registered = vessl.register_model(
        "contract-vessl", runner_cls=BrightnessRunner, artifacts={"out/classes.json": "config/classes.json"}
    )
    zoo_name = registered.name
    instance = vessl.RunnerModel(mz.load_zoo_model(zoo_name).config)
    return instance, zoo_name, recipe_of(instance)  # its class and config


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_every_adapter_is_reached_the_same_ways_and_keeps_the_contract(adapter, zoo_env, bundle_home, monkeypatch):
    home = str(bundle_home)
    paths = write_good_images(os.path.join(home, "photos"), n=6, size=(64, 48))
    instance, zoo_name, recipe = _reach(adapter, home, monkeypatch)
    ways: List[Tuple[str, mz.Model]] = [
        ("instance", instance),
        ("zoo", mz.load_zoo_model(zoo_name)),
        ("recipe", pickle.loads(pickle.dumps(recipe)).build()),  # as another process would
    ]
    assert recipe_of(ways[1][1]) == Recipe.zoo(zoo_name)  # a zoo model travels by its name
    assert all(isinstance(model, mz.Model) for _, model in ways)
    if adapter == "torch_image":
        reference = adapter_models.torch_image_model()
        expected = {}
        for p in paths:
            ref = reference.predict(_pixels(p))
            expected[p] = (ref.label, ref.confidence)
    else:
        expected = {p: _brightness(p) for p in paths}
    assert {label for label, _ in expected.values()} and len(set(expected.values())) > 1

    check_adapter(f"contract-{adapter}", ways, paths, expected)
