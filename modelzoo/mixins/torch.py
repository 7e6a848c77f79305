from __future__ import annotations

from typing import Any, Callable

from ..loaders import FileLoader, Loader, list_collate

__all__ = ["TorchModelMixin", "list_collate"]


class TorchModelMixin:
    """A model fed by a torch DataLoader with its own transforms and collation.

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

    def build_loader(self) -> Loader:
        """:meth:`build_input_loader` for each file, collated with :attr:`collate_fn`."""
        return FileLoader(self.build_input_loader(), self.collate_fn)

    @property
    def collate_fn(self) -> Callable[[Any], Any]:
        """Turns a list of transformed inputs into what ``predict_all`` takes.
        Must be picklable (a module-level function or a picklable object)."""
        if getattr(self, "ragged_batches", True):
            return list_collate
        from torch.utils.data import default_collate

        return default_collate
