"""Backends: what runs the engine's loop for ``apply_model`` / ``compute_embeddings``.

A backend is a :class:`Runner`: ``run(source, model, sink, options,
backend_options)`` returns an :class:`~modelzoo.engine.ApplyReport`.
``"local"`` (:func:`~modelzoo.engine.run_model` in this process) is built
in; other backends plug in by name::

    from modelzoo.engine import Runner, register_backend

    class MyRunner(Runner):
        name = "mine"
        def run(self, source, model, sink, options, backend_options=None):
            ...

    register_backend("mine", MyRunner())
    dataset.apply_model(model, backend="mine")   # or backend=MyRunner()

A package that provides a backend registers it when imported (``modelzoo.ray``
registers ``"ray"``). So that ``backend="ray"`` works without importing it
first, :data:`known_implementations` maps a name to the module that registers
it and the install hint given when it cannot be imported (fsspec's pattern).
The engine imports none of them: the name is looked up on first use.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models import Model
    from .report import ApplyReport
    from .run import RunOptions
    from .sinks import Sink
    from .source import Source

__all__ = ["Runner", "LocalRunner", "known_implementations", "register_backend", "get_backend", "available_backends"]


class Runner:
    """Runs a model over a source into a sink, somewhere.

    Subclass it and implement :meth:`run`; :meth:`check_options` and
    :meth:`check_run` let a backend fail before anything is read.
    """

    #: the name used in messages and in ``backend=``
    name: str = "runner"

    def check_options(self, backend_options: Optional[Mapping[str, Any]]) -> None:
        """Raises :class:`~modelzoo.ConfigError` for options this backend does
        not take (or an :class:`~modelzoo.ExtraNotInstalledError` when what it
        needs is not installed). Called before anything is read."""

    def check_run(self, model: "Model", frames: bool) -> None:
        """Raises :class:`~modelzoo.ConfigError` when this backend cannot run
        ``model`` (``frames``: the run includes the frames of videos)."""

    def run(
        self,
        source: "Source",
        model: "Model",
        sink: "Sink",
        options: "RunOptions",
        backend_options: Optional[Mapping[str, Any]] = None,
    ) -> "ApplyReport":
        """Runs ``model`` over ``source``; ``sink`` gets the outputs."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalRunner(Runner):
    """:func:`~modelzoo.engine.run_model` in this process."""

    name = "local"

    def check_options(self, backend_options: Optional[Mapping[str, Any]]) -> None:
        if backend_options is not None:
            raise ConfigError("ray_options is for backend='ray'; pass backend='ray' or drop ray_options")

    def run(
        self,
        source: "Source",
        model: "Model",
        sink: "Sink",
        options: "RunOptions",
        backend_options: Optional[Mapping[str, Any]] = None,
    ) -> "ApplyReport":
        from .run import run_model

        return run_model(source, model, sink, options)


#: backends registered on first use: name -> (module that registers it when
#: imported, what to install when it cannot be imported)
known_implementations: Dict[str, Dict[str, str]] = {
    "ray": {"module": "modelzoo.ray", "install": "pip install 'modelzoo[ray]'"},
}

_registry: Dict[str, Runner] = {"local": LocalRunner()}
_lock = threading.Lock()


def register_backend(name: str, runner: Runner, overwrite: bool = False) -> None:
    """Makes ``runner`` available as ``backend=name``.

    Raises:
        ConfigError: ``name`` is taken (pass ``overwrite=True`` to replace it),
            or ``runner`` is not a :class:`Runner`.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"register_backend(name): name must be a non-empty string, got {name!r}")
    if not isinstance(runner, Runner):
        raise ConfigError(
            f"register_backend({name!r}, runner): runner must be a modelzoo.engine.Runner, got {type(runner).__name__}"
        )
    with _lock:
        if name in _registry and _registry[name] is not runner and not overwrite:
            raise ConfigError(
                f"Backend {name!r} is already registered ({_registry[name]!r}); pass overwrite=True to replace it"
            )
        _registry[name] = runner


def available_backends() -> List[str]:
    """The backend names: registered ones and those registered on first use."""
    return sorted(set(_registry) | set(known_implementations))


def get_backend(backend: Union[str, Runner]) -> Runner:
    """The runner for ``backend``: a :class:`Runner` as is, or a name.

    A name in :data:`known_implementations` imports its module on first use
    (which registers it).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    if isinstance(backend, Runner):
        return backend
    if not isinstance(backend, str):
        raise ConfigError(
            f"backend must be a name ({', '.join(map(repr, available_backends()))}) or a modelzoo.engine.Runner, "
            f"got {type(backend).__name__}"
        )
    runner = _registry.get(backend)
    if runner is not None:
        return runner
    known = known_implementations.get(backend)
    if known is None:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, available_backends()))}, got {backend!r}")
    importlib.import_module(known["module"])  # registers it
    runner = _registry.get(backend)
    if runner is None:
        raise ConfigError(
            f"Importing {known['module']} did not register backend {backend!r}; reinstall it: {known['install']}"
        )
    return runner
