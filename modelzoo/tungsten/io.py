"""Input and output classes: :class:`BaseIO`, :func:`Field` and :func:`Option`.

``BaseIO`` is a pydantic (v2) model that validates on assignment. ``Option``
declares a field with a default; ``choices`` and the bounds are **enforced**
on every input (Tungstenkit only shows ``choices`` in its UI). The options of
an input are what :func:`batch_key` hashes: inputs whose options differ never
share a ``predict`` batch.

Example::

    class Input(BaseIO):
        prompt: str
        width: int = Option(128, choices=[128, 256])
        steps: int = Option(20, ge=1, le=100)

    Input(prompt="a cat", width=64)   # ValidationError: width: 64 is not one of the choices [128, 256]
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pydantic
import pydantic_core
from pydantic import AfterValidator, ConfigDict

from ..errors import did_you_mean
from .errors import TungstenDefinitionError

__all__ = ["BaseIO", "Field", "Option", "option_names", "batch_key", "choices_of"]


class BaseIO(pydantic.BaseModel):
    """Base of input and output classes (a pydantic model).

    Values are validated when the object is built and when a field is assigned.
    A key that is not a field is an error naming the close match
    (``widht`` -> ``width``): Tungstenkit (pydantic 1) drops it silently, so a
    misspelled option would run with its default.
    """

    model_config = ConfigDict(validate_assignment=True, validate_default=True, arbitrary_types_allowed=True)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = unknown_keys(cls, data)
            if unknown:
                raise pydantic_core.PydanticCustomError("unknown_field", "{message}", {"message": unknown})
        return data


def unknown_keys(cls: Any, data: Mapping[str, Any]) -> str:
    """A message for the keys of ``data`` that are not fields of ``cls`` (``""`` when all are)."""
    fields = list(cls.model_fields)
    known = set(fields) | {f.alias for f in cls.model_fields.values() if f.alias}
    bad = [k for k in data if k not in known]
    if not bad:
        return ""
    parts = [f"{k!r} is not a field of {cls.__name__}." + did_you_mean(str(k), fields, n=1) for k in bad]
    return " ".join(parts) + f" Its fields: {', '.join(fields)}."


class _Choices:
    """The validator of a field's ``choices`` (a picklable callable)."""

    def __init__(self, choices: Sequence[Any]):
        self.choices = list(choices)

    def __call__(self, value: Any) -> Any:
        if value is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not one of the choices {self.choices}")
        return value

    def __repr__(self) -> str:
        return f"choices={self.choices}"


def _field(
    default: Any,
    description: Optional[str],
    choices: Optional[Sequence[Any]],
    constraints: Dict[str, Any],
) -> Any:
    extra: Optional[Dict[str, Any]] = None
    if choices is not None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence) or not choices:
            raise TungstenDefinitionError(f"choices must be a non-empty list of values, got {choices!r}")
        extra = {"choices": list(choices), "enum": list(choices)}
    info = pydantic.Field(
        default, description=description, json_schema_extra=extra, **{k: v for k, v in constraints.items() if v is not None}
    )
    if choices is not None:
        info.metadata.append(AfterValidator(_Choices(choices)))
    return info


def Field(
    *,
    description: Optional[str] = None,
    choices: Optional[Sequence[Any]] = None,
    ge: Optional[float] = None,
    le: Optional[float] = None,
    gt: Optional[float] = None,
    lt: Optional[float] = None,
    min_length: Optional[int] = None,
    max_length: Optional[int] = None,
) -> Any:
    """A required field, with an optional description, choices and bounds.

    Args:
        description: shown in the JSON schema (and ``modelzoo serve``'s OpenAPI docs).
        choices: the values allowed (checked on every input).
        ge, le, gt, lt: numeric bounds; min_length, max_length: length bounds.
    """
    return _field(..., description, choices, dict(ge=ge, le=le, gt=gt, lt=lt, min_length=min_length, max_length=max_length))


def Option(
    default: Any,
    *,
    description: Optional[str] = None,
    choices: Optional[Sequence[Any]] = None,
    ge: Optional[float] = None,
    le: Optional[float] = None,
    gt: Optional[float] = None,
    lt: Optional[float] = None,
    min_length: Optional[int] = None,
    max_length: Optional[int] = None,
) -> Any:
    """A field with a default: an option. Inputs with different options never
    share a batch.

    Args:
        default: the value when the input does not give one (checked against
            ``choices`` now: a default outside them is a definition error).
        description, choices, ge, le, gt, lt, min_length, max_length: see :func:`Field`.

    Raises:
        TungstenDefinitionError: ``default`` is not one of ``choices``.
    """
    if choices is not None and default is not None and isinstance(choices, Sequence) and default not in list(choices):
        raise TungstenDefinitionError(f"Option default {default!r} is not one of its choices {list(choices)}")
    return _field(default, description, choices, dict(ge=ge, le=le, gt=gt, lt=lt, min_length=min_length, max_length=max_length))


def option_names(cls: type) -> Tuple[str, ...]:
    """The fields of an input class that have a default (its options), as
    Tungstenkit counts them: every field that is not required."""
    return tuple(name for name, f in cls.model_fields.items() if not f.is_required())  # type: ignore[attr-defined]


def choices_of(cls: type, name: str) -> Optional[List[Any]]:
    """The ``choices`` of field ``name``, or None."""
    extra = cls.model_fields[name].json_schema_extra  # type: ignore[attr-defined]
    return list(extra["choices"]) if isinstance(extra, dict) and "choices" in extra else None


def batch_key(inp: pydantic.BaseModel, names: Optional[Sequence[str]] = None) -> str:
    """The batching key of an input: its options (``names``, default
    :func:`option_names`) as canonical JSON. Equal options, equal keys."""
    names = option_names(type(inp)) if names is None else names
    if not names:
        return ""
    try:  # one C call; keys in the class's field order, the same for every input of the class
        return inp.model_dump_json(include=set(names))
    except pydantic_core.PydanticSerializationError:  # a value pydantic cannot write as JSON
        values = inp.model_dump(include=set(names))
        return json.dumps(values, sort_keys=True, separators=(",", ":"), default=repr)
