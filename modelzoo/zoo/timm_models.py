"""The models of the timm zoo source: timm's builders, fed as their data config says.

:func:`build_timm` builds ``timm.create_model("<architecture>.<tag>")`` with
its weights (through the Hugging Face hub cache: ``HF_HOME`` and
``HF_HUB_OFFLINE`` are honoured, as timm honours them) or, for
``pretrained=False``, with the registry's architecture and random weights
(nothing is downloaded). :func:`timm_classes` reads the class names of a tag
from timm's own ImageNet info. The model itself is a
:class:`~modelzoo.zoo.torchvision_models.TorchvisionImageModel`: timm's
resize (``input_size / crop_pct``), centre crop, interpolation, mean and std
are the same operations as torchvision's.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch

from ..errors import ConfigError

__all__ = ["build_timm", "timm_classes"]


def build_timm(name: str, pretrained: bool = False, num_classes: Optional[int] = None) -> torch.nn.Module:
    """``timm.create_model(name, pretrained=pretrained)``.

    Args:
        name: ``"<architecture>.<tag>"`` of ``timm.list_pretrained()``.
        pretrained: download (or read from the hub cache) the tag's weights.
        num_classes: replace the classifier (None: the tag's own).

    Raises:
        ConfigError: timm does not know the name (regenerate the zoo's index).
    """
    import timm

    kwargs: Dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as e:
        if "Unknown model" in str(e) or "Invalid pretrained tag" in str(e):
            raise ConfigError(
                f"timm {timm.__version__} has no model {name!r}; the zoo's index was made for another timm "
                "(python -m modelzoo.zoo.generate_timm)"
            ) from None
        raise


def timm_classes(subset: Optional[str], num_classes: int) -> List[str]:
    """The class names of an ImageNet ``subset`` (timm's ``ImageNetInfo``:
    the first synonym of each class's description), or their indices."""
    if subset:
        from timm.data import ImageNetInfo

        info = ImageNetInfo(subset)
        if info.num_classes() == num_classes:
            return [info.index_to_description(i).split(",")[0].strip() for i in range(num_classes)]
    return [str(i) for i in range(num_classes)]
