"""Output processors: a torch model's raw output for a batch -> one Label per image.

Built-ins: :class:`ClassifierOutputProcessor`, :class:`DetectorOutputProcessor`,
:class:`InstanceSegmenterOutputProcessor`, :class:`KeypointDetectorOutputProcessor`,
:class:`SemanticSegmenterOutputProcessor`, :class:`HeatmapOutputProcessor`. Write your own by subclassing
:class:`OutputProcessor` and name it by dotted path in ``output_processor_cls``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Type

from ..errors import ConfigError, did_you_mean
from ..imports import import_object
from .base import ImageSize, OutputProcessor, check_classes, check_tensor
from .classifier import ClassifierOutputProcessor
from .detector import DetectorOutputProcessor, InstanceSegmenterOutputProcessor
from .heatmap import HeatmapOutputProcessor
from .keypoints import KeypointDetectorOutputProcessor
from .segmenter import SemanticSegmenterOutputProcessor
from .zero_shot import ZeroShotClassifierOutputProcessor

__all__ = [
    "OutputProcessor",
    "ImageSize",
    "ClassifierOutputProcessor",
    "DetectorOutputProcessor",
    "InstanceSegmenterOutputProcessor",
    "KeypointDetectorOutputProcessor",
    "SemanticSegmenterOutputProcessor",
    "HeatmapOutputProcessor",
    "ZeroShotClassifierOutputProcessor",
    "BUILTIN_PROCESSORS",
    "get_output_processor_cls",
    "check_tensor",
    "check_classes",
]

#: the built-in processors by class name
BUILTIN_PROCESSORS: Dict[str, Type[OutputProcessor]] = {
    cls.__name__: cls
    for cls in (
        ClassifierOutputProcessor,
        DetectorOutputProcessor,
        InstanceSegmenterOutputProcessor,
        KeypointDetectorOutputProcessor,
        SemanticSegmenterOutputProcessor,
        HeatmapOutputProcessor,
        ZeroShotClassifierOutputProcessor,
    )
}

logger = logging.getLogger(__name__)


def get_output_processor_cls(spec: Any) -> Type[OutputProcessor]:
    """Resolves ``output_processor_cls``: a built-in's name (``"ClassifierOutputProcessor"``),
    a dotted path to an :class:`OutputProcessor` subclass, or the class itself.

    A dotted path that does not import but ends in a built-in's name (e.g.
    FiftyOne's ``fiftyone.utils.torch.ClassifierOutputProcessor``) gives the built-in.

    Raises:
        ConfigError: unknown name (listing the built-ins) or not an OutputProcessor subclass.
    """
    builtins = ", ".join(BUILTIN_PROCESSORS)
    if isinstance(spec, str):
        name = spec.strip()
        if name in BUILTIN_PROCESSORS:
            return BUILTIN_PROCESSORS[name]
        if "." not in name:
            raise ConfigError(
                f"Unknown output processor {spec!r}." + did_you_mean(name, BUILTIN_PROCESSORS, n=1)
                + f" Built-in processors: {builtins}; or give a dotted path to an OutputProcessor subclass."
            )
        try:
            cls = import_object(name, "output_processor_cls")
        except ConfigError as e:
            short = name.rsplit(".", 1)[-1]
            if short in BUILTIN_PROCESSORS:
                logger.info("output_processor_cls %r does not import; using the built-in %s", name, short)
                return BUILTIN_PROCESSORS[short]
            raise ConfigError(f"{e} Built-in processors: {builtins}.") from e
    else:
        cls = spec
    if not (isinstance(cls, type) and issubclass(cls, OutputProcessor)):
        raise ConfigError(
            f"output_processor_cls {spec!r} is not an OutputProcessor subclass. "
            f"Built-in processors: {builtins}; custom ones subclass modelzoo.processors.OutputProcessor."
        )
    return cls
