from __future__ import annotations

__all__ = ["LogitsMixin"]


class LogitsMixin:
    """A model that can keep the raw logits in the labels it produces.

    ``apply_model(..., store_logits=True)`` asks for logits with each batch
    (:class:`modelzoo.Call`); a model that implements
    :meth:`~modelzoo.Model.run_batch` reads it there, and for one that reads
    :attr:`store_logits` (FiftyOne's protocol) the engine sets it for the
    length of each call. Setting it on a model whose :attr:`has_logits` is
    False raises.
    """

    _store_logits: bool = False

    @property
    def has_logits(self) -> bool:
        return True

    @property
    def store_logits(self) -> bool:
        return self._store_logits

    @store_logits.setter
    def store_logits(self, value: bool) -> None:
        if value and not self.has_logits:
            from ..errors import ModelError

            raise ModelError(
                f"{type(self).__name__} does not produce logits, so store_logits cannot be set. "
                "Call apply_model without store_logits=True."
            )
        self._store_logits = bool(value)
