"""VESSL-style runners and hooks for tests/test_vessl.py, in an importable module
(a second process imports them back by name, as it would a user's package)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

from modelzoo.vessl import RunnerBase


def brightness(data: bytes) -> float:
    """The reference: the mean of the decoded RGB pixels."""
    return float(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64).mean())


class BrightnessRunner(RunnerBase):
    """Classes come from an artifact (``classes.json``: names and a threshold),
    read both through ``artifacts`` and by a relative path, as VESSL users do."""

    @staticmethod
    def load_model(props, artifacts):
        # by its volume path (the local path given works too), inside a registered directory, or
        # (a file uploaded with upload_model_volume_file, not an artifact) relative to the volume
        path = artifacts.get("config/classes.json") or os.path.join(artifacts.get("config/", "config"), "classes.json")
        with open(path) as f:
            by_key = json.load(f)
        with open("config/classes.json") as f:     # relative: load_model runs in the model volume
            relative = json.load(f)
        assert by_key == relative
        return by_key

    @staticmethod
    def preprocess_data(data):
        return brightness(data)             # a VESSL request body: the image's bytes

    @staticmethod
    def predict(model, data):
        index = int(data > model["threshold"])
        return {"label": model["classes"][index], "confidence": data / 255.0}


class ResultRunner(BrightnessRunner):
    """MNIST-example style: the answer is ``{"result": <int>}`` (stored as a plain field)."""

    @staticmethod
    def postprocess_data(data):
        return {"result": int(data["confidence"] * 255.0 > 100)}


def to_tensor(data: bytes):
    """preprocess_data for the torch model: image bytes -> a (1, 3, H, W) float tensor."""
    import torch

    arr = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((64, 64)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).contiguous()


class SavesItself(RunnerBase):
    """save_model writes the model (a dict) to a file in the volume; load_model reads it back."""

    @staticmethod
    def save_model(model):
        with open("weights.json", "w") as f:
            json.dump(model, f)
        return {"path": "weights.json"}

    @staticmethod
    def load_model(props, artifacts):
        with open(props["path"]) as f:
            return json.load(f)

    @staticmethod
    def predict(model, data):
        return model["scale"] * len(data)


class SavesOnly(RunnerBase):
    @staticmethod
    def save_model(model):
        return {}

    @staticmethod
    def predict(model, data):
        return data
