"""Request and response schemas: pydantic v2 models (``RootModel`` included)
and pydantic v1-style models (``pydantic.v1``, with ``__root__``), validated
on every call.

Launch's server only turns the schemas into OpenAPI documentation; here a
request or a response that does not validate raises
:class:`~modelzoo.bundles.errors.SchemaError` naming the bundle, the field and
the value.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import did_you_mean
from .errors import BundleConfigError, RequestSchemaError, SchemaError

__all__ = ["Schema", "schema_json"]


def _v1_base() -> Optional[type]:
    try:
        from pydantic import v1
    except ImportError:  # pragma: no cover - pydantic 1 itself
        try:
            import pydantic as v1  # type: ignore[no-redef]
        except ImportError:
            return None
    return v1.BaseModel


def _v2_base() -> Optional[type]:
    try:
        import pydantic
    except ImportError:  # pragma: no cover
        return None
    base = getattr(pydantic, "BaseModel", None)
    return base if base is not None and hasattr(base, "model_validate") else None


class Schema:
    """One pydantic model class used as a bundle's request or response schema.

    Args:
        cls: a pydantic v2 ``BaseModel`` / ``RootModel`` subclass, or a
            ``pydantic.v1.BaseModel`` subclass (``__root__`` allowed).

    Raises:
        BundleConfigError: ``cls`` is not a pydantic model class.
    """

    def __init__(self, cls: type):
        v2, v1 = _v2_base(), _v1_base()
        if isinstance(cls, type) and v2 is not None and issubclass(cls, v2):
            self.version = 2
            self.is_root = "root" in getattr(cls, "model_fields", {}) and getattr(cls, "__pydantic_root_model__", False)
        elif isinstance(cls, type) and v1 is not None and issubclass(cls, v1):
            self.version = 1
            self.is_root = "__root__" in getattr(cls, "__fields__", {})
        else:
            raise BundleConfigError(
                f"A request/response schema must be a pydantic model class (pydantic.BaseModel, "
                f"pydantic.RootModel or pydantic.v1.BaseModel), got {cls!r}"
            )
        self.cls = cls
        self.name = cls.__name__

    def json_schema(self) -> Dict[str, Any]:
        """The JSON Schema of the model (what Launch uploads for its OpenAPI docs)."""
        if self.version == 2:
            return self.cls.model_json_schema()  # type: ignore[attr-defined]
        return json.loads(self.cls.schema_json())  # type: ignore[attr-defined]

    def _parse(self, value: Any) -> Any:
        if self.version == 2:
            if self.is_root:
                return self.cls.model_validate(value)  # type: ignore[attr-defined]
            return self.cls.model_validate(value)  # type: ignore[attr-defined]
        if self.is_root:
            return self.cls.parse_obj(value)  # type: ignore[attr-defined]
        return self.cls.parse_obj(value)  # type: ignore[attr-defined]

    def _dump(self, obj: Any, mode: str) -> Any:
        if self.version == 2:
            return obj.model_dump(mode=mode)
        if mode == "json":
            return json.loads(obj.json())  # v1 writes a root model as its root value
        data = obj.dict()
        return data["__root__"] if self.is_root else data

    def validate(self, value: Any, bundle: str, direction: str, mode: str = "python") -> Any:
        """Validates ``value`` and returns the validated data (a dict for a
        model with fields, the root value for a root model).

        Args:
            value: the request (a dict of arguments, or the single argument)
                or the response.
            bundle: the bundle's name, for the message.
            direction: ``"request"`` or ``"response"``.
            mode: ``"python"`` keeps Python objects; ``"json"`` returns
                JSON-able data.

        Raises:
            SchemaError: naming the first failing field and its value; for a
                request, a key that is no field of the schema (pydantic would
                drop it, so a misspelled argument would go unnoticed), with
                the close match.
        """
        if direction == "request" and isinstance(value, dict):
            self._check_keys(value, bundle)
        try:
            return self._dump(self._parse(value), mode)
        except Exception as e:
            field, found, reason, count = self._first_error(e, value)
            if field is None:
                raise
            cls = RequestSchemaError if direction == "request" else SchemaError
            raise cls(bundle, direction, field, found, reason, self.name, count) from None

    def field_names(self) -> Optional[List[str]]:
        """The keys a request may hold: the model's fields (for a root model,
        those of every model in its union), or None when any key may appear."""
        return _field_names(self.cls, self.version)

    def _check_keys(self, value: Dict[str, Any], bundle: str) -> None:
        names = self.field_names()
        if names is None:
            return
        for key in value:
            if key not in names:
                raise RequestSchemaError(
                    bundle, "request", str(key), value[key],
                    f"not a field of {self.name}." + did_you_mean(str(key), names, n=1)
                    + f" Its fields: {', '.join(names)}.", self.name,
                )

    def _first_error(self, e: Exception, value: Any) -> Tuple[Optional[str], Any, str, int]:
        errors = getattr(e, "errors", None)
        if not callable(errors):
            return None, None, "", 0
        try:
            items = errors()
        except Exception:  # pragma: no cover - not a ValidationError
            return None, None, "", 0
        if not items:
            return "", value, str(e), 1
        # In a union every branch reports; a branch rejected by its tag (a
        # Literal) says less than the one whose tag matched, and the deepest
        # location is the most specific: report that error.
        untagged = [i for i in items if not any(t in str(i.get("type", "")) for t in ("literal", "const"))]
        first = max(untagged or items, key=lambda i: len(i.get("loc", ())))
        loc = [p for p in first.get("loc", ()) if p != "__root__"]
        found = first["input"] if "input" in first else _follow(value, loc)
        # A union of models reports its branch name first (v2): keep the field path only.
        if self.version == 2 and loc and isinstance(loc[0], str) and not _has_key(value, loc[0]):
            loc = loc[1:]
        return ".".join(str(p) for p in loc), found, first.get("msg", str(e)), len(items)


def _field_names(cls: Any, version: int) -> Optional[List[str]]:
    """Field names (aliases included) of a model, or of every model of a root
    union; None when the value is not a model with fixed fields."""
    if version == 2:
        fields = getattr(cls, "model_fields", {})
        if getattr(cls, "__pydantic_root_model__", False):
            return _branch_names(fields["root"].annotation, version) if "root" in fields else None
        if (getattr(cls, "model_config", {}) or {}).get("extra") == "allow":
            return None
        return _names(fields, version)
    fields = getattr(cls, "__fields__", {})
    if "__root__" in fields:
        return _branch_names(fields["__root__"].outer_type_, version)
    config = getattr(cls, "__config__", None)
    if config is not None and str(getattr(config, "extra", "")).endswith("allow"):
        return None
    return _names(fields, version)


def _names(fields: Mapping[str, Any], version: int) -> List[str]:
    out = list(fields)
    for f in fields.values():
        alias = getattr(f, "alias", None)
        if alias and alias not in out:
            out.append(alias)
    return out


def _branch_names(annotation: Any, version: int) -> Optional[List[str]]:
    import typing

    branches = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    out: List[str] = []
    for b in branches:
        names = _field_names(b, version) if isinstance(b, type) and _is_model(b, version) else None
        if names is None:
            return None
        out += [n for n in names if n not in out]
    return out


def _is_model(cls: type, version: int) -> bool:
    base = _v2_base() if version == 2 else _v1_base()
    return base is not None and issubclass(cls, base)


def _has_key(value: Any, key: str) -> bool:
    return isinstance(value, dict) and key in value


def _follow(value: Any, loc: Any) -> Any:
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def schema_json(schema: Optional[Schema]) -> Optional[Dict[str, Any]]:
    """The JSON Schema of ``schema``, or None."""
    return None if schema is None else schema.json_schema()
