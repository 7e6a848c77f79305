# Seed 000 (Nucleus "Create a Model Bundle"): the object detection bundle, as a user fills in the
# seed's blanks: torch.load('') loads the whole model, which needs weights_only=False, so the
# model is built and its weights (a state dict, WEIGHTS) loaded instead; the image bytes are
# opened with PIL; the seed's `device = torch.device('cpu')` is its `else:` branch, and its
# dict braces around each box are restored. The import is torchvision's, no Launch import.
import io
import os

import torch
import torchvision.transforms as T
from PIL import Image

from modelzoo.testing import tiny_detector

WEIGHTS = os.environ.get("SEED_DETECTOR_WEIGHTS", "detector.pth")


def load_model_fn():
    model = tiny_detector()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    model.eval()
    return model


# This returns predict at the end
def load_predict_fn(model):
    if torch.cuda.is_available():
        device = torch.device('cuda')
    else:
        device = torch.device('cpu')
    model.to(device)

    def preprocess(img_bytes):
        # Transform the image bytes -> PIL image -> PyTorch tensor
        img = Image.open(io.BytesIO(img_bytes)).convert("RGB")
        return T.ToTensor()(img)

    def predict(img_bytes):
        # Run the model input on the PyTorch model, this is the function that is returned
        tensor = preprocess(img_bytes)
        with torch.no_grad():
            model_output = model([tensor.to(device)])
        return postprocess(model_output)

    def postprocess(model_output):
        # Transform the model's output (PyTorch tensor) into JSON that gets
        # ingested by Nucleus, this needs to conform to the Nucleus annotation format.
        raw_boxes = model_output[0]['boxes'].cpu().numpy()  # in x1, y1, x2, y2 format
        raw_labels = model_output[0]['labels'].cpu().numpy()
        raw_scores = model_output[0]['scores'].cpu().numpy()
        box_objects = []
        for box, label, score in zip(raw_boxes, raw_labels, raw_scores):
            box_objects.append({
                'geometry': {
                    'x': float(box[0]),
                    'y': float(box[1]),
                    'width': float(box[2] - box[0]),
                    'height': float(box[3] - box[1]),
                },
                'type': 'box',
                'label': str(label),
                'confidence': float(score),
            })
        return box_objects

    return predict
