"""``register_model`` and ``register_torch_model``: VESSL's registration, into the local zoo.

Everything is checked before anything is stored: the runner's rules, the
artifacts, the requirements, the number. The entry is then written in a
staging directory and published as ``repository/number`` in one rename
(:func:`modelzoo.zoo.local.publish`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import shutil
import sys
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ..errors import ZooError, check_keys
from ..loaders import LOADER_KINDS
from ..zoo import local
from ..zoo.manifest import NAME_RE
from . import signing, store
from .artifacts import copy_artifacts, plan_artifacts
from .errors import InvalidParamsError
from .runner import check_runner, overrides

__all__ = ["RegisteredModel", "register_model", "register_torch_model", "INPUTS"]

#: what a runner's ``preprocess_data`` receives for a dataset sample under ``apply_model``
INPUTS = tuple(LOADER_KINDS)  # the core's loader kinds (modelzoo.loaders)
_EXTRA_KWARGS = ("organization_name", "input", "builder", "builder_kwargs")


@dataclasses.dataclass(frozen=True)
class RegisteredModel:
    """What a registration stored.

    Attributes:
        repository_name: the repository.
        number: the model's number in it.
    """

    repository_name: str
    number: int

    @property
    def name(self) -> str:
        """The zoo name, ``"repository/number"`` (what :func:`modelzoo.load_zoo_model` takes)."""
        return f"{self.repository_name}/{self.number}"

    def __str__(self) -> str:
        return self.name


def _check_common(repository_name: Any, model_number: Any, requirements: Any, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> List[str]:
    check_keys(kwargs, list(allowed), "register_model", kind="keyword argument")
    if not isinstance(repository_name, str) or not NAME_RE.match(repository_name):
        raise InvalidParamsError(
            f"repository_name {repository_name!r} must be lowercase letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (e.g. 'mnist-classifier')"
        )
    if model_number is not None and (isinstance(model_number, bool) or not isinstance(model_number, int) or model_number < 1):
        raise InvalidParamsError(f"model_number must be a positive integer or None (the next number), got {model_number!r}")
    if kwargs.get("input", "bytes") not in INPUTS:
        raise InvalidParamsError(f"input must be one of {list(INPUTS)}, got {kwargs.get('input')!r}")
    if requirements is None:
        return []
    if isinstance(requirements, str) or not all(isinstance(r, str) for r in requirements):
        raise InvalidParamsError(f"requirements must be a list of pip requirement strings, got {requirements!r}")
    from packaging.requirements import InvalidRequirement, Requirement

    for i, spec in enumerate(requirements):
        try:
            Requirement(spec)
        except InvalidRequirement as e:
            raise InvalidParamsError(f"requirements[{i}] = {spec!r} is not a pip requirement such as 'torch>=2.0' ({e})") from None
    return list(requirements)


def _check_free(repository_name: str, model_number: Optional[int], overwrite: bool) -> None:
    if model_number is not None and not overwrite and model_number in local.numbers(repository_name):
        raise local.NumberTakenError(repository_name, model_number, local.next_number(repository_name))


def _new_volume(staging: str, repository_name: str, model_number: Optional[int]) -> str:
    """The staged entry's volume: empty, or the files uploaded to a reserved number."""
    volume = os.path.join(staging, store.VOLUME)
    if model_number is not None and local.is_reserved(repository_name, model_number):
        uploaded = os.path.join(local.entry_dir(repository_name, model_number), store.VOLUME)
        if os.path.isdir(uploaded):
            shutil.copytree(uploaded, volume)
            return volume
    os.makedirs(volume)
    return volume


def _dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def _entry_writer(repository_name: str, description: str, tags: Sequence[str], requirements: Sequence[str],
                  config: Dict[str, Any], manifest: Mapping[str, Any]) -> Callable[[str, int], None]:
    def write(staging: str, number: int) -> None:
        entry = {
            "name": f"{repository_name}/{number}",
            "version": "1.0",
            "description": description,
            "source": "registered on this machine with modelzoo.vessl",
            "license": "unspecified",
            "size_bytes": _dir_size(staging),
            "tags": list(tags),
            "requirements": {"packages": list(requirements), "cpu": True, "gpu": True},
            "weights": None,
            "model": {"type": store.MODEL_TYPE, "config": {"entry_dir": "{manifest_dir}", **config}},
            "date_added": _dt.date.today().isoformat(),
            "training_data": "unspecified",
        }
        store.write_json(os.path.join(staging, local.ENTRY_FILE), {"manifest_version": 1, "models": [entry]})
        signing.sign(staging, store.signed_files(staging, manifest))  # after entry.json: it names the number

    return write


def _publish(repository_name: str, model_number: Optional[int], overwrite: bool, staging: str, manifest: Dict[str, Any],
             description: str, tags: Sequence[str], requirements: Sequence[str], config: Dict[str, Any]) -> RegisteredModel:
    try:
        store.write_json(os.path.join(staging, store.MANIFEST_FILE), manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    writer = _entry_writer(repository_name, description, tags, requirements, config, manifest)
    number = local.publish(staging, repository_name, model_number, overwrite, writer)
    return RegisteredModel(repository_name, number)


def _base_manifest(repository_name: str, requirements: Sequence[str], kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    return {
        "version": store.MANIFEST_VERSION,
        "repository_name": repository_name,
        "organization_name": kwargs.get("organization_name"),
        "requirements": list(requirements),
        "python": ".".join(map(str, sys.version_info[:3])),
        "created_at": store.now(),
    }


def register_model(
    repository_name: str,
    model_number: Optional[int] = None,
    runner_cls: Any = None,
    model_instance: Any = None,
    requirements: Optional[List[str]] = None,
    artifacts: Optional[Dict[str, str]] = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> RegisteredModel:
    """Registers a runner (and its model) in the local zoo as ``repository_name/number``.

    Args:
        repository_name: the model repository (lowercase, digits, ``.``, ``_``, ``-``).
        model_number: the number; None takes the next one.
        runner_cls: a :class:`~modelzoo.vessl.RunnerBase` subclass.
        model_instance: the model. Stored with ``save_model`` when the runner
            overrides it; not stored when only ``load_model`` is overridden
            (``load_model`` builds the model); else cloudpickled.
        requirements: pip requirements, checked when the model is loaded.
        artifacts: ``{local path: volume path}``; files and directories are
            copied into the model's volume; the only glob is a trailing ``*``.
        overwrite: replace an existing ``repository_name/model_number``.
        **kwargs: ``organization_name`` (recorded); the modelzoo addition
            ``input``: what ``preprocess_data`` receives for a dataset sample
            (``"bytes"``, the default, ``"path"``, ``"array"`` or ``"pil"``).

    Returns:
        the repository and number (``str()`` of it is the zoo name).

    Raises:
        RunnerDefinitionError: the runner breaks RunnerBase's rules.
        ArtifactError: a missing artifact, a bad glob, a path outside the volume.
        NumberTakenError: the number exists and ``overwrite`` is False.
        InvalidParamsError: any other bad argument.

    Example::

        register_model("mnist", runner_cls=MyRunner, artifacts={"model.pt": "model.pt"})   # -> mnist/1
        model = modelzoo.load_zoo_model("mnist/1")
    """
    requirements = _check_common(repository_name, model_number, requirements, kwargs, ("organization_name", "input"))
    use_default = check_runner(runner_cls, model_instance is not None)
    plan = plan_artifacts(artifacts)
    _check_free(repository_name, model_number, overwrite)
    staging = local.staging_dir(repository_name)
    try:
        volume = _new_volume(staging, repository_name, model_number)
        copy_artifacts(plan, volume)
        runner = store.save_callable(runner_cls, staging, store.RUNNER_PICKLE)
        model: Dict[str, Any] = {"save_type": "none"}
        if model_instance is not None and overrides(runner_cls, "save_model"):
            with store.working_directory(volume):
                props = runner_cls.save_model(model_instance)
            if not isinstance(props, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
                raise InvalidParamsError(
                    f"{runner_cls.__name__}.save_model returned {props!r:.120}; it must return a dict of strings to strings"
                )
            model = {"save_type": "save_model", "save_output": dict(props)}
        elif model_instance is not None and not overrides(runner_cls, "load_model"):
            store.dump_pickle(model_instance, os.path.join(staging, store.MODEL_PICKLE))
            model = {"save_type": "cloudpickle", "save_path": store.MODEL_PICKLE}
        manifest = {
            **_base_manifest(repository_name, requirements, kwargs),
            "runner": runner,
            "model": model,
            "use_default": use_default,
            "artifacts": {k: v for k, v in (artifacts or {}).items()},
        }
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _publish(repository_name, model_number, overwrite, staging, manifest,
                    f"VESSL-style runner {runner_cls.__qualname__}", ["vessl"], requirements,
                    {"input": kwargs.get("input", "bytes")})


def register_torch_model(
    repository_name: str,
    model_number: Optional[int],
    model_instance: Any,
    preprocess_data: Optional[Callable[[Any], Any]] = None,
    postprocess_data: Optional[Callable[[Any], Any]] = None,
    requirements: Optional[List[str]] = None,
    overwrite: bool = False,
    **kwargs: Any,
) -> RegisteredModel:
    """Registers a ``torch.nn.Module``: its state dict, rebuilt at load and read
    with ``torch.load(weights_only=True)`` (nothing of the module is pickled).
    ``predict`` is ``model(data)`` without gradients.

    Args:
        repository_name, model_number, requirements, overwrite: as :func:`register_model`
            (``"torch"`` is added to the requirements).
        model_instance: the module. Its class must be importable (defined in
            a module, not ``__main__``) and build it with no arguments, unless
            ``builder`` is given.
        preprocess_data, postprocess_data: the hooks (identity by default);
            imported by dotted path when possible, else cloudpickled (see "Trust").
        **kwargs: ``organization_name``, ``input`` (as :func:`register_model`);
            modelzoo additions ``builder`` (an importable callable, or its
            dotted path, that builds the module, e.g. ``torchvision.models.resnet18``)
            and ``builder_kwargs`` (JSON data passed to it, e.g. ``{"num_classes": 10}``).

    Raises:
        InvalidParamsError: not a module; a class that cannot be rebuilt (the
            message says what to pass); a state dict the rebuilt module refuses.
    """
    import torch

    requirements = _check_common(repository_name, model_number, requirements, kwargs, _EXTRA_KWARGS)
    if not isinstance(model_instance, torch.nn.Module):
        raise InvalidParamsError(f"register_torch_model needs a torch.nn.Module, got {type(model_instance).__name__}")
    builder_path, builder_kwargs = _builder(model_instance, kwargs.get("builder"), kwargs.get("builder_kwargs"))
    _check_rebuild(model_instance, builder_path, builder_kwargs)
    from packaging.requirements import Requirement

    if not any(Requirement(r).name.lower() == "torch" for r in requirements):
        requirements = [*requirements, "torch"]
    _check_free(repository_name, model_number, overwrite)
    staging = local.staging_dir(repository_name)
    try:
        _new_volume(staging, repository_name, model_number)
        state = {k: v.detach().cpu() for k, v in model_instance.state_dict().items()}
        torch.save(state, os.path.join(staging, store.STATE_DICT))
        hooks = {}
        for hook, fn in (("preprocess_data", preprocess_data), ("postprocess_data", postprocess_data)):
            if fn is not None:
                if not callable(fn):
                    raise InvalidParamsError(f"{hook} must be a callable taking one argument, got {fn!r}")
                hooks[hook] = store.save_callable(fn, staging, f"vessl.{hook}.pkl")
        manifest = {
            **_base_manifest(repository_name, requirements, kwargs),
            "runner": {"save_type": "import", "path": "modelzoo.vessl.torch_runner.TorchRunner"},
            "model": {
                "save_type": "torch_state_dict",
                "save_path": store.STATE_DICT,
                "builder": builder_path,
                "builder_kwargs": builder_kwargs,
                "training": bool(model_instance.training),
            },
            "hooks": hooks,
            "use_default": [h for h in ("preprocess_data", "postprocess_data") if h not in hooks],
            "artifacts": {},
        }
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _publish(repository_name, model_number, overwrite, staging, manifest,
                    f"torch module {type(model_instance).__qualname__}", ["vessl", "torch"], requirements,
                    {"input": kwargs.get("input", "bytes")})


def _builder(module: Any, builder: Any, builder_kwargs: Any) -> Any:
    cls = type(module)
    if builder is None:
        path = store.importable_path(cls)
        if path is None:
            raise InvalidParamsError(
                f"register_torch_model stores {cls.__qualname__}'s state dict and rebuilds the module when it is "
                f"loaded, so its class must be importable: {cls.__module__}.{cls.__qualname__} is not (a class "
                "defined in __main__ or inside a function). Move it to a module, or pass builder='package.module.fn' "
                "(a function returning the module), or use register_model with a runner whose load_model builds it."
            )
    elif isinstance(builder, str):
        path = builder
    else:
        path = store.importable_path(builder)
        if path is None:
            raise InvalidParamsError(f"builder {builder!r} cannot be imported back by name; pass a module-level function")
    kwargs = dict(builder_kwargs or {})
    import json

    try:
        json.dumps(kwargs)
    except TypeError as e:
        raise InvalidParamsError(f"builder_kwargs must be JSON data (numbers, strings, lists, dicts): {e}") from None
    return path, kwargs


def _check_rebuild(module: Any, builder_path: str, builder_kwargs: Mapping[str, Any]) -> None:
    from ..imports import import_object

    try:
        fn = import_object(builder_path, "builder")
        rebuilt = fn(**builder_kwargs)
    except (TypeError, ZooError, ValueError) as e:
        raise InvalidParamsError(
            f"register_torch_model rebuilds the module as {builder_path}(**{dict(builder_kwargs)!r}) when it is loaded, "
            f"and that failed: {type(e).__name__}: {e}. Pass builder= (an importable function returning the module, "
            "e.g. torchvision.models.resnet18) and builder_kwargs= (e.g. {'num_classes': 10})."
        ) from e
    if type(rebuilt) is not type(module):
        raise InvalidParamsError(
            f"builder {builder_path} builds a {type(rebuilt).__qualname__}, not a {type(module).__qualname__}"
        )
    try:
        rebuilt.load_state_dict(module.state_dict(), strict=True)
    except RuntimeError as e:
        raise InvalidParamsError(
            f"The module built by {builder_path}(**{dict(builder_kwargs)!r}) does not take this module's state dict "
            f"(different architecture): {str(e).splitlines()[0]}. Pass the builder_kwargs that build the same architecture."
        ) from None
