"""Errors of Tungsten-style models, all under :class:`modelzoo.ModelzooError`."""

from __future__ import annotations

from typing import Any, List, Sequence

from ..errors import ConfigError, ModelError, ModelzooError

__all__ = ["TungstenError", "TungstenDefinitionError", "TungstenInputError", "TungstenOutputError", "FileInputError"]


class TungstenError(ModelzooError):
    """Root of the errors of :mod:`modelzoo.tungsten`."""


class TungstenDefinitionError(TungstenError, ConfigError):
    """A ``@define_model`` class, its I/O classes or its settings are invalid
    (raised when the class is decorated or the model is built)."""


class TungstenInputError(TungstenError, ValueError):
    """An input does not satisfy the model's input class (a value outside an
    ``Option``'s choices or bounds, a missing field...). Raised before
    ``predict`` is called.

    Attributes:
        model: the model class's name.
        index: the input's position in the call.
        errors: pydantic's error records (``loc``, ``msg``, ``input``).
    """

    def __init__(self, model: str, index: int, errors: Sequence[Any]):
        self.model = model
        self.index = index
        self.errors: List[Any] = list(errors)
        parts = []
        for err in self.errors[:5]:
            loc = ".".join(str(p) for p in err.get("loc", ())) or "input"
            msg = str(err.get("msg", "")).replace("Value error, ", "")
            if "input" in err and "choices" not in msg and err.get("type") not in ("missing", "unknown_field"):
                msg += f" (got {err['input']!r:.80})"
            parts.append(f"{loc}: {msg}")
        more = f" (and {len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{model}: input {index}: " + "; ".join(parts) + more)


class TungstenOutputError(TungstenError, ModelError):
    """``predict`` (or ``predict_demo``) returned the wrong number of outputs,
    or outputs its output class does not accept."""


class FileInputError(TungstenError, ValueError):
    """A value cannot be read as a ``File`` / ``Image`` (not a file that
    exists, not a data URI, not base64, an undecodable image...)."""
