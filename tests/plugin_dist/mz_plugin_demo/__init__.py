"""A tiny modelzoo plugin: what a third-party package ships to add zoo models."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def zoo_entries():
    """The ``modelzoo.models`` entry point: a manifest file and a model given in Python."""
    from modelzoo.zoo import make_zoo_model_info

    from .nets import BrightnessModel

    return [
        os.path.join(HERE, "manifest.json"),
        make_zoo_model_info(
            "plugin-brightness", BrightnessModel, description="Labels an image 'dark' or 'bright'.",
            tags=["classification", "plugin"], origin="plugin mz-plugin-demo",
        ),
    ]
