"""The runner of :func:`~modelzoo.vessl.register_torch_model`: ``model(data)`` without gradients."""

from __future__ import annotations

from typing import Any

from .runner import RunnerBase

__all__ = ["TorchRunner"]


class TorchRunner(RunnerBase):
    """``predict`` is ``model(data)`` under ``torch.no_grad()`` (VESSL's
    ``PyTorchRunner``); the pre/postprocess hooks are the ones registered."""

    @staticmethod
    def predict(model: Any, data: Any) -> Any:
        import torch

        with torch.no_grad():
            return model(data)
