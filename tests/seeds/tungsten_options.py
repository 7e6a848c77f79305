# Seed 002 (Tungstenkit "Model Definition"), the text-to-image model with options, copied as a
# user would: `from tungstenkit import ...` became `from modelzoo.tungsten import ...`; the
# seed's Option(...) calls get their closing brackets and defaults, and the user's own setup
# gives self.model (here: a seeded generator of solid-colour images, its colour from the prompt).
from typing import List

import numpy as np
from PIL import Image as PILImage

from modelzoo.tungsten import BaseIO, Image, Option, define_model


class Input(BaseIO):
    prompt: str
    width: int = Option(
        128,
        choices=[128, 256],
    )
    height: int = Option(
        128,
        choices=[128, 256],
    )

class Output(BaseIO):
    image: Image


def colour_of(prompt):
    rng = np.random.default_rng(sum(prompt.encode()))
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def solid_images(prompts, width, height):
    return [PILImage.new("RGB", (width, height), colour_of(p)) for p in prompts]


@define_model(input=Input, output=Output)
class TextToImageModel:
    def setup(self):
        self.model = solid_images

    def predict(self, inputs: List[Input]) -> List[Output]:
        options = inputs[0]
        prompts = [inp.prompt for inp in inputs]
        pil_images = self.model(prompts, width=options.width, height=options.height)
        images = [Image.from_pil_image(pil_image) for pil_image in pil_images]
        outputs = [Output(image=image) for image in images]
        return outputs
