"""``ViewField``: small MongoDB aggregation expressions written in Python, as
FiftyOne writes them (``F("confidence") > 0.8``), for :meth:`filter_labels
<modelzoo.dataset.SampleCollection.filter_labels>` and :meth:`sort_by
<modelzoo.dataset.SampleCollection.sort_by>`.

Example::

    from modelzoo import ViewField as F

    view = dataset.filter_labels("predictions", (F("confidence") > 0.8) & F("label").is_in(["cat", "dog"]))
    view = dataset.sort_by(F("predictions.detections").length(), reverse=True)

A field is resolved against the label being filtered (``$$this``) in
``filter_labels`` and against the sample document in ``sort_by``. A plain
dict is taken as a MongoDB aggregation expression as it is.
"""

from __future__ import annotations

from typing import Any, List, Sequence

__all__ = ["ViewExpression", "ViewField", "to_mongo_expr"]


def _stored_name(name: str) -> str:
    """A user path in stored names: ``id`` parts are stored as ``_id``."""
    return ".".join("_id" if p == "id" else p for p in name.split("."))


def to_mongo_expr(value: Any, prefix: str = "$") -> Any:
    """``value`` as a MongoDB aggregation expression: expressions are
    resolved with fields under ``prefix`` (``"$"`` for the document,
    ``"$$this"`` for a list element); plain values are literals."""
    if isinstance(value, ViewExpression):
        return value.to_mongo(prefix)
    if isinstance(value, (list, tuple)):
        return [to_mongo_expr(v, prefix) for v in value]
    if isinstance(value, dict):
        return {k: to_mongo_expr(v, prefix) for k, v in value.items()}
    return value


class ViewExpression:
    """An aggregation expression built with Python operators."""

    def __init__(self, op: str, args: Sequence[Any]):
        self._op = op
        self._args: List[Any] = list(args)

    def to_mongo(self, prefix: str = "$") -> Any:
        """The MongoDB expression, with fields resolved under ``prefix``."""
        args = [to_mongo_expr(a, prefix) for a in self._args]
        if self._op in ("$in",):
            return {"$in": [args[0], {"$literal": args[1]}]}
        return {self._op: args}

    def _bin(self, op: str, other: Any) -> "ViewExpression":
        return ViewExpression(op, [self, other])

    # comparisons
    def __eq__(self, other: Any) -> "ViewExpression":  # type: ignore[override]
        return self._bin("$eq", other)

    def __ne__(self, other: Any) -> "ViewExpression":  # type: ignore[override]
        return self._bin("$ne", other)

    def __gt__(self, other: Any) -> "ViewExpression":
        return self._bin("$gt", other)

    def __ge__(self, other: Any) -> "ViewExpression":
        return self._bin("$gte", other)

    def __lt__(self, other: Any) -> "ViewExpression":
        return self._bin("$lt", other)

    def __le__(self, other: Any) -> "ViewExpression":
        return self._bin("$lte", other)

    __hash__ = None  # type: ignore[assignment]

    # logic
    def __and__(self, other: Any) -> "ViewExpression":
        return self._bin("$and", other)

    def __or__(self, other: Any) -> "ViewExpression":
        return self._bin("$or", other)

    def __invert__(self) -> "ViewExpression":
        return ViewExpression("$not", [self])

    # arithmetic
    def __add__(self, other: Any) -> "ViewExpression":
        return self._bin("$add", other)

    def __sub__(self, other: Any) -> "ViewExpression":
        return self._bin("$subtract", other)

    def __mul__(self, other: Any) -> "ViewExpression":
        return self._bin("$multiply", other)

    def __truediv__(self, other: Any) -> "ViewExpression":
        return self._bin("$divide", other)

    def __abs__(self) -> "ViewExpression":
        return ViewExpression("$abs", [self])

    # helpers FiftyOne users call
    def is_in(self, values: Sequence[Any]) -> "ViewExpression":
        """True where the value is one of ``values``."""
        return ViewExpression("$in", [self, list(values)])

    def length(self) -> "ViewExpression":
        """The length of a list (0 where missing)."""
        return _Raw(lambda p: {"$size": {"$ifNull": [to_mongo_expr(self, p), []]}})

    def exists(self, value: bool = True) -> "ViewExpression":
        """True where the value is present and not null (or, ``value=False``, absent)."""
        op = "$gt" if value else "$lte"
        return _Raw(lambda p: {op: [to_mongo_expr(self, p), None]})

    def __repr__(self) -> str:
        return f"<ViewExpression {self.to_mongo()!r}>"


class _Raw(ViewExpression):
    def __init__(self, build: Any):
        super().__init__("", [])
        self._build = build

    def to_mongo(self, prefix: str = "$") -> Any:
        return self._build(prefix)


class ViewField(ViewExpression):
    """A field of the document (``sort_by``) or of the label being filtered
    (``filter_labels``); ``ViewField()`` is the label itself."""

    def __init__(self, name: str = ""):
        super().__init__("", [])
        self._name = name

    def to_mongo(self, prefix: str = "$") -> Any:
        base = "$$this" if prefix == "$$this" else ("$$ROOT" if not self._name else "")
        if prefix == "$$this":
            return base + ("." + _stored_name(self._name) if self._name else "")
        return base or "$" + _stored_name(self._name)
