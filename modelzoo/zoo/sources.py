"""Zoo sources: where the zoo's names come from, behind one small protocol.

A :class:`ZooSource` lists its entries (cheaply: no heavy import), describes
one by name, and loads one. The zoo's registry asks every source for its
entries and hands a load to the source the entry came from. The sources are
named in a table of lazy ``"module:attr"`` strings (as fsspec's
``known_implementations``), imported on first use, so the zoo core imports
none of them (nor their libraries) until it needs them:

=================  ==========================================================
``manifests``      the built-in ``manifests/*.json`` and ``MODELZOO_MANIFEST_PATHS``
``plugins``        the ``modelzoo.models`` entry points of installed packages
``torchvision``    every torchvision builder x weights (a generated index)
``remote``         FiftyOne-style remote sources the user registered
``local``          models persisted on this machine (``repository/number``, and
                   :func:`~modelzoo.register_zoo_model`'s lasting registrations)
``registered``     models registered in this process only
``timm``           every pretrained tag of timm (a generated index; ``modelzoo[timm]``)
``transformers``   Hugging Face vision models, ``hf/<repo>`` (``modelzoo[transformers]``)
``ultralytics``    Ultralytics YOLO by FiftyOne's names (``modelzoo[ultralytics]``, AGPL-3.0)
=================  ==========================================================

A source of your own::

    from modelzoo.zoo.sources import ZooSource, register_zoo_source

    class MySource(ZooSource):
        name = "mine"
        def entries(self):
            return [make_zoo_model_info("mine/a", ...)]

    register_zoo_source("mine", "my_package.zoo:MySource", err="pip install my-package")

or an entry point in the ``modelzoo.zoo_sources`` group
(``mine = my_package.zoo:MySource``).
"""

from __future__ import annotations

import abc
import importlib
import importlib.metadata
import threading
from typing import Any, Dict, Iterable, List, Optional, Union

from ..errors import ConfigError, ZooError
from .manifest import ZooModelInfo

__all__ = [
    "IndexedSource",
    "ZooSource",
    "SOURCE_ENTRY_POINT_GROUP",
    "known_sources",
    "register_zoo_source",
    "get_zoo_source",
    "zoo_source_names",
]

SOURCE_ENTRY_POINT_GROUP = "modelzoo.zoo_sources"


class ZooSource(abc.ABC):
    """A provider of zoo entries.

    Subclasses set :attr:`name` and implement :meth:`entries`; the defaults
    of :meth:`describe` and :meth:`load` fit a source whose entries are
    complete :class:`ZooModelInfo` records of models the zoo builds itself
    (manifest-style: a model class and its config, weights fetched and
    verified by the zoo).

    :meth:`entries` is called whenever the zoo lists or resolves a name: it
    must not import torch or any other heavy library (read a generated index
    instead), and may cache what it read.
    """

    #: the source's name (``list_zoo_models(source=...)``)
    name: str = ""
    #: whether its entries may replace another source's entry of the same
    #: name (the user's registrations may; library catalogues may not)
    shadows: bool = False

    @abc.abstractmethod
    def entries(self) -> Iterable[ZooModelInfo]:
        """Every entry (every version) of this source."""

    def describe(self, name: str) -> Optional[ZooModelInfo]:
        """An entry that :meth:`entries` does not list (a source that accepts
        open-ended names, such as any Hugging Face repository), or None."""
        return None

    def reload(self) -> None:
        """Forgets what was read so far (``modelzoo.zoo.reload_zoo()``)."""

    def weights_entry(self, info: ZooModelInfo) -> ZooModelInfo:
        """The entry whose cache holds ``info``'s weights: ``info`` itself,
        unless several names share one file (a library's aliases)."""
        return info

    def download(self, info: ZooModelInfo, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
        """Makes the entry's files available on this machine; returns their path (None: no files)."""
        from . import weights as _weights
        from .build import post_download

        target = self.weights_entry(info)
        path: Optional[str] = None
        if target.weights is not None and overwrite:
            path = _weights.download_weights(target, progress=progress, overwrite=True)
        elif target.weights is not None:
            path = _weights.resolve_weights(target, download=True, progress=progress)
        post_download(info, force=overwrite)
        return path

    def is_downloaded(self, info: ZooModelInfo) -> bool:
        """Whether the entry's files are on this machine (True when it has none)."""
        from . import weights as _weights

        target = self.weights_entry(info)
        return target.weights is None or _weights.find_weights(target) is not None

    def delete(self, info: ZooModelInfo) -> bool:
        """Deletes what the zoo downloaded for the entry; returns whether anything was."""
        from . import weights as _weights

        return _weights.delete_weights(self.weights_entry(info))

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """Builds the entry's :class:`~modelzoo.Model`.

        Args:
            info: an entry of this source.
            pretrained: with its weights (fetched and verified), or with
                random weights (seeded) and the entry's classes and preprocessing.
            **options: ``download``, ``progress`` and the config overrides of
                :func:`~modelzoo.load_zoo_model`.
        """
        from .build import build_entry

        return build_entry(info, pretrained=pretrained, **options)

    def __repr__(self) -> str:
        return f"<zoo source {self.name!r} ({type(self).__module__}.{type(self).__qualname__})>"


class IndexedSource(ZooSource):
    """A source whose entries are read once and kept (a generated index
    shipped with the package, manifest files, entry points):
    :meth:`read_entries` reads them once (under a lock, however many threads
    ask), :meth:`reload` forgets them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Optional[List[ZooModelInfo]] = None

    @abc.abstractmethod
    def read_entries(self) -> List[ZooModelInfo]:
        """Every entry, read from the index (called once until :meth:`reload`)."""

    def entries(self) -> List[ZooModelInfo]:
        with self._lock:
            if self._entries is None:
                self._entries = self.read_entries()
            return self._entries

    def reload(self) -> None:
        with self._lock:
            self._entries = None


#: name -> {"class": "module:attr", "err": install hint}; imported on first use
known_sources: Dict[str, Dict[str, str]] = {
    "manifests": {"class": "modelzoo.zoo.builtin_sources:ManifestSource"},
    "plugins": {"class": "modelzoo.zoo.builtin_sources:PluginSource"},
    "torchvision": {"class": "modelzoo.zoo.torchvision_source:TorchvisionSource"},
    "remote": {"class": "modelzoo.zoo.remote:RemoteSources"},
    "local": {"class": "modelzoo.zoo.builtin_sources:LocalSource"},
    "registered": {"class": "modelzoo.zoo.builtin_sources:RegisteredSource"},
    # the libraries' sources: generated indexes, the library imported only to load a model
    "timm": {"class": "modelzoo.zoo.timm_source:TimmSource", "err": "pip install 'modelzoo[timm]'"},
    "transformers": {"class": "modelzoo.zoo.hf_source:TransformersSource", "err": "pip install 'modelzoo[transformers]'"},
    "ultralytics": {"class": "modelzoo.zoo.ultralytics_source:UltralyticsSource", "err": "pip install 'modelzoo[ultralytics]'"},
    # resolved by name on lookup, never listed (its records are in the database)
    "bundles": {"class": "modelzoo.bundles.zoo_source:BundleSource", "lists": "no"},
}

_lock = threading.RLock()
_instances: Dict[str, ZooSource] = {}
_entry_points_read = False


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    for ep in importlib.metadata.entry_points(group=SOURCE_ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        if ep.name in known_sources:
            raise ZooError(
                f"Zoo source {ep.name!r} of {dist} (entry point {ep.value}) is already defined by "
                f"{known_sources[ep.name]['class']}; the plugin must choose another name"
            )
        known_sources[ep.name] = {"class": ep.value, "err": f"the zoo source of {dist} failed to import"}


def register_zoo_source(
    name: str, target: Union[str, type, ZooSource], err: Optional[str] = None, overwrite: bool = False
) -> None:
    """Adds a zoo source.

    Args:
        name: the source's name (``list_zoo_models(source=name)``).
        target: ``"module:attr"`` (imported on first use), a :class:`ZooSource`
            subclass, or an instance.
        err: the hint shown when importing ``target`` fails (``"pip install x"``).
        overwrite: replace a source of that name (else that raises).

    Raises:
        ZooError: the name is taken and ``overwrite`` is False.
    """
    if not isinstance(name, str) or not name or "/" in name or "@" in name:
        raise ConfigError(f"A zoo source name must be a non-empty string without '/' or '@', got {name!r}")
    with _lock:
        _read_entry_points()
        if name in known_sources and not overwrite:
            raise ZooError(
                f"Zoo source {name!r} already exists ({known_sources[name]['class']}); pass overwrite=True to replace it"
            )
        _instances.pop(name, None)
        if isinstance(target, ZooSource):
            _instances[name] = target
            known_sources[name] = {"class": f"{type(target).__module__}:{type(target).__qualname__}"}
        elif isinstance(target, type) and issubclass(target, ZooSource):
            known_sources[name] = {"class": f"{target.__module__}:{target.__qualname__}"}
            _instances[name] = _instantiate(name, target)
        elif isinstance(target, str) and ":" in target:
            known_sources[name] = {"class": target, **({"err": err} if err else {})}
        else:
            raise ConfigError(f"register_zoo_source({name!r}, ...): expected 'module:attr', a ZooSource class or instance, got {target!r}")
        from .registry import registry

        registry.reload()


def unregister_zoo_source(name: str) -> None:
    """Removes a zoo source added with :func:`register_zoo_source`."""
    with _lock:
        if name not in known_sources:
            raise ZooError(f"Unknown zoo source {name!r}; the sources are {', '.join(zoo_source_names())}")
        del known_sources[name]
        _instances.pop(name, None)
        from .registry import registry

        registry.reload()


def _instantiate(name: str, cls: Any) -> ZooSource:
    obj = cls() if isinstance(cls, type) else cls
    if not isinstance(obj, ZooSource):
        raise ZooError(f"Zoo source {name!r} is {obj!r}, not a modelzoo.zoo.sources.ZooSource")
    if not obj.name:
        obj.name = name
    return obj


def get_zoo_source(name: str) -> ZooSource:
    """The source named ``name``, imported on first use.

    Raises:
        ZooError: unknown name (listing the sources), or its module failed to
            import (with the source's install hint).
    """
    with _lock:
        _read_entry_points()
        source = _instances.get(name)
        if source is not None:
            return source
        spec = known_sources.get(name)
        if spec is None:
            from ..errors import did_you_mean

            names = zoo_source_names()
            raise ZooError(f"Unknown zoo source {name!r}." + did_you_mean(name, names) + f" The sources are: {', '.join(names)}")
        module_name, _, attr = spec["class"].partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as e:
            hint = spec.get("err") or f"cannot import {spec['class']}"
            raise ZooError(f"Zoo source {name!r}: {hint} ({type(e).__name__}: {e})") from e
        source = _instantiate(name, obj)
        _instances[name] = source
        return source


def listing_source_names() -> List[str]:
    """The sources whose entries are listed (those marked ``"lists": "no"``
    only resolve names on lookup)."""
    with _lock:
        _read_entry_points()
        return [n for n, spec in known_sources.items() if spec.get("lists") != "no"]


def reload_sources() -> None:
    """Asks every source imported so far to forget what it read."""
    with _lock:
        instances = list(_instances.values())
    for source in instances:
        source.reload()


def zoo_source_names() -> List[str]:
    """The names of every zoo source, in the order the zoo reads them."""
    with _lock:
        _read_entry_points()
        return list(known_sources)
