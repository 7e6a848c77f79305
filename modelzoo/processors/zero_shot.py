"""Zero-shot classification: image embeddings compared with prompt
embeddings (CLIP-style) -> a Classification over the prompts' classes."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, ModelError
from ..labels import Classification
from .base import ImageSize, OutputProcessor, check_tensor

__all__ = ["ZeroShotClassifierOutputProcessor"]


class ZeroShotClassifierOutputProcessor(OutputProcessor):
    """Image embeddings to a :class:`~modelzoo.labels.Classification` over
    the classes whose prompts were embedded.

    Tensor contract: ``output`` is ``FloatTensor[N, D]``, the image
    embeddings. The prompt embeddings ``(C, D)``, one per class, are set once
    with :meth:`set_prompt_embeddings` (a :class:`~modelzoo.TorchImageModel`
    with ``text_prompt`` embeds its classes' prompts when it is built). Both
    sides are L2-normalized; the logits are ``logit_scale * cos`` and the
    label is the softmax's most probable class.

    Args:
        classes: the class names, one per prompt.
        logit_scale: the temperature (CLIP's learned ``exp(logit_scale)``; 100 by default).
        store_logits: keep the logits on the labels.
    """

    has_logits = True

    def __init__(self, classes: Optional[Sequence[str]] = None, logit_scale: float = 100.0, store_logits: bool = False):
        super().__init__(classes)
        if not classes:
            raise ConfigError("ZeroShotClassifierOutputProcessor needs classes (the names its prompts are made of)")
        self.logit_scale = float(logit_scale)
        self.store_logits = bool(store_logits)
        self._prompts: Optional[torch.Tensor] = None

    def set_prompt_embeddings(self, embeddings: Any) -> None:
        """The ``(C, D)`` embeddings of the classes' prompts, in class order."""
        emb = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if emb.dim() != 2 or emb.shape[0] != len(self.classes or []):
            raise ModelError(
                f"{self.name}: expected one prompt embedding per class, shape ({len(self.classes or [])}, D); "
                f"got {tuple(emb.shape)}"
            )
        self._prompts = torch.nn.functional.normalize(emb, dim=1)

    def check(self, output: Any, batch_size: int, input_sizes: Sequence[ImageSize]) -> None:
        if self._prompts is None:
            raise ModelError(f"{self.name}: no prompt embeddings; call set_prompt_embeddings first")
        check_tensor(self.name, "image embeddings", output, (batch_size, self._prompts.shape[1]), floating=True)

    def parse(self, output: Any, image_sizes: Sequence[ImageSize], input_sizes: Sequence[ImageSize]) -> List[Any]:
        assert self._prompts is not None
        images = torch.nn.functional.normalize(output.float(), dim=1)
        logits = self.logit_scale * images @ self._prompts.T
        probs = logits.softmax(dim=1)
        conf, idx = probs.max(dim=1)
        classes = list(self.classes or [])
        labels = []
        for i in range(len(idx)):
            label = Classification(label=classes[int(idx[i])], confidence=float(conf[i]))
            if self.store_logits:
                label.logits = logits[i].numpy()
            labels.append(label)
        return labels
