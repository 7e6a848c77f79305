from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

__all__ = ["SamplesMixin"]


class SamplesMixin:
    """A model that reads other fields of its sample (e.g. a text prompt).

    :attr:`needs_fields` maps an input name to the sample field it comes from.
    The engine reads those fields in the same projected query as the
    filepaths and calls ``predict_all(args, samples=[{name: value}, ...])``.
    """

    _needs_fields: Dict[str, str] = {}

    @property
    def needs_fields(self) -> Dict[str, str]:
        return dict(self._needs_fields)

    @needs_fields.setter
    def needs_fields(self, fields: Dict[str, str]) -> None:
        self._needs_fields = dict(fields)

    def predict(self, arg: Any, sample: Optional[Dict[str, Any]] = None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_all(self, args: Sequence[Any], samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> List[Any]:
        given: Sequence[Optional[Dict[str, Any]]] = samples if samples is not None else [None] * len(args)
        return [self.predict(a, s) for a, s in zip(args, given)]
