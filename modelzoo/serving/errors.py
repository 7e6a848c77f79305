"""Errors of the batcher and the server; all derive from :class:`modelzoo.ModelzooError`."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence

from ..errors import ModelError, ModelzooError, RequestError

__all__ = [
    "ServingError", "BatcherClosedError", "InputError", "TooLargeError", "RequestValidationError", "OutputCountError",
]


class ServingError(ModelzooError):
    """A batcher or server operation failed."""


class BatcherClosedError(ServingError, RuntimeError):
    """The batcher was closed: before the request was submitted, or while it
    was still waiting (``close(cancel_pending=True)``)."""


class InputError(ServingError, RequestError):
    """One input cannot be given to the model (an image that does not decode,
    a missing file, a value of the wrong kind). Costs that input only; the
    server answers it with HTTP 422.

    Attributes:
        field: what was wrong, e.g. ``"image"``, ``"path"`` or ``"body"``.
        reason: what is wrong with it, and what was expected.
    """

    def __init__(self, field: str, reason: str, message: Optional[str] = None):
        self.field = field
        self.reason = reason
        super().__init__(message or f"{field}: {reason}")

    def errors(self) -> List[Dict[str, Any]]:
        """The error as pydantic/FastAPI-style records (``loc``, ``msg``, ``type``)."""
        return [{"loc": [self.field], "msg": self.reason, "type": "value_error"}]


class TooLargeError(InputError):
    """An input over one of the server's limits (a file's bytes, an image's
    pixels); the server answers it with HTTP 413.

    Attributes:
        size: what the input has (bytes or pixels).
        limit: the most the server takes.
    """

    def __init__(self, field: str, reason: str, size: int, limit: int):
        self.size = size
        self.limit = limit
        super().__init__(field, reason)


class RequestValidationError(InputError):
    """A request did not validate against the model's ``request_schema``.

    Attributes:
        schema: the schema's class name.
        details: pydantic's errors, each with ``loc`` (the field path), ``msg`` and ``type``.
    """

    def __init__(self, schema: str, details: Sequence[Mapping[str, Any]]):
        self.schema = schema
        self.details = [
            {"loc": list(d.get("loc", ())), "msg": str(d.get("msg", "")), "type": str(d.get("type", ""))}
            for d in details
        ]
        fields = [".".join(str(p) for p in d["loc"]) or "(root)" for d in self.details]
        reason = "; ".join(f"field {f!r}: {d['msg']}" for f, d in zip(fields, self.details))
        message = f"The request does not match {schema}: {reason}"
        super().__init__(fields[0] if fields else "body", reason, message)

    def errors(self) -> List[Dict[str, Any]]:
        return list(self.details)


class OutputCountError(ModelError, ValueError):
    """A model's ``predict_all`` returned a number of outputs other than the
    number of inputs, so no output can be matched to its caller.

    Attributes:
        model: the model's name.
        inputs: how many inputs it was given.
        outputs: how many outputs it returned (None: not a sequence).
    """

    def __init__(self, model: str, inputs: int, outputs: Optional[int], got: str = ""):
        self.model = model
        self.inputs = inputs
        self.outputs = outputs
        returned = f"{outputs} outputs" if outputs is not None else f"a {got} (not a list)"
        super().__init__(
            f"Model {model!r}: predict_all was given {inputs} inputs and returned {returned}; "
            "it must return one output per input, in order"
        )
