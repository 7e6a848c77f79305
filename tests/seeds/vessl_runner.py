# Seed 003 (VESSL RunnerBase) with VESSL's deploy guide example, copied as a user would:
# `import vessl` became `import modelzoo.vessl as vessl`. The model is a tiny seeded torch
# classifier saved as model.pt beside this script's working directory (the guide's `Net`);
# preprocess_data takes the image file's bytes (the guide's raw request body).
from io import BytesIO

import numpy as np
import torch
from PIL import Image

import modelzoo.vessl as vessl
from modelzoo.testing import tiny_classifier

vessl.configure()


class MyRunner(vessl.RunnerBase):
    @staticmethod
    def load_model(props, artifacts):
        model = tiny_classifier()
        model.load_state_dict(torch.load("model.pt", weights_only=True))
        model.eval()
        return model

    @staticmethod
    def preprocess_data(data):
        image = Image.open(BytesIO(data)).convert("RGB").resize((32, 32))
        return torch.from_numpy(np.array(image)).permute(2, 0, 1).float().div(255).unsqueeze(0)

    @staticmethod
    def predict(model, data):
        with torch.no_grad():
            return model(data)

    @staticmethod
    def postprocess_data(data):
        return {"class_index": int(data.argmax(1)), "score": float(data.softmax(1).max())}


def register(repository_name="seed-vessl-runner"):
    return vessl.register_model(
        repository_name=repository_name,
        model_number=None,
        runner_cls=MyRunner,
        requirements=["torch"],
        artifacts={"model.pt": "model.pt"},
    )
