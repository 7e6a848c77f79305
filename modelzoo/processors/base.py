"""The OutputProcessor contract: a model's raw output for a batch -> one Label per image.

A processor is called as::

    labels = processor(output, image_sizes, input_sizes, confidence_thresh=0.3)

where ``output`` is what the torch model returned for a batch of ``N``
images, moved to the CPU with floating tensors as float32; ``image_sizes``
are the ``(width, height)`` of the images the user has (before any resize)
and ``input_sizes`` the ``(width, height)`` of the tensors the model saw.
Geometry in the returned labels is relative to the image, so it holds for
the original image whatever the resize. Each subclass states the tensors it
expects in its docstring and checks them in :meth:`OutputProcessor.check`;
a mismatch raises :class:`~modelzoo.errors.ModelError` showing the expected
and the actual shape.
"""

from __future__ import annotations

import copy
from typing import Any, List, Optional, Sequence, Tuple

import torch

from ..errors import ConfigError, ModelError
from ..labels import filter_output

__all__ = ["OutputProcessor", "ImageSize", "check_tensor", "check_classes"]

#: ``(width, height)`` in pixels
ImageSize = Tuple[int, int]


def _fmt(shape: Sequence[Any]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"


def check_tensor(
    owner: str,
    what: str,
    value: Any,
    shape: Sequence[Any],
    floating: Optional[bool] = None,
) -> torch.Tensor:
    """Checks that ``value`` is a tensor of ``shape`` and returns it.

    Args:
        owner: who expects it (for the message), e.g. ``"ClassifierOutputProcessor"``.
        what: its name, e.g. ``"logits"``.
        shape: the expected dimensions; an int must match, ``None`` matches anything.
        floating: require a floating (True) or integer (False) dtype.

    Raises:
        ModelError: with the expected and the actual shape.
    """
    if not isinstance(value, torch.Tensor):
        raise ModelError(
            f"{owner} expects {what} as a tensor of shape {_fmt(shape)}, got {type(value).__name__}"
        )
    actual = tuple(value.shape)
    if len(actual) != len(shape) or any(e is not None and e != a for e, a in zip(shape, actual)):
        raise ModelError(f"{owner} expects {what} of shape {_fmt(shape)}, got {_fmt(actual)}")
    if floating is True and not value.is_floating_point():
        raise ModelError(f"{owner} expects {what} as a floating tensor, got {value.dtype}")
    if floating is False and (value.is_floating_point() or value.is_complex()):
        raise ModelError(f"{owner} expects {what} as an integer tensor, got {value.dtype}")
    return value


def check_classes(owner: str, classes: Optional[Sequence[str]], width: int, what: str = "scores") -> None:
    """Raises :class:`ConfigError` when ``classes`` does not have ``width`` names."""
    if classes is not None and len(classes) != width:
        raise ConfigError(
            f"{owner}: classes has {len(classes)} names but the model outputs {width} {what} per image. "
            "Give exactly one class name per output (check classes / labels_path / labels_string)."
        )


class OutputProcessor:
    """Base of output processors. Subclasses implement :meth:`check` and :meth:`parse`.

    Args:
        classes: the class names, indexed by the model's class index.

    Attributes:
        has_logits: whether :attr:`store_logits` is meaningful.
        store_logits: keep raw logits on the labels (set by the model).
        traceable: whether the model's outputs for this task can come from a
            traced graph (plain tensors or dicts of tensors); torchvision
            detectors return per-image dicts of varying length, so no.
    """

    has_logits: bool = False
    traceable: bool = True

    def __init__(self, classes: Optional[Sequence[str]] = None):
        self.classes: Optional[List[str]] = None if classes is None else [str(c) for c in classes]
        self.store_logits = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def __call__(
        self,
        output: Any,
        image_sizes: Sequence[ImageSize],
        input_sizes: Optional[Sequence[ImageSize]] = None,
        confidence_thresh: Optional[float] = None,
    ) -> List[Any]:
        """Returns one label (or dict of labels) per image, in order."""
        image_sizes = [(int(w), int(h)) for w, h in image_sizes]
        input_sizes = image_sizes if input_sizes is None else [(int(w), int(h)) for w, h in input_sizes]
        if len(input_sizes) != len(image_sizes):
            raise ModelError(f"{self.name}: {len(image_sizes)} image sizes but {len(input_sizes)} input sizes")
        self.check(output, len(image_sizes), input_sizes)
        labels = self.parse(output, image_sizes, input_sizes)
        if len(labels) != len(image_sizes):
            raise ModelError(f"{self.name} returned {len(labels)} labels for {len(image_sizes)} images")
        return [self.filter(label, confidence_thresh) for label in labels]

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        """Raises :class:`ModelError` when ``output`` breaks the processor's tensor contract."""

    def parse(
        self, output: Any, image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]
    ) -> List[Any]:
        """Builds the labels; ``output`` has passed :meth:`check`."""
        raise NotImplementedError

    def filter(self, label: Any, thresh: Optional[float]) -> Any:
        """Drops predictions below ``thresh`` (see :func:`modelzoo.labels.filter_output`)."""
        return filter_output(label, thresh)

    def with_classes(self, classes: Sequence[str]) -> "OutputProcessor":
        """A copy of this processor for other classes (a zero-shot run's
        prompts); this one is unchanged."""
        other = copy.copy(self)
        other.classes = [str(c) for c in classes]
        return other

    def class_name(self, index: int) -> str:
        """The name of class ``index``; its number as a string when there is no name."""
        if self.classes is not None and 0 <= index < len(self.classes):
            return self.classes[index]
        return str(index)

    def __repr__(self) -> str:
        n = "no classes" if self.classes is None else f"{len(self.classes)} classes"
        return f"{self.name}({n})"
