from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["EmbeddingsMixin"]


class EmbeddingsMixin:
    """A model that can embed its inputs (``compute_embeddings`` uses it).

    Implement :meth:`embed` or, better, :meth:`embed_all`.
    """

    @property
    def has_embeddings(self) -> bool:
        return True

    def embed(self, arg: Any) -> np.ndarray:
        """The embedding of one input, a 1-D float32 array."""
        return self.embed_all([arg])[0]

    def embed_all(self, args: Sequence[Any]) -> np.ndarray:
        """The embeddings of a batch, a float32 array of shape ``(N, D)``."""
        if type(self).embed is EmbeddingsMixin.embed:
            raise NotImplementedError(f"{type(self).__name__} must implement embed() or embed_all()")
        return np.stack([np.asarray(self.embed(a), dtype=np.float32).reshape(-1) for a in args])
