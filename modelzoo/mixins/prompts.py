from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["PromptMixin"]


class PromptMixin:
    """A model that can embed prompts (text, for zero-shot models), with
    FiftyOne's names: :attr:`can_embed_prompts`, :meth:`embed_prompt`,
    :meth:`embed_prompts`.

    Implement :meth:`embed_prompts` (a batch) or :meth:`embed_prompt`.
    """

    @property
    def can_embed_prompts(self) -> bool:
        """Whether this model can embed prompts (some instances of a class may not)."""
        return True

    def embed_prompt(self, arg: Any) -> np.ndarray:
        """The embedding of one prompt, a 1-D float32 array."""
        if type(self).embed_prompts is PromptMixin.embed_prompts:
            raise NotImplementedError(f"{type(self).__name__} must implement embed_prompt() or embed_prompts()")
        return np.asarray(self.embed_prompts([arg])[0], dtype=np.float32)

    def embed_prompts(self, args: Sequence[Any]) -> np.ndarray:
        """The embeddings of prompts, a float32 array of shape ``(N, D)``."""
        if type(self).embed_prompt is PromptMixin.embed_prompt:
            raise NotImplementedError(f"{type(self).__name__} must implement embed_prompt() or embed_prompts()")
        return np.stack([np.asarray(self.embed_prompt(a), dtype=np.float32).reshape(-1) for a in args])
