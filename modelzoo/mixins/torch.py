from __future__ import annotations

from typing import Any, Callable, Optional

from ..loaders import FileLoader, Loader, list_collate

__all__ = ["TorchModelMixin", "list_collate"]


class TorchModelMixin:
    """A model fed by a torch DataLoader with its own transforms and collation.

    FiftyOne's input hooks, kept under their names so that models written for
    FiftyOne run unchanged: :attr:`transforms`, :attr:`ragged_batches`,
    :attr:`collate_fn` (:attr:`has_collate_fn`), :meth:`build_input_loader`
    and ``preprocess`` (:attr:`modelzoo.Model.preprocess`). They are one way
    of writing :meth:`build_loader`, the one hook the engine calls: the
    default here decodes each file and applies :attr:`transforms` in the
    loader workers (:meth:`build_input_loader`), and collates with
    :attr:`collate_fn`. The engine then calls the model with ``preprocess``
    off for that batch (see :meth:`modelzoo.Model.run_batch`). A model that
    overrides :meth:`build_loader` needs none of the other hooks.
    """

    @property
    def transforms(self) -> Optional[Callable[[Any], Any]]:
        """The preprocessing applied to each input (picklable, so DataLoader
        workers can run it), or None."""
        return None

    @property
    def ragged_batches(self) -> bool:
        """True when inputs of one batch may have different shapes (collated
        as a list); False: they are stacked (torch's ``default_collate``)."""
        return True

    def build_input_loader(self) -> Callable[[str], Any]:
        """A picklable ``filepath -> input`` callable that DataLoader workers
        run: decodes the image (uint8 HWC RGB) and applies :attr:`transforms`.
        Override to decode differently (e.g. at reduced scale)."""
        from ..image_io import DecodeImage

        return DecodeImage(self.transforms)

    def build_loader(self) -> Loader:
        """:meth:`build_input_loader` for each file, collated with :attr:`collate_fn`."""
        return FileLoader(self.build_input_loader(), self.collate_fn)

    @property
    def warmup_batches(self) -> int:
        """Batches at a new input shape before the forward's time per batch is
        steady: 0 for an eager module; a compiled graph (TorchScript's
        profiling executor) is slow on its first 2 calls at each shape. The
        engine's calibration leaves these batches out of its measurements."""
        return 0

    @property
    def has_collate_fn(self) -> bool:
        """Whether this model collates its batches itself (it overrides :attr:`collate_fn`)."""
        return type(self).collate_fn is not TorchModelMixin.collate_fn

    @property
    def collate_fn(self) -> Callable[[Any], Any]:
        """Turns a list of transformed inputs into what ``predict_all`` takes.
        Must be picklable (a module-level function or a picklable object)."""
        if self.ragged_batches:
            return list_collate
        from torch.utils.data import default_collate

        return default_collate
