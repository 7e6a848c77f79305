from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["EmbeddingsMixin"]


class EmbeddingsMixin:
    """A model that can embed its inputs (``compute_embeddings`` uses it).

    Implement one of:

    * :meth:`embed_all` (best: a batch at once) or :meth:`embed`;
    * FiftyOne's style: :meth:`get_embeddings`, returning the embedding of
      the last :meth:`predict` call (``predict`` then ``get_embeddings()``
      is the default :meth:`embed`, as in FiftyOne).
    """

    @property
    def has_embeddings(self) -> bool:
        return True

    def get_embeddings(self) -> np.ndarray:
        """The embedding(s) computed by the last :meth:`predict` call: an
        array whose first axis is the batch (``(1, D)``) or a single ``(D,)``
        vector. Implement it for FiftyOne-style models."""
        raise NotImplementedError(f"{type(self).__name__} does not implement get_embeddings()")

    def embed(self, arg: Any) -> np.ndarray:
        """The embedding of one input, a 1-D float32 array."""
        cls = type(self)
        if cls.embed_all is not EmbeddingsMixin.embed_all:
            return np.asarray(self.embed_all([arg])[0], dtype=np.float32)
        if cls.get_embeddings is not EmbeddingsMixin.get_embeddings:
            self.predict(arg)  # type: ignore[attr-defined]
            out = np.asarray(self.get_embeddings(), dtype=np.float32)
            if out.ndim >= 2 and out.shape[0] == 1:  # FiftyOne's convention: a batch of one
                out = out[0]
            return out.reshape(-1)
        raise NotImplementedError(
            f"{cls.__name__} must implement embed(), embed_all(), or get_embeddings() "
            "(the embedding of the last predict() call, FiftyOne's style)"
        )

    def embed_all(self, args: Sequence[Any]) -> np.ndarray:
        """The embeddings of a batch, a float32 array of shape ``(N, D)``."""
        cls = type(self)
        if cls.embed is EmbeddingsMixin.embed and cls.get_embeddings is EmbeddingsMixin.get_embeddings:
            raise NotImplementedError(
                f"{cls.__name__} must implement embed(), embed_all(), or get_embeddings() "
                "(the embedding of the last predict() call, FiftyOne's style)"
            )
        return np.stack([np.asarray(self.embed(a), dtype=np.float32).reshape(-1) for a in args])

    @property
    def embedding_dim(self) -> int:
        """The width ``D`` of this model's embeddings, when it can tell without
        running (used to give failed samples NaN rows of the right width);
        -1 when unknown. Override it (or set ``config.embedding_dim``)."""
        dim = getattr(getattr(self, "config", None), "embedding_dim", None)
        return int(dim) if dim else -1
