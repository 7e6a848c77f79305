"""What the page shows, as the URL holds it: filters, an evaluation, a sort.

The page keeps its state as JSON in the URL (so a link shows the same
view) and sends it with each request; :func:`parse_state` checks it against
the dataset's fields, and :meth:`ViewState.view` turns it into a
:class:`~modelzoo.dataset.DatasetView` made with the public API
(``match_eval``, ``exists``, ``filter_labels``), so ``view.count()`` is the
count the page shows and the labels it draws are the view's.

State (every key optional)::

    {"filters": {"predictions": {"classes": ["cat"], "confidence": [0.5, 1.0]},
                 "ground_truth": {"exists": false}},
     "eval": {"key": "eval", "kind": "fp"},
     "sort": {"field": "uniqueness", "reverse": true}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..errors import DatasetError, did_you_mean

__all__ = ["FieldFilter", "ViewState", "parse_state", "AppStateError"]


class AppStateError(DatasetError):
    """A state (from the page's URL) names a field, class or key the dataset lacks, or is malformed."""


@dataclass
class FieldFilter:
    """The filter on one label field.

    Attributes:
        classes: keep objects of these classes (None: all).
        confidence: keep objects whose confidence is in ``[lo, hi]`` (objects
            without a confidence are dropped while a range is set).
        exists: True: samples with the field; False: samples without it.
    """

    classes: Optional[List[str]] = None
    confidence: Optional[Tuple[float, float]] = None
    exists: Optional[bool] = None

    def conditions(self) -> List[Dict[str, Any]]:
        """The MongoDB aggregation conditions on one label (``$$this``) this filter sets."""
        out: List[Dict[str, Any]] = []
        if self.classes is not None:
            out.append({"$in": ["$$this.label", list(self.classes)]})
        if self.confidence is not None:  # a missing confidence compares below every number: dropped
            out += [{"$gte": ["$$this.confidence", self.confidence[0]]}, {"$lte": ["$$this.confidence", self.confidence[1]]}]
        return out


@dataclass
class ViewState:
    """A parsed state; see the module docstring."""

    filters: Dict[str, FieldFilter] = field(default_factory=dict)
    eval_key: Optional[str] = None
    eval_kind: Optional[str] = None
    eval_fields: Tuple[str, ...] = ()
    sort_field: Optional[str] = None
    reverse: bool = False

    def view(self, samples: Any, without: Optional[str] = None) -> Any:
        """``samples`` with every filter applied, through the public view API:
        ``match_eval``, ``exists``, and ``filter_labels`` (labels filtered in
        MongoDB; samples left without a label of a filtered field dropped).
        ``without``: that field's class filter is left out (for its own class counts)."""
        view = samples
        if self.eval_key and self.eval_kind:
            view = view.match_eval(self.eval_key, self.eval_kind)
        fields = list(self.filters) + [f for f in self.eval_fields if f not in self.filters]
        for name in fields:
            flt = self.filters.get(name) or FieldFilter()
            if flt.exists is not None:
                view = view.exists(name, flt.exists)
            mine = flt.conditions() if name != without else FieldFilter(None, flt.confidence).conditions()
            conditions = list(mine)
            if self.eval_kind in ("tp", "fp", "fn") and name in self.eval_fields:
                conditions.append({"$eq": [f"$$this.attributes.{self.eval_key}", self.eval_kind]})
            if conditions:
                expr = conditions[0] if len(conditions) == 1 else {"$and": conditions}
                view = view.filter_labels(name, expr, only_matches=bool(mine))
        return view


def parse_state(
    text: Optional[str], types: Mapping[str, str], evaluations: Mapping[str, Mapping[str, Any]]
) -> ViewState:
    """Parses and checks the page's state (JSON).

    Args:
        text: the JSON, or None/empty for no filter.
        types: ``{field: type}`` of the dataset's fields.
        evaluations: ``{eval_key: {"kind", "pred_field", "gt_field"}}``.

    Raises:
        AppStateError: malformed, or naming what the dataset lacks.
    """
    if not text:
        return ViewState()
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise AppStateError(f"The viewer's state is not JSON ({e}): {text[:200]!r}") from None
    if not isinstance(raw, dict):
        raise AppStateError(f"The viewer's state must be a JSON object, got {text[:200]!r}")
    state = ViewState()
    for name, spec in (raw.get("filters") or {}).items():
        if name not in types:
            raise AppStateError(f"Filter on unknown field {name!r}." + did_you_mean(name, list(types)))
        if not isinstance(spec, dict):
            raise AppStateError(f"Filter of {name!r} must be an object, got {spec!r}")
        flt = FieldFilter()
        if spec.get("classes") is not None:
            flt.classes = [str(c) for c in spec["classes"]]
        if spec.get("confidence") is not None:
            try:
                lo, hi = (float(v) for v in spec["confidence"])
            except (TypeError, ValueError):
                raise AppStateError(f"Confidence range of {name!r} must be [lo, hi], got {spec['confidence']!r}") from None
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise AppStateError(f"Confidence range of {name!r} must be finite with lo <= hi, got {[lo, hi]}")
            flt.confidence = (lo, hi)
        if spec.get("exists") is not None:
            flt.exists = bool(spec["exists"])
        state.filters[name] = flt
    ev = raw.get("eval") or {}
    if ev.get("key"):
        key = str(ev["key"])
        if key not in evaluations:
            raise AppStateError(f"Unknown evaluation {key!r}." + did_you_mean(key, list(evaluations)))
        state.eval_key = key
        record = evaluations[key]
        state.eval_fields = tuple(f for f in (record.get("pred_field"), record.get("gt_field")) if f)
        if ev.get("kind"):
            kinds = ("tp", "fp", "fn") if record.get("kind") == "detection" else ("correct", "incorrect")
            if ev["kind"] not in kinds:
                raise AppStateError(f"Evaluation {key!r} results are one of {', '.join(kinds)}, got {ev['kind']!r}")
            state.eval_kind = str(ev["kind"])
    sort = raw.get("sort") or {}
    if sort.get("field"):
        top = str(sort["field"]).split(".")[0]
        if top not in types and top not in ("filepath", "created_at"):
            raise AppStateError(f"Cannot sort by unknown field {sort['field']!r}." + did_you_mean(top, list(types)))
        state.sort_field = str(sort["field"])
        state.reverse = bool(sort.get("reverse"))
    return state
