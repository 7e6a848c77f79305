"""Capabilities a model declares by inheriting them."""

from .embeddings import EmbeddingsMixin
from .logits import LogitsMixin
from .prompts import ClassPrompts, PromptMixin
from .samples import SamplesMixin
from .torch import TorchModelMixin

__all__ = ["ClassPrompts", "EmbeddingsMixin", "LogitsMixin", "PromptMixin", "SamplesMixin", "TorchModelMixin"]
