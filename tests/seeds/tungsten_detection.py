# Seed 002 (Tungstenkit "Model Definition"), the object detection model with a demo method, copied
# as a user would: `from tungstenkit import ...` became `from modelzoo.tungsten import ...`; setup
# is the seed's first example (torch.load("./weights.pth"), a file of the build directory), and
# load_torch_model / visualize are the user's own helpers the seed leaves out. Seed bug worked
# around (docs/tungsten.md, known differences): the seed's predict_demo has no `self`.
from typing import List, Tuple

import torch
import torchvision.transforms.functional as TF
from PIL import ImageDraw

from modelzoo.testing import tiny_detector
from modelzoo.tungsten import BaseIO, Image, define_model


def load_torch_model(weights):
    model = tiny_detector()
    model.load_state_dict(weights)
    return model.eval()


def visualize(inputs, outputs):
    images = []
    for inp, out in zip(inputs, outputs):
        pil = inp.image.to_pil_image()
        draw = ImageDraw.Draw(pil)
        for det in out.detections:
            b = det.bbox
            draw.rectangle([b.xmin, b.ymin, b.xmax, b.ymax], outline=(255, 0, 0))
        images.append(pil)
    return images


class BoundingBox(BaseIO):
    xmin: int
    xmax: int
    ymin: int
    ymax: int

class Detection(BaseIO):
    label: str
    bbox: BoundingBox

class Input(BaseIO):
    image: Image

class Output(BaseIO):
    detections: List[Detection]

class Visualization(BaseIO):
    result: Image

@define_model(input=Input, output=Output, demo_output=Visualization, python_packages=["torch", "torchvision"])
class ObjectDetectionModel:
    def setup(self):
        weights = torch.load("./weights.pth")
        self.model = load_torch_model(weights)

    def predict(self, inputs: List[Input]) -> List[Output]:
        tensors = [TF.to_tensor(inp.image.to_pil_image()) for inp in inputs]
        with torch.no_grad():
            results = self.model(tensors)
        outputs = []
        for r in results:
            detections = [
                Detection(label=str(int(label)), bbox=BoundingBox(
                    xmin=int(box[0]), ymin=int(box[1]), xmax=int(box[2]), ymax=int(box[3])))
                for box, label in zip(r["boxes"].tolist(), r["labels"].tolist())
            ]
            outputs.append(Output(detections=detections))
        return outputs

    def predict_demo(
        self,  # the seed omits self
        inputs: List[Input]
    ) -> Tuple[List[Output], List[Visualization]]:
        outputs = self.predict(inputs)
        pil_images = visualize(inputs, outputs)
        images = [Image.from_pil_image(pil_image) for pil_image in pil_images]
        visualizations = [Visualization(result=image) for image in images]
        return outputs, visualizations
