"""Launch's calling conventions, checked at creation and applied at load.

Launch's server (``model_engine_server/inference/common.py``) calls, with an
``app_config``, ``load_model_fn(app_config)`` then
``load_predict_fn(app_config, model)``; without one, ``load_model_fn()`` then
``load_predict_fn(model)``. A request dict is passed as keyword arguments
(``predict_fn(**args)``); any other input (a ``url`` request's bytes) as the
single argument.

Launch's client docstring writes ``load_predict_fn(model, app_config=None)``
instead: a function whose parameters are named ``app_config`` (or
``config``) and ``model`` is called by name, so both forms work.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, Tuple

from .errors import BundleConfigError

__all__ = ["check_conventions", "load_predict", "call_predict", "accepted_keywords"]

_CONVENTIONS = (
    "with an app_config: load_model_fn(app_config) and load_predict_fn(app_config, model); "
    "without one: load_model_fn() and load_predict_fn(model)"
)


#: the parameter names that mark a function as taking the config by name
CONFIG_NAMES = ("app_config", "config")


def _signature(fn: Callable[..., Any]) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _plan(fn: Callable[..., Any], takes_model: bool, has_config: bool) -> Tuple[str, Optional[str], Optional[str]]:
    """How to call ``fn``: ``("keywords", config_name, model_name)`` when its
    parameters are named (``app_config`` / ``config``, and ``model`` for
    ``load_predict_fn``), else ``("positional", None, None)``: Launch's server
    order, config first."""
    sig = _signature(fn)
    if sig is None:
        return "positional", None, None
    names = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    config_name = next((n for n in CONFIG_NAMES if n in names), None)
    model_name = "model" if "model" in names else None
    if config_name is not None and (model_name is not None or not takes_model):
        return "keywords", config_name, model_name
    return "positional", None, None


def _arguments(plan: Tuple[str, Optional[str], Optional[str]], takes_model: bool, config: Any, model: Any, has_config: bool) -> Tuple[list, dict]:
    how, config_name, model_name = plan
    if how == "keywords":
        kwargs = {}
        if takes_model:
            kwargs[model_name] = model
        if has_config:
            kwargs[config_name] = config
        return [], kwargs  # type: ignore[return-value]
    args = ([config] if has_config else []) + ([model] if takes_model else [])
    return args, {}


def _shown(fn: Any, what: str) -> str:
    try:
        return f"{getattr(fn, '__name__', what)}{inspect.signature(fn)}"
    except (TypeError, ValueError):  # pragma: no cover
        return what


def _check(fn: Any, what: str, takes_model: bool, bundle: str, has_config: bool) -> None:
    if not callable(fn):
        raise BundleConfigError(f"Bundle {bundle!r}: {what} must be callable, got {type(fn).__name__}")
    sig = _signature(fn)
    if sig is None:
        return
    plan = _plan(fn, takes_model, has_config)
    args, kwargs = _arguments(plan, takes_model, None, None, has_config)
    try:
        sig.bind(*args, **kwargs)
    except TypeError:
        pass
    else:
        return
    given = "an app_config was given" if has_config else "no app_config was given"
    if plan[0] == "keywords":
        passed = ", ".join(f"{k}=..." for k in kwargs) or "no arguments"
        how = f"it is called by parameter name with {passed}"
    else:
        n = len(args)
        how = f"it is called with {n} argument{'s' if n != 1 else ''}"
    raise BundleConfigError(
        f"Bundle {bundle!r}: {what} is {_shown(fn, what)}, but {given}, so {how}. Launch's conventions: "
        f"{_CONVENTIONS} (parameters named app_config and model are passed by name, in any order, and an "
        "app_config parameter with a default may be left out). "
        + ("Pass app_config=None, or add the app_config parameter."
           if has_config else "Pass an app_config, or give its app_config parameter a default (app_config=None).")
    )


def check_conventions(
    bundle: str,
    load_predict_fn: Any,
    load_model_fn: Any = None,
    model: Any = None,
    app_config: Optional[Mapping[str, Any]] = None,
) -> None:
    """Checks that the functions accept the arguments Launch's convention
    gives them for this ``app_config``: positionally (config first, as
    Launch's server calls them), or by name when their parameters are named
    ``app_config`` (or ``config``) and ``model``, as Launch's client
    docstring writes ``load_predict_fn(model, app_config=None)``.

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
        _check(load_model_fn, "load_model_fn", False, bundle, has_config)
    _check(load_predict_fn, "load_predict_fn", True, bundle, has_config)


def _call(fn: Callable[..., Any], takes_model: bool, config: Any, model: Any) -> Any:
    has_config = config is not None
    args, kwargs = _arguments(_plan(fn, takes_model, has_config), takes_model, config, model, has_config)
    return fn(*args, **kwargs)


def load_predict(
    load_predict_fn: Callable[..., Any],
    load_model_fn: Optional[Callable[..., Any]],
    model: Any,
    app_config: Optional[Mapping[str, Any]],
    bundle: str = "",
) -> Callable[..., Any]:
    """Builds the model and the ``predict_fn``, as Launch's server does.

    Raises:
        BundleConfigError: ``load_predict_fn`` returned something that is not
            callable (it must return the predict function).
    """
    config = None if app_config is None else dict(app_config)
    if load_model_fn is not None:
        model = _call(load_model_fn, False, config, None)
    predict_fn = _call(load_predict_fn, True, config, model)
    if not callable(predict_fn):
        name = getattr(load_predict_fn, "__qualname__", "load_predict_fn")
        raise BundleConfigError(
            f"Bundle {bundle!r}: load_predict_fn {name}() returned {type(predict_fn).__name__} "
            f"{predict_fn!r:.60}, not a function. It must return the function that predicts one input: "
            f"end {name} with `return predict` (the inner function's name)."
        )
    return predict_fn


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
