from __future__ import annotations

from typing import Any, Callable, List, Sequence

__all__ = ["TorchModelMixin", "list_collate"]


def list_collate(batch: Sequence[Any]) -> List[Any]:
    """Collates a batch as a plain list (for ragged inputs). Picklable."""
    return list(batch)


class TorchModelMixin:
    """A model fed by a torch DataLoader.

    The engine decodes images in DataLoader workers, applies the model's
    (picklable) :attr:`transforms` there, collates with :attr:`collate_fn`,
    and calls ``predict_all`` on the result with :attr:`preprocess` off.
    """

    def build_input_loader(self) -> Callable[[str], Any]:
        """A picklable ``filepath -> input`` callable that DataLoader workers
        run: decodes the image (uint8 HWC RGB) and applies :attr:`transforms`.
        Override to decode differently (e.g. at reduced scale)."""
        from ..image_io import DecodeImage

        return DecodeImage(getattr(self, "transforms", None))

    @property
    def has_collate_fn(self) -> bool:
        return True

    @property
    def collate_fn(self) -> Callable[[Sequence[Any]], Any]:
        """Turns a list of transformed inputs into what ``predict_all`` takes.
        Must be picklable (a module-level function or a picklable object)."""
        if getattr(self, "ragged_batches", True):
            return list_collate
        from torch.utils.data import default_collate

        return default_collate
