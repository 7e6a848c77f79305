"""The model zoo: named, versioned models with their weights, classes and preprocessing.

Example::

    import modelzoo as mz

    mz.list_zoo_models(tags="classification")
    model = mz.load_zoo_model("mobilenet-v2-imagenet-torch")     # newest version
    model = mz.load_zoo_model("digits-cnn-torch@1.0", confidence_thresh=0.5)
    dataset.apply_model(model, label_field="predictions")

Names come from zoo sources (:mod:`modelzoo.zoo.sources`): the manifests
(``manifests/*.json``, ``MODELZOO_MANIFEST_PATHS``), plugins
(:mod:`modelzoo.zoo.plugins`), every torchvision builder x weights
(:mod:`modelzoo.zoo.torchvision_source`, ``torchvision/resnet50``),
FiftyOne-style remote sources (:mod:`modelzoo.zoo.remote`), the local zoo
(``repository/number`` models and the lasting registrations of
:func:`register_zoo_model`, :mod:`modelzoo.zoo.persist`), this process's
registrations, and bundles by name. Weights are cached under
``MODELZOO_HOME`` (:mod:`modelzoo.zoo.weights`); ``pretrained=False`` builds
any model without them.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

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
from .protocols import ModelLoader, RecordedLoader, VersionedLoader
from .registry import registry
from .requirements import check_device, check_requirements
from .sources import ZooSource, register_zoo_source
from .weights import ENV_HOME, ENV_OFFLINE, ENV_WEIGHTS_PATH, zoo_home

__all__ = [
    "ZooModelInfo",
    "WeightsSpec",
    "Requirements",
    "ModelSpec",
    "ManifestError",
    "list_zoo_models",
    "list_zoo_sources",
    "register_zoo_model_source",
    "list_zoo_model_sources",
    "delete_zoo_model_source",
    "register_zoo_source",
    "ZooSource",
    "ModelLoader",
    "RecordedLoader",
    "VersionedLoader",
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
    tags: Union[str, Sequence[str], None] = None,
    pattern: Optional[str] = None,
    versions: bool = False,
    source: Union[str, Sequence[str], None] = None,
) -> List[str]:
    """The names of the zoo's models, sorted. Imports no model library
    (torch, timm...): library catalogues are read from generated indexes.

    Args:
        tags: keep models that have all of these tags.
        pattern: keep names matching this glob (``"*-imagenet-*"``); without
            wildcards, names containing it.
        versions: list every ``name@version`` instead of names.
        source: keep models of this zoo source (or of any of these):
            ``"manifests"``, ``"plugins"``, ``"torchvision"``, ``"remote"``,
            ``"local"``, ``"registered"`` (:func:`list_zoo_sources` lists them).

    Raises:
        ZooError: an unknown source.
    """
    wanted = {tags} if isinstance(tags, str) else set(tags or ())
    sources = {source} if isinstance(source, str) else set(source or ())
    if sources:
        from .sources import zoo_source_names

        unknown = sorted(sources - set(zoo_source_names()))
        if unknown:
            raise ZooError(f"Unknown zoo source {unknown[0]!r}; the sources are {', '.join(zoo_source_names())}")
    if pattern is not None and not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    out = []
    for info in registry.all():
        if sources and info.zoo_source not in sources:
            continue
        if wanted and not wanted.issubset(info.tags):
            continue
        if pattern is not None and not fnmatch.fnmatchcase(info.name, pattern):
            continue
        out.append(info.key if versions else info.name)
    return sorted(set(out), key=out.index) if not versions else out


def list_zoo_sources() -> List[str]:
    """The names of the zoo's sources (see :mod:`modelzoo.zoo.sources`)."""
    from .sources import zoo_source_names

    return zoo_source_names()


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
    pretrained: bool = True,
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
        pretrained: False builds the architecture alone: random weights
            (seeded, the same in every process), the entry's classes and
            preprocessing; nothing is downloaded. For tests, fine-tuning and
            offline trials.
        **overrides: settings that replace the entry's config (``device="cpu"``,
            ``confidence_thresh=0.5``...). ``weights_path`` replaces the zoo's weights.

    Returns:
        a :class:`~modelzoo.Model`.

    Raises:
        ModelNotFoundError: unknown name (close matches are suggested).
        RequirementsError: missing packages, or a GPU-only model without a GPU.
        DownloadError: the weights cannot be fetched; names the file, the URL
            and the exact path to place it in.
        ChecksumError: the weights do not have the expected sha256.
        ConfigError: an unknown or invalid override.

    Example::

        model = load_zoo_model("mobilenet-v2-imagenet-torch", device="cpu")
        label = model.predict(image)
        untrained = load_zoo_model("torchvision/resnet18", pretrained=False)
    """
    from .sources import get_zoo_source

    info = registry.get(name)
    check_requirements(info, install=install_requirements)
    check_device(info, overrides.get("device"))
    source = get_zoo_source(info.zoo_source or "registered")
    model = source.load(info, pretrained=pretrained, download=download, progress=progress, **overrides)
    # how another process (a Ray replica) rebuilds this model
    return remember(model, Recipe.zoo(name, **overrides, **({} if pretrained else {"pretrained": False})))


def _source_of(info: ZooModelInfo) -> Any:
    from .sources import get_zoo_source

    return get_zoo_source(info.zoo_source or "registered")


NAME_LOADERS["zoo"] = load_zoo_model


def download_zoo_model(name: str, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
    """Makes the model's weights available on this machine and returns their path
    (None for a model without weights). A copy found in a local source by
    checksum is used without downloading, unless ``overwrite``. A model class
    with a ``zoo_post_download()`` hook (a Tungsten-style model's
    ``post_build``) has it run the first time, and again with ``overwrite``.
    A remote source's model runs its ``download_model``.

    Raises:
        DownloadError, ChecksumError: see :func:`load_zoo_model`.
    """
    info = registry.get(name)
    return _source_of(info).download(info, overwrite=overwrite, progress=progress)


def is_zoo_model_downloaded(name: str) -> bool:
    """Whether the model's verified weights are on this machine (in the cache or
    a local source). True for a model without weights."""
    info = registry.get(name)
    return bool(_source_of(info).is_downloaded(info))


def delete_zoo_model(name: str) -> bool:
    """Deletes the model's cached weights (files in local sources are never
    touched); a ``repository/number`` model of the local zoo is removed
    altogether (its entry and files). Returns whether anything was deleted."""
    info = registry.get(name)
    if _local.is_local(info):
        return _local.delete_local_entry(info)
    return bool(_source_of(info).delete(info))


def register_zoo_model_source(path_or_url: str, overwrite: bool = False) -> List[str]:
    """Registers a FiftyOne-style remote source of models (a folder, a GitHub
    ``user/repo`` or URL, a git URL or an archive URL) and returns its
    models' names. Registering is your explicit trust in its code: it is
    recorded, signed, and runs only while unchanged (see :mod:`modelzoo.zoo.remote`)."""
    from .remote import register_zoo_model_source as register

    return register(path_or_url, overwrite=overwrite)


def list_zoo_model_sources() -> List[str]:
    """The registered remote sources (the folders or URLs they were registered from)."""
    from .remote import list_zoo_model_sources as listing

    return listing()


def delete_zoo_model_source(path_or_url: str) -> None:
    """Deletes a registered remote source and its downloaded models."""
    from .remote import delete_zoo_model_source as delete

    delete(path_or_url)


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
    if isinstance(model, ModelLoader):
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
    if not isinstance(name, str) or not all(NAME_RE.match(part) for part in name.split("/")):
        raise ck.fail(
            "name", f"{name!r} must be lowercase letters, digits, '.', '_' or '-' (no '@'); a source's names may "
            "have a 'source/' prefix"
        )
    versioned = isinstance(model, VersionedLoader)
    if version is None:  # a bundle files itself under its id, ordered by its creation time
        version = (model.zoo_version if versioned else None) or "1.0"
        date_added = date_added or (model.zoo_date if versioned else None)
    numbered = isinstance(version, str) and all(p.isdigit() for p in version.split("."))
    if not numbered and not (isinstance(version, str) and re.match(r"^[A-Za-z0-9_]+$", version) and versioned):
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
    persist: Optional[bool] = None,
    **metadata: Any,
) -> ZooModelInfo:
    """Registers a model of your own under ``name`` so that :func:`load_zoo_model` finds it,
    in this process and, when it can be rebuilt elsewhere, in every later one.

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
              (a :class:`~modelzoo.bundles.ModelBundle` is filed under its id);
            - the import path of any of these (``"my_package.models:build"``).
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
        persist: keep the registration in the user's zoo
            (``$MODELZOO_HOME/_registered``, signed) so that other processes
            (``modelzoo serve NAME``, your next script) find it. None (the
            default): when the model can be rebuilt from a record (an import
            path, a config whose model class imports, a module-level class or
            factory, a bundle); otherwise it stays in this process and a
            warning says why (a lambda, a class in ``__main__``...). True:
            raise instead; False: this process only.
        **metadata: ``source``, ``license``, ``size_bytes``, ``training_data``, ``date_added``.

    Raises:
        ZooError: the name is taken and ``overwrite`` is False.
        ConfigError: an invalid config.

    Example::

        register_zoo_model("my-classifier", TorchImageModelConfig({...}), tags=["classification"])
        model = load_zoo_model("my-classifier")
    """
    import dataclasses
    import logging

    from . import persist as _persist

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ManifestChecker("registered", repr(name)).fail(
            "name", f"{name!r} must be lowercase letters, digits, '.', '_' or '-' (no '@', no '/')"
        )

    target = import_object(model.replace(":", "."), "model") if isinstance(model, str) else model
    info = make_zoo_model_info(
        name, target, version=version, description=description, tags=tags, weights=weights,
        requirements=requirements, model_cls=model_cls, config=config, **metadata,
    )
    recipe, why = (None, "persist=False was passed") if persist is False else _persist.recipe_for(model, model_cls, config)
    if recipe is None:
        if persist:
            raise ZooError(
                f"Zoo model {name!r} cannot be kept for other processes: {why}. Register a class, a factory "
                "or a config whose classes can be imported (a module-level definition in an importable module), "
                "or pass persist=False."
            )
        registry.register(info, overwrite=overwrite)
        if persist is None:
            logging.getLogger("modelzoo.zoo").warning(
                "Zoo model %r is registered in this process only: %s. Other processes (modelzoo serve, your next "
                "script) will not find it; register an importable class, factory or config to keep it.", name, why,
            )
        return dataclasses.replace(info, metadata={**info.metadata, "persisted": None, "in_process_only": why})
    registry.check_free(info, overwrite=overwrite)
    if overwrite:
        registry.drop_registered(name)
        _persist.delete(name)
    _persist.write(info, recipe)
    return registry.get(info.key)


def unregister_zoo_model(name: str) -> None:
    """Removes a model registered with :func:`register_zoo_model` (a manifest
    model is hidden).

    Raises:
        ModelNotFoundError: no model has that name.
    """
    registry.unregister(name)
