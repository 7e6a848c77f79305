"""Capabilities a model declares by inheriting them."""

from .embeddings import EmbeddingsMixin
from .logits import LogitsMixin
from .prompts import PromptMixin
from .samples import SamplesMixin
from .torch import TorchModelMixin

__all__ = ["EmbeddingsMixin", "LogitsMixin", "PromptMixin", "SamplesMixin", "TorchModelMixin"]
