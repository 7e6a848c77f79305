"""Launch's calling conventions, checked at creation and applied at load.

Launch's server (``model_engine_server/inference/common.py``) calls, with an
``app_config``, ``load_model_fn(app_config)`` then
``load_predict_fn(app_config, model)``; without one, ``load_model_fn()`` then
``load_predict_fn(model)``. A request dict is passed as keyword arguments
(``predict_fn(**args)``); any other input (a ``url`` request's bytes) as the
single argument.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional

from .errors import BundleConfigError

__all__ = ["check_conventions", "load_predict", "call_predict", "accepted_keywords"]

_CONVENTIONS = (
    "with an app_config: load_model_fn(app_config) and load_predict_fn(app_config, model); "
    "without one: load_model_fn() and load_predict_fn(model)"
)


def _accepts(fn: Callable[..., Any], n: int) -> Optional[bool]:
    """Whether ``fn`` can be called with ``n`` positional arguments (None: unknown)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        sig.bind(*range(n))
    except TypeError:
        return False
    return True


def _check(fn: Any, what: str, n: int, bundle: str, has_config: bool) -> None:
    if not callable(fn):
        raise BundleConfigError(f"Bundle {bundle!r}: {what} must be callable, got {type(fn).__name__}")
    if _accepts(fn, n) is False:
        try:
            shown = f"{getattr(fn, '__name__', what)}{inspect.signature(fn)}"
        except (TypeError, ValueError):  # pragma: no cover
            shown = what
        given = "an app_config was given" if has_config else "no app_config was given"
        raise BundleConfigError(
            f"Bundle {bundle!r}: {what} is {shown}, but {given}, so it is called with {n} "
            f"argument{'s' if n != 1 else ''}. Launch's conventions: {_CONVENTIONS}. "
            + ("Pass app_config=None, or add the app_config parameter first."
               if has_config else "Pass an app_config, or drop its app_config parameter.")
        )


def check_conventions(
    bundle: str,
    load_predict_fn: Any,
    load_model_fn: Any = None,
    model: Any = None,
    app_config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Checks that the functions accept the arguments Launch's convention
    gives them for this ``app_config``.

    Raises:
        BundleConfigError: a wrong arity (the message shows both conventions),
            or both or neither of ``model`` / ``load_model_fn``.
    """
    has_config = app_config is not None
    if (load_model_fn is None) == (model is None):
        raise BundleConfigError(
            f"Bundle {bundle!r}: give exactly one of load_model_fn (a function that builds the model) "
            "or model (the model object itself)"
        )
    if load_model_fn is not None:
        _check(load_model_fn, "load_model_fn", 1 if has_config else 0, bundle, has_config)
    _check(load_predict_fn, "load_predict_fn", 2 if has_config else 1, bundle, has_config)


def load_predict(
    load_predict_fn: Callable[..., Any],
    load_model_fn: Optional[Callable[..., Any]],
    model: Any,
    app_config: Optional[Mapping[str, Any]],
) -> Callable[..., Any]:
    """Builds the model and the ``predict_fn``, as Launch's server does."""
    config = None if app_config is None else dict(app_config)
    if load_model_fn is not None:
        model = load_model_fn() if config is None else load_model_fn(config)
    return load_predict_fn(model) if config is None else load_predict_fn(config, model)


def accepted_keywords(fn: Callable[..., Any]) -> Optional[frozenset]:
    """The keyword arguments ``fn`` takes, or None when it takes any (``**kwargs``) or is opaque."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def call_predict(predict_fn: Callable[..., Any], request: Any, accepted: Optional[frozenset] = None) -> Any:
    """A dict is splatted as keyword arguments; anything else is the single argument.

    Args:
        accepted: when given (a request that passed its schema), keys the
            function does not take are not passed: a schema may require a
            field the function never reads, such as the ``kind`` tag of a
            union of request shapes (Launch's ``app_config`` example).
    """
    if isinstance(request, Mapping):
        if accepted is not None:
            request = {k: v for k, v in request.items() if k in accepted}
        return predict_fn(**request)
    return predict_fn(request)
