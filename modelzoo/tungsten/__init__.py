"""Tungstenkit-style models, run in-process as :class:`modelzoo.Model`.

Code written for Tungstenkit runs with one changed import::

    from typing import List
    from modelzoo.tungsten import BaseIO, Image, Option, define_model   # was: from tungstenkit import ...

    class Input(BaseIO):
        prompt: str
        width: int = Option(128, choices=[128, 256])

    class Output(BaseIO):
        image: Image

    @define_model(input=Input, output=Output, batch_size=4)
    class TextToImage:
        def setup(self): ...
        def predict(self, inputs: List[Input]) -> List[Output]: ...

    model = TextToImage()                       # a modelzoo.Model
    model.predict(Input(prompt="a cat"))        # one output; predict([...]) -> a list
    dataset.apply_model(TextToImage(fields={"prompt": "caption"}), label_field="generated")

Every call of the class's ``predict`` gets at most ``batch_size`` inputs whose
options are all equal; ``choices`` and bounds are checked on every input.
See ``docs/tungsten.md``.
"""

from .convert import output_converter
from .define import CONTAINER_SETTINGS, TungstenInfo, define_model
from .errors import FileInputError, TungstenDefinitionError, TungstenError, TungstenInputError, TungstenOutputError
from .files import Audio, Binary, File, Image, Video
from .io import BaseIO, Field, Option, batch_key, option_names
from .model import LoadedFile, TungstenConfig, TungstenLoader, TungstenModel

__all__ = [
    "define_model",
    "BaseIO",
    "Field",
    "Option",
    "File",
    "Image",
    "Binary",
    "Audio",
    "Video",
    "TungstenModel",
    "TungstenConfig",
    "TungstenInfo",
    "TungstenLoader",
    "LoadedFile",
    "CONTAINER_SETTINGS",
    "batch_key",
    "option_names",
    "output_converter",
    "TungstenError",
    "TungstenDefinitionError",
    "TungstenInputError",
    "TungstenOutputError",
    "FileInputError",
]
