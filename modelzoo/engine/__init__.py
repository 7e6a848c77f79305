"""The one inference engine: a sample source, a loader, the model, a writer.

Each piece is a small picklable object so that the same loop can later be
spread over processes or a Ray cluster: a source yields batches of sample
records, a loader turns records into model inputs, :func:`run` calls
``predict_all``/``embed_all``, and a sink stores what came out.
"""

from .report import ApplyReport, Failure
from .run import apply_model, compute_embeddings

__all__ = ["ApplyReport", "Failure", "apply_model", "compute_embeddings"]
