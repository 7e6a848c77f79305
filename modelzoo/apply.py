"""Public entry points of the engine (see :mod:`modelzoo.engine`)."""

from .engine import ApplyReport, Failure, apply_model, compute_embeddings, compute_patch_embeddings

__all__ = ["ApplyReport", "Failure", "apply_model", "compute_embeddings", "compute_patch_embeddings"]
