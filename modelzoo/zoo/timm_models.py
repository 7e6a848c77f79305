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

__all__ = ["build_timm", "timm_classes", "TimmNet"]


class _PreLogits(torch.nn.Module):
    """``forward_head(features, pre_logits=True)`` of the model it serves, as
    a module of its own, so the zoo's embeddings tap reads its output."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self._model = [model]  # not a submodule: its parameters belong to TimmNet.model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        try:
            return self._model[0].forward_head(features, pre_logits=True)  # type: ignore[operator]
        except NotImplementedError:  # an encoder without a pooling head (a VLM's vision tower): mean of its tokens
            return features.reshape(features.shape[0], -1, features.shape[-1]).mean(dim=1)


class TimmNet(torch.nn.Module):
    """A timm model whose forward returns its logits (a tag with a
    classifier) or its pooled features (one without), computing the pooled
    features in :attr:`pre_logits` (the zoo's ``embeddings_layer``) either
    way: ``forward_head(pre_logits=True)``, whatever the head (several
    heads, distillation tokens, attention pooling)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.pre_logits = _PreLogits(model)
        self.has_classifier = int(getattr(model, "num_classes", 0) or 0) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.model.forward_features(x)  # type: ignore[operator]
        pooled = self.pre_logits(features)
        if not self.has_classifier:
            return pooled
        return self.model.forward_head(features)  # type: ignore[operator]


def build_timm(name: str, pretrained: bool = False, num_classes: Optional[int] = None) -> torch.nn.Module:
    """``timm.create_model(name, pretrained=pretrained)``, as a :class:`TimmNet`.

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
        return TimmNet(timm.create_model(name, pretrained=pretrained, **kwargs))
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
