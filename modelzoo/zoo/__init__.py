"""The model zoo: named, versioned models with their weights, classes and preprocessing.

Example::

    import modelzoo as mz

    mz.list_zoo_models(tags="classification")
    model = mz.load_zoo_model("mobilenet-v2-imagenet-torch")     # newest version
    model = mz.load_zoo_model("digits-cnn-torch@1.0", confidence_thresh=0.5)
    dataset.apply_model(model, label_field="predictions")

Entries come from ``manifests/*.json`` (see :mod:`modelzoo.zoo.manifest`),
``MODELZOO_MANIFEST_PATHS``, plugins (:mod:`modelzoo.zoo.plugins`),
:func:`register_zoo_model`, and the local zoo of ``repository/number``
models registered on this machine (:mod:`modelzoo.zoo.local`, written by
:mod:`modelzoo.vessl`). Weights are cached under ``MODELZOO_HOME``
(:mod:`modelzoo.zoo.weights`).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

from ..atomic import atomic_write
from ..config import Config
from ..errors import ConfigError, ZooError
from ..imports import import_object
from ..recipes import NAME_LOADERS, Recipe, remember
from . import local as _local
from . import weights as _weights
from .manifest import (
    NAME_RE,
    ManifestChecker,
    ManifestError,
    ModelSpec,
    Requirements,
    WeightsSpec,
    ZooModelInfo,
    parse_requirements,
    parse_weights,
)
from .plugins import ENTRY_POINT_GROUP, ENV_MANIFEST_PATHS
from .registry import build_model, registry
from .requirements import check_device, check_requirements
from .weights import ENV_HOME, ENV_OFFLINE, ENV_WEIGHTS_PATH, zoo_home

__all__ = [
    "ZooModelInfo",
    "WeightsSpec",
    "Requirements",
    "ModelSpec",
    "ManifestError",
    "list_zoo_models",
    "get_zoo_model_info",
    "load_zoo_model",
    "download_zoo_model",
    "is_zoo_model_downloaded",
    "delete_zoo_model",
    "register_zoo_model",
    "unregister_zoo_model",
    "make_zoo_model_info",
    "config_model_cls",
    "ManifestChecker",
    "reload_zoo",
    "zoo_home",
    "ENTRY_POINT_GROUP",
    "ENV_HOME",
    "ENV_MANIFEST_PATHS",
    "ENV_OFFLINE",
    "ENV_WEIGHTS_PATH",
]


def list_zoo_models(
    tags: Union[str, Sequence[str], None] = None, pattern: Optional[str] = None, versions: bool = False
) -> List[str]:
    """The names of the zoo's models, sorted.

    Args:
        tags: keep models that have all of these tags.
        pattern: keep names matching this glob (``"*-imagenet-*"``); without
            wildcards, names containing it.
        versions: list every ``name@version`` instead of names.
    """
    wanted = {tags} if isinstance(tags, str) else set(tags or ())
    if pattern is not None and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    out = []
    for info in registry.all():
        if wanted and not wanted.issubset(info.tags):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(info.name, pattern):
            continue
        out.append(info.key if versions else info.name)
    return sorted(set(out), key=out.index) if not versions else out


def get_zoo_model_info(name: str) -> ZooModelInfo:
    """The entry for ``"name"`` (newest version) or ``"name@version"``
    (``"repository/number"``, or ``"repository"`` for its newest number, in the local zoo).

    Raises:
        ModelNotFoundError: unknown name, with the close matches.
    """
    return registry.get(name)


def load_zoo_model(
    name: str,
    install_requirements: bool = False,
    download: bool = True,
    progress: Optional[bool] = None,
    **overrides: Any,
) -> Any:
    """Loads a zoo model, downloading its weights on first use.

    Args:
        name: ``"name"`` (newest version) or ``"name@version"``; for models of
            the local zoo (:mod:`modelzoo.vessl`), ``"repository/number"`` or
            ``"repository"`` (its newest number).
        install_requirements: pip-install missing packages instead of raising.
        download: allow downloading the weights (else they must be on this machine).
        progress: show a download progress bar (default: when stderr is a terminal).
        **overrides: settings that replace the entry's config (``device="cpu"``,
            ``confidence_thresh=0.5``...). ``weights_path`` replaces the zoo's weights.

    Returns:
        a :class:`~modelzoo.Model`.

    Raises:
        ModelNotFoundError: unknown name (close matches are suggested).
        RequirementsError: missing packages, or a GPU-only model without a GPU.
        DownloadError: the weights cannot be fetched; names the URL and the manual path.
        ChecksumError: the weights do not have the expected sha256.
        ConfigError: an unknown or invalid override.

    Example::

        model = load_zoo_model("mobilenet-v2-imagenet-torch", device="cpu")
        label = model.predict(image)
    """
    info = registry.get(name)
    check_requirements(info, install=install_requirements)
    check_device(info, overrides.get("device"))
    weights_path = None
    if "weights_path" not in overrides and info.model.kind == "class":
        weights_path = _weights.resolve_weights(info, download=download, progress=progress)
    if download:
        _post_download(info, force=False)
    model = build_model(info, weights_path=weights_path, **overrides)
    # how another process (a Ray replica) rebuilds this model
    return remember(model, Recipe.zoo(name, **overrides))


NAME_LOADERS["zoo"] = load_zoo_model


def download_zoo_model(name: str, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
    """Makes the model's weights available on this machine and returns their path
    (None for a model without weights). A copy found in a local source by
    checksum is used without downloading, unless ``overwrite``. A model class
    with a ``zoo_post_download()`` hook (a Tungsten-style model's
    ``post_build``) has it run the first time, and again with ``overwrite``.

    Raises:
        DownloadError, ChecksumError: see :func:`load_zoo_model`.
    """
    info = registry.get(name)
    path: Optional[str] = None
    if info.weights is not None and overwrite:
        path = _weights.download_weights(info, progress=progress, overwrite=True)
    elif info.weights is not None:
        path = _weights.resolve_weights(info, download=True, progress=progress)
    _post_download(info, force=overwrite)
    return path


def _post_download(info: ZooModelInfo, force: bool) -> None:
    """Runs the model class's ``zoo_post_download()`` hook, if it has one (a
    Tungsten-style model's ``post_build``), once per entry: the first
    download or load, and again on ``download_zoo_model(overwrite=True)``.
    A marker file in the entry's cache directory records that it ran."""
    import os

    if info.model.kind != "class":
        return
    cls = info.model.type
    if isinstance(cls, str):
        cls = import_object(cls, "model.type")
    hook = getattr(cls, "zoo_post_download", None)
    if not callable(hook):
        return
    marker = os.path.join(_weights.model_dir(info), ".post_download")
    if os.path.exists(marker) and not force:
        return
    hook()
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with atomic_write(marker) as f:
        f.write(f"{cls.__module__}.{cls.__qualname__}\n")


def is_zoo_model_downloaded(name: str) -> bool:
    """Whether the model's verified weights are on this machine (in the cache or
    a local source). True for a model without weights."""
    info = registry.get(name)
    if info.weights is None:
        return True
    return _weights.find_weights(info) is not None


def delete_zoo_model(name: str) -> bool:
    """Deletes the model's cached weights (files in local sources are never
    touched); a ``repository/number`` model of the local zoo is removed
    altogether (its entry and files). Returns whether anything was deleted."""
    info = registry.get(name)
    if _local.is_local(info):
        return _local.delete_local_entry(info)
    return _weights.delete_weights(info)


def reload_zoo() -> None:
    """Reads the manifests, ``MODELZOO_MANIFEST_PATHS`` and plugins again on next use."""
    registry.reload()


def _model_spec(model: Any, model_cls: Optional[type], config: Optional[Mapping[str, Any]]) -> ModelSpec:
    from ..models import Model

    if isinstance(model, Config):
        cls = model_cls or config_model_cls(type(model))
        return ModelSpec(type=cls, config=model.to_dict(), kind="class")
    if isinstance(model, Mapping):
        if model_cls is None:
            from ..torch_image import TorchImageModel

            model_cls = TorchImageModel
        cfg_cls = getattr(model_cls, "config_cls", None)
        if cfg_cls is not None:
            cfg_cls(dict(model))  # configuration errors surface now
        return ModelSpec(type=model_cls, config=dict(model), kind="class")
    if isinstance(model, type) and issubclass(model, Model):
        cfg = dict(config or {})
        cfg_cls = getattr(model, "config_cls", None)
        if cfg_cls is not None:
            cfg_cls(cfg)
        return ModelSpec(type=model, config=cfg, kind="class")
    if isinstance(model, Model):
        raise ZooError(
            f"register_zoo_model got a {type(model).__name__} instance; register its class, its config, "
            "or a factory function that builds it"
        )
    if hasattr(model, "load_model") and callable(model.load_model):
        return ModelSpec(type=model, kind="loader")
    if callable(model):
        return ModelSpec(type=model, kind="factory")
    raise ZooError(
        f"register_zoo_model cannot use a {type(model).__name__}: pass a model config, a Model subclass, "
        "a factory function, or a bundle (an object with load_model())"
    )


def config_model_cls(config_cls: type) -> type:
    """The model class a config class names in its own ``model_cls`` (a class
    or its dotted path; a subclass that does not set one names none).

    Raises:
        ConfigError: the config names no model class, or not a Model subclass.
    """
    from ..models import Model

    name = config_cls.__name__
    cls = vars(config_cls).get("model_cls")
    if cls is None:
        raise ConfigError(
            f"{name} does not name the model class it builds: pass model_cls= to register_zoo_model, "
            f"or set it on the config class ({name}.model_cls = YourModel, or its dotted path)"
        )
    if isinstance(cls, str):
        cls = import_object(cls, f"{name}.model_cls")
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ConfigError(f"{name}.model_cls is {cls!r}, not a modelzoo.Model subclass")
    return cls


def make_zoo_model_info(
    name: str,
    model: Any,
    version: Optional[str] = None,
    description: str = "",
    tags: Iterable[str] = (),
    weights: Union[WeightsSpec, Mapping[str, Any], None] = None,
    requirements: Union[Requirements, Mapping[str, Any], None] = None,
    model_cls: Optional[type] = None,
    config: Optional[Mapping[str, Any]] = None,
    source: str = "",
    license: str = "",
    size_bytes: Optional[int] = None,
    training_data: str = "",
    date_added: Optional[str] = None,
    origin: str = "registered",
) -> ZooModelInfo:
    """Builds a validated :class:`ZooModelInfo` for a model given in Python (see
    :func:`register_zoo_model` for the arguments). Plugins may return these
    from their entry point."""
    import datetime as _dt

    ck = ManifestChecker(origin, repr(name))
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ck.fail("name", f"{name!r} must be lowercase letters, digits, '.', '_' or '-' (no '@')")
    if version is None:  # a bundle files itself under its id, ordered by its creation time
        version = getattr(model, "zoo_version", None) or "1.0"
        date_added = date_added or getattr(model, "zoo_date", None)
    numbered = isinstance(version, str) and all(p.isdigit() for p in version.split("."))
    if not numbered and not (isinstance(version, str) and re.match(r"^[A-Za-z0-9_]+$", version) and hasattr(model, "zoo_version")):
        raise ck.fail("version", f"expected a version string such as '1.0', got {version!r}")
    if isinstance(weights, Mapping):
        weights = parse_weights(ck, dict(weights))
    if isinstance(requirements, Mapping):
        requirements = parse_requirements(ck, {"packages": [], "cpu": True, "gpu": True, **requirements})
    if isinstance(tags, str):
        tags = (tags,)
    return ZooModelInfo(
        name=name,
        version=version,
        description=description,
        source=source,
        license=license,
        size_bytes=size_bytes,
        tags=tuple(tags),
        requirements=requirements or Requirements(),
        weights=weights,
        model=_model_spec(model, model_cls, config),
        date_added=date_added or _dt.date.today().isoformat(),
        training_data=training_data,
        origin=origin,
    )


def register_zoo_model(
    name: str,
    model: Any,
    version: Optional[str] = None,
    description: str = "",
    tags: Iterable[str] = (),
    weights: Union[WeightsSpec, Mapping[str, Any], None] = None,
    requirements: Union[Requirements, Mapping[str, Any], None] = None,
    model_cls: Optional[type] = None,
    config: Optional[Mapping[str, Any]] = None,
    overwrite: bool = False,
    **metadata: Any,
) -> ZooModelInfo:
    """Registers a model of your own under ``name`` so that :func:`load_zoo_model` finds it.

    Args:
        name: the model's name (lowercase, digits, ``.``, ``_``, ``-``).
        model: one of

            - a model config (e.g. a ``TorchImageModelConfig``), built with
              the class its config class names in ``model_cls`` (or with
              ``model_cls``), or a dict of settings for ``model_cls``
              (default ``TorchImageModel``);
            - a :class:`~modelzoo.Model` subclass (built with ``config``);
            - a factory function: ``factory(**overrides) -> Model``;
            - a bundle: an object with ``load_model(**overrides) -> Model``
              (a :class:`~modelzoo.bundles.ModelBundle` is filed under its id).
        version: its version (default ``"1.0"``, a bundle's id); ``name@version``
            loads it. Registering a new version of a registered name keeps both.
        model_cls: the :class:`~modelzoo.Model` subclass that takes ``model``
            when it is a config or a dict (default: the class the config
            names in ``model_cls``; ``TorchImageModel`` for a dict).
        config: the settings of a :class:`~modelzoo.Model` subclass given as ``model``.
        weights: ``{"url", "sha256", "filename"[, "local_sources"]}`` fetched
            and verified like a manifest's (config models only).
        requirements: ``{"packages": [...], "cpu": bool, "gpu": bool}``.
        overwrite: replace a model of the same name (else that raises).
        **metadata: ``source``, ``license``, ``size_bytes``, ``training_data``, ``date_added``.

    Raises:
        ZooError: the name is taken and ``overwrite`` is False.
        ConfigError: an invalid config.

    Example::

        register_zoo_model("my-classifier", TorchImageModelConfig({...}), tags=["classification"])
        model = load_zoo_model("my-classifier")
    """
    info = make_zoo_model_info(
        name, model, version=version, description=description, tags=tags, weights=weights,
        requirements=requirements, model_cls=model_cls, config=config, **metadata,
    )
    registry.register(info, overwrite=overwrite)
    return info


def unregister_zoo_model(name: str) -> None:
    """Removes a model registered with :func:`register_zoo_model` (a manifest
    model is hidden).

    Raises:
        ModelNotFoundError: no model has that name.
    """
    registry.unregister(name)
