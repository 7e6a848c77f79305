"""Strict, typed configuration objects.

A config is a dataclass whose fields are its keys. It is built from a dict,
keyword arguments or both (``Config({"a": 1}, b=2)``); an unknown key is an
error that suggests the close match, a missing required key names itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, TypeVar

from .errors import ConfigError, check_keys

__all__ = ["Config"]

C = TypeVar("C", bound="Config")


class Config:
    """Base of strict configs. Subclasses are ``@dataclasses.dataclass(init=False)``."""

    def __init__(self, d: Optional[Mapping[str, Any]] = None, **kwargs: Any):
        if d is not None and not isinstance(d, Mapping):
            raise ConfigError(f"{type(self).__name__} expects a dict of settings, got {type(d).__name__}")
        values = {**(d or {}), **kwargs}
        fields = {f.name: f for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        check_keys(values, sorted(fields), type(self).__name__, kind="setting")
        for name, f in fields.items():
            if name in values:
                value = values[name]
            elif f.default is not dataclasses.MISSING:
                value = f.default
            elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                value = f.default_factory()  # type: ignore[misc]
            else:
                raise ConfigError(f"{type(self).__name__} requires the setting {name!r}")
            setattr(self, name, value)
        self.validate()

    def validate(self) -> None:
        """Checks values; raise :class:`ConfigError` naming the key. Override."""

    @classmethod
    def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
        return cls(d)

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def copy(self: C, **overrides: Any) -> C:
        """A copy with some settings replaced (unknown keys still rejected)."""
        return type(self)({**self.to_dict(), **overrides})
