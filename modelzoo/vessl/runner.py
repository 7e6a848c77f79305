"""``RunnerBase``: VESSL's five static hooks, and the rules a runner class must follow.

A runner is a class of static methods, never instantiated::

    class MyRunner(RunnerBase):
        @staticmethod
        def load_model(props, artifacts): ...        # -> the model
        @staticmethod
        def preprocess_data(data): ...               # request -> model input
        @staticmethod
        def predict(model, data): ...                # the only required hook
        @staticmethod
        def postprocess_data(data): ...              # model output -> answer

``RunnerBase[In, Out]`` with pydantic models types the request and the answer.
"""

from __future__ import annotations

import abc
import inspect
from typing import Any, Dict, Generic, List, Optional, Tuple, TypeVar

from .errors import RunnerDefinitionError

__all__ = ["RunnerBase", "HOOKS", "check_runner", "check_hook_names", "overrides", "io_types"]

InputDataType = TypeVar("InputDataType")
OutputDataType = TypeVar("OutputDataType")

#: hook -> its parameters
HOOKS: Dict[str, Tuple[str, ...]] = {
    "load_model": ("props", "artifacts"),
    "save_model": ("model",),
    "preprocess_data": ("data",),
    "predict": ("model", "data"),
    "postprocess_data": ("data",),
}


class RunnerBase(abc.ABC, Generic[InputDataType, OutputDataType]):
    """Base class for model registering (VESSL's ``vessl.RunnerBase``).

    Override :meth:`predict`; the other hooks are optional. If you override
    :meth:`save_model`, override :meth:`load_model` as well (checked at
    registration).
    """

    @staticmethod
    def load_model(props: Optional[Dict[str, str]], artifacts: Dict[str, str]) -> Any:
        """Loads the model instance.

        Args:
            props: what :meth:`save_model` returned, or None when it is not overridden.
            artifacts: ``{path given to register_model: absolute path of the stored copy}``.

        Returns:
            the model instance.
        """
        raise NotImplementedError("load_model is not overridden")

    @staticmethod
    def save_model(model: Any) -> Dict[str, str]:
        """Saves the model instance into files (relative paths land in the
        model's directory). Returns string-to-string data for :meth:`load_model`."""
        return {}

    @staticmethod
    def preprocess_data(data: Any) -> Any:
        """The request -> the model's input (identity by default)."""
        return data

    @staticmethod
    @abc.abstractmethod
    def predict(model: Any, data: Any) -> Any:
        """The prediction for the preprocessed ``data``."""

    @staticmethod
    def postprocess_data(data: Any) -> Any:
        """The model's output -> the answer (identity by default)."""
        return data


def overrides(runner_cls: type, hook: str) -> bool:
    """Whether ``runner_cls`` defines ``hook`` itself (or a base other than RunnerBase does)."""
    return getattr(runner_cls, hook) is not getattr(RunnerBase, hook)


def _check_arity(runner_cls: type, hook: str) -> None:
    fn = getattr(runner_cls, hook)
    params = HOOKS[hook]
    expected = f"@staticmethod def {hook}({', '.join(params)})"
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to check
    try:
        sig.bind(*params)
    except TypeError:
        raise RunnerDefinitionError(
            f"{runner_cls.__name__}.{hook}{sig} cannot be called as {hook}({', '.join(params)}): "
            f"declare it as {expected} (runners are never instantiated, so there is no self)"
        ) from None


def _near_miss(name: str) -> Optional[str]:
    """The hook ``name`` was probably meant to be, or None."""
    import difflib

    low = name.lower()
    for stem, hook in (("preprocess", "preprocess_data"), ("pre_process", "preprocess_data"),
                       ("postprocess", "postprocess_data"), ("post_process", "postprocess_data")):
        if low.startswith(stem):
            return hook
    match = difflib.get_close_matches(low, list(HOOKS), n=1, cutoff=0.75)
    return match[0] if match else None


def check_hook_names(runner_cls: type) -> None:
    """Refuses a method whose name is a near miss of a hook (``preprocess``
    for ``preprocess_data``): VESSL would register it and never call it.

    Raises:
        RunnerDefinitionError: naming the method, the hook and the fix.
    """
    for klass in runner_cls.__mro__:
        if klass is RunnerBase or not (isinstance(klass, type) and issubclass(klass, RunnerBase)):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in HOOKS:
                continue
            if not (callable(value) or isinstance(value, (staticmethod, classmethod))):
                continue
            hook = _near_miss(name)
            if hook is not None:
                raise RunnerDefinitionError(
                    f"Runner {runner_cls.__name__} defines {name}, which is not one of RunnerBase's hooks "
                    f"({', '.join(HOOKS)}), so it would never be called. Did you mean {hook!r}? Rename it to "
                    f"@staticmethod def {hook}({', '.join(HOOKS[hook])}); if it is a helper of your own, start its "
                    f"name with '_' ('_{name}')."
                )


def check_runner(runner_cls: Any, has_instance: bool) -> List[str]:
    """Checks a runner class before registration (VESSL's rules) and returns
    the hooks left at their defaults (``use_default`` in the manifest).

    Raises:
        RunnerDefinitionError: not a RunnerBase subclass; ``predict`` not
            overridden; ``save_model`` overridden without ``load_model``; no
            model instance and no ``load_model``; a hook that cannot take its arguments.
    """
    name = getattr(runner_cls, "__name__", repr(runner_cls))
    if not (isinstance(runner_cls, type) and issubclass(runner_cls, RunnerBase)):
        raise RunnerDefinitionError(
            f"runner_cls must be a subclass of RunnerBase (from modelzoo.vessl import RunnerBase), got {runner_cls!r}"
        )
    check_hook_names(runner_cls)
    if not overrides(runner_cls, "predict") or getattr(runner_cls.predict, "__isabstractmethod__", False):
        raise RunnerDefinitionError(f"Runner {name} must override predict(model, data)")
    if overrides(runner_cls, "save_model") and not overrides(runner_cls, "load_model"):
        raise RunnerDefinitionError(
            f"Runner {name} overrides save_model but not load_model: what save_model returns is given to "
            "load_model(props, artifacts) when the model is loaded, so override load_model as well"
        )
    if not has_instance and not overrides(runner_cls, "load_model"):
        raise RunnerDefinitionError(
            f"Runner {name} does not override load_model and no model_instance was given: there is nothing to "
            "load. Pass model_instance=..., or override load_model(props, artifacts)"
        )
    for hook in HOOKS:
        if overrides(runner_cls, hook):
            _check_arity(runner_cls, hook)
    return [h for h in ("load_model", "preprocess_data", "postprocess_data") if not overrides(runner_cls, h)]


def io_types(runner_cls: type) -> Tuple[Optional[type], Optional[type]]:
    """The pydantic request and answer types of ``RunnerBase[In, Out]``, or None each."""
    for base in getattr(runner_cls, "__orig_bases__", ()):
        if getattr(base, "__origin__", None) is RunnerBase:
            args = getattr(base, "__args__", ())
            return tuple(a if _is_pydantic(a) else None for a in args[:2])  # type: ignore[return-value]
    for parent in runner_cls.__mro__[1:]:
        if parent is not RunnerBase and isinstance(parent, type) and issubclass(parent, RunnerBase):
            return io_types(parent)
    return None, None


def _is_pydantic(tp: Any) -> bool:
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is a dependency
        return False
    return isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)
