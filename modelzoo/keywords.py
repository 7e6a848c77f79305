"""Unknown keyword arguments, named truthfully: the message lists every
keyword the call takes (its named parameters and the extra ones it reads
from ``**kwargs``), and suggests the closest (``labelfield`` ->
``label_field``)."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, List, Mapping

from .errors import UnknownKeyError, did_you_mean

__all__ = ["call_keywords", "check_call_keywords"]


def call_keywords(fn: Callable[..., Any], extras: Iterable[str] = (), skip: Iterable[str] = ()) -> List[str]:
    """The keywords ``fn`` accepts: its named parameters (but ``skip``), then ``extras``."""
    skipped = set(skip)
    names = [
        p.name for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in skipped
    ]
    return names + [e for e in extras if e not in names]


def check_call_keywords(
    fn: Callable[..., Any], kwargs: Mapping[str, Any], extras: Iterable[str] = (), skip: Iterable[str] = ("samples", "model")
) -> None:
    """Raises :class:`~modelzoo.errors.UnknownKeyError` for the first key of
    ``kwargs`` that is neither in ``extras`` nor a named parameter of ``fn``
    (``fn``'s named parameters never reach its ``**kwargs``, so any key there
    is one of the extras or a mistake)."""
    allowed = call_keywords(fn, extras, skip)
    known = set(allowed)
    for key in kwargs:
        if key not in known:
            what = f"{fn.__name__}()"
            raise UnknownKeyError(
                f"{what} has no argument {key!r}." + did_you_mean(str(key), allowed, n=1)
                + f" Valid arguments: {', '.join(allowed)}.",
                key, allowed, what,
            )
