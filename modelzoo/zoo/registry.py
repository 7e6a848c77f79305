"""The registry: every zoo entry by name and version, and building models from entries.

Entries come from the zoo sources (:mod:`modelzoo.zoo.sources`): the
manifests, plugins and library catalogues are read once, on first use
(:meth:`ZooRegistry.reload` reads them again), and two of them defining the
same ``name@version`` is an error naming both; the local zoo and this
process's registrations are read on every lookup and replace entries of
their names; a registration under a taken name raises unless ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import threading
from typing import Any, Dict, List, Mapping, Optional, Set

from ..errors import ConfigError, ModelNotFoundError, ZooError, check_keys
from ..imports import import_object
from .manifest import ManifestError, ZooModelInfo, parse_version, split_numbered, validate_model_config

__all__ = ["ZooRegistry", "registry", "build_model", "expand_placeholders", "version_key", "validate_entry"]


def _close_names(name: str, names: List[str]) -> List[str]:
    """Close matches by spelling, plus names that contain the query once
    punctuation is ignored (``resnet-50`` -> ``resnet50-imagenet-torch``).
    One clear misspelling gives just that name; the zoo's own names (no
    ``source/`` prefix) come before the thousands of library names."""

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    import difflib

    spelled = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if spelled and difflib.SequenceMatcher(None, name, spelled[0]).ratio() >= 0.9:
        return spelled[:1]
    q = norm(name.split("@")[0])
    containing = sorted((n for n in names if q and q in norm(n)), key=lambda n: ("/" in n, len(n), n))
    own = [c for c in containing if "/" not in c]
    out: List[str] = []
    for n in [*[c for c in own if norm(c).startswith(q)][:2], *spelled, *own, *containing]:
        if n not in out:
            out.append(n)
    return out[:5]


def _name_key(name: str) -> Any:
    """Sorts names, ``repo/2`` before ``repo/10``."""
    parts = split_numbered(name)
    return (parts[0], 1, parts[1]) if parts else (name, 0, 0)


def _not_found(name: str, names: List[str]) -> ModelNotFoundError:
    parts = split_numbered(name.split("@")[0])
    if parts is not None:
        repo_names = sorted((n for n in names if (split_numbered(n) or ("",))[0] == parts[0]), key=_name_key)
        if repo_names:  # the repository exists: list its numbers
            err = ModelNotFoundError(name, names)
            err.args = (
                f"Unknown zoo model {name!r}: repository {parts[0]!r} has "
                + ", ".join(map(repr, repo_names)) + f" (the newest: {repo_names[-1]!r}, or {parts[0]!r}).",
            )
            return err
    err = ModelNotFoundError(name, names)
    close = _close_names(name, names)
    if close:
        hint = f" Did you mean {close[0]!r}?" if len(close) == 1 else " Did you mean one of " + ", ".join(map(repr, close)) + "?"
        msg = f"Unknown zoo model {name!r}." + hint + " modelzoo.list_zoo_models() lists them."
        err.args = (msg,)
    return err


class ZooRegistry:
    """All zoo entries, by name then version, gathered from the zoo sources
    (:mod:`modelzoo.zoo.sources`). Thread-safe.

    Library and manifest sources are read once (until :meth:`reload`); two of
    them defining the same ``name@version`` is an error naming both. The
    sources that shadow (the local zoo, this process's registrations) are
    asked on every lookup and replace any entry of their names.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._manifest: Optional[Dict[str, Dict[str, ZooModelInfo]]] = None
        self._registered: Dict[str, Dict[str, ZooModelInfo]] = {}
        self._hidden: Set[str] = set()

    # -- loading --------------------------------------------------------------------------
    def reload(self) -> None:
        """Forgets what the sources gave so far; they are read again on next use
        (registrations are kept)."""
        from .sources import reload_sources

        with self._lock:
            self._manifest = None
            reload_sources()

    def _load(self) -> Dict[str, Dict[str, ZooModelInfo]]:
        from .sources import get_zoo_source, listing_source_names

        with self._lock:
            if self._manifest is None:
                table: Dict[str, Dict[str, ZooModelInfo]] = {}
                for source_name in listing_source_names():
                    source = get_zoo_source(source_name)
                    if source.shadows:
                        continue
                    for info in source.entries():
                        if not info.zoo_source:
                            info = dataclasses.replace(info, zoo_source=source_name)
                        other = table.get(info.name, {}).get(info.version)
                        if other is not None:
                            raise ManifestError(
                                info.origin,
                                f"{info.key} is already defined in {other.origin}; rename one of them or bump its version",
                                entry=repr(info.name), key="name",
                            )
                        table.setdefault(info.name, {})[info.version] = info
                for versions in table.values():
                    for info in versions.values():
                        validate_entry(info)
                self._manifest = table
            return self._manifest

    def _table(self) -> Dict[str, Dict[str, ZooModelInfo]]:
        from .sources import get_zoo_source, listing_source_names

        manifest = self._load()
        table = {k: v for k, v in manifest.items() if k not in self._hidden}
        for source_name in listing_source_names():
            source = get_zoo_source(source_name)
            if not source.shadows:
                continue
            shadowing: Dict[str, Dict[str, ZooModelInfo]] = {}
            for info in source.entries():
                if not info.zoo_source:
                    info = dataclasses.replace(info, zoo_source=source_name)
                shadowing.setdefault(info.name, {})[info.version] = info
            table.update(shadowing)
        return table

    # -- queries --------------------------------------------------------------------------
    def all(self) -> List[ZooModelInfo]:
        """Every entry, every version, sorted by name then version."""
        with self._lock:
            table = self._table()
        return [i for n in sorted(table, key=_name_key) for i in sorted(table[n].values(), key=version_key)]

    def names(self) -> List[str]:
        with self._lock:
            return sorted(self._table())

    def registered_entries(self) -> List[ZooModelInfo]:
        """The entries registered in this process."""
        with self._lock:
            return [info for versions in self._registered.values() for info in versions.values()]

    def _described(self, name: str) -> Optional[ZooModelInfo]:
        """An entry that a source accepts without listing it (open-ended names)."""
        from .sources import get_zoo_source, zoo_source_names

        for source_name in zoo_source_names():
            info = get_zoo_source(source_name).describe(name)
            if info is not None:
                return info if info.zoo_source else dataclasses.replace(info, zoo_source=source_name)
        return None

    def get(self, name: str) -> ZooModelInfo:
        """The entry for ``"name"`` (newest version) or ``"name@version"``; a
        repository of the local zoo by itself (``"repo"``) is its newest number.
        Names are matched exactly, then ignoring case (``torchvision/resnet50.imagenet1k_v2``).

        Raises:
            ModelNotFoundError: with the close matches.
        """
        if not isinstance(name, str):
            raise ZooError(f"A zoo model name must be a string, got {type(name).__name__}")
        base, _, version = name.partition("@")
        with self._lock:
            table = self._table()
        versions = table.get(base)
        if not versions:
            folded = [n for n in table if n.lower() == base.lower()]
            if len(folded) == 1:
                base = folded[0]
                versions = table[base]
        if not versions and not version:
            numbered = [n for n in table if (split_numbered(n) or ("",))[0] == base]
            if numbered:
                versions = table[max(numbered, key=_name_key)]
        if not versions:
            described = self._described(name)
            if described is not None:
                return described
            raise _not_found(name, sorted(table))
        if not version:
            return max(versions.values(), key=version_key)
        if version not in versions:
            keys = [f"{base}@{i.version}" for i in sorted(versions.values(), key=version_key)]
            raise ModelNotFoundError(name, keys)
        return versions[version]

    # -- registration ---------------------------------------------------------------------
    def check_free(self, info: ZooModelInfo, overwrite: bool = False) -> None:
        """Raises unless ``info`` may be registered: a registered name may gain
        versions (bundle versions); the same ``name@version``, or another
        source's name, is taken (unless ``overwrite``).

        Raises:
            ZooError: the name is taken.
        """
        with self._lock:
            table = self._table()
            mine = {i.name for i in self.registered_entries()} | {
                i.name for i in table.get(info.name, {}).values() if i.metadata.get("persisted")
            }
            taken = info.name in table and (info.name not in mine or info.version in table[info.name])
            if taken and not overwrite:
                origins = sorted({i.origin for i in table[info.name].values()})
                raise ZooError(
                    f"Zoo model {info.name!r} is already registered (from {', '.join(origins)}). "
                    "Pass overwrite=True to replace it, or choose another name."
                )

    def register(self, info: ZooModelInfo, overwrite: bool = False) -> None:
        with self._lock:
            self.check_free(info, overwrite)
            if overwrite or info.name not in self._registered:
                self._registered[info.name] = {}
            self._registered[info.name][info.version] = info
            self._hidden.discard(info.name)

    def drop_registered(self, name: str) -> None:
        """Forgets this process's registrations of ``name`` (kept ones stay)."""
        with self._lock:
            self._registered.pop(name, None)

    def unregister(self, name: str) -> None:
        """Removes a registered model, or hides a manifest model (until a model
        is registered under its name again).

        Raises:
            ModelNotFoundError: no model has that name.
        """
        from . import persist

        with self._lock:
            kept = persist.delete(name)
            if name in self._registered:
                del self._registered[name]
                return
            if kept:
                return
            table = self._table()
            if name not in table:
                raise _not_found(name, sorted(table))
            self._hidden.add(name)


registry = ZooRegistry()


def version_key(info: ZooModelInfo) -> Any:
    """Orders versions: numbers (``"1.10"``) by value; ids (a bundle's) by
    ``date_added``, after the numbered ones."""
    if all(p.isdigit() for p in str(info.version).split(".")):
        return (0, parse_version(info.version), "")
    return (1, (), info.date_added or "")


def validate_entry(info: ZooModelInfo) -> None:
    """Validates an entry's model config now, unless its source vouches for it
    (a generated catalogue, checked by its own test; a registration, checked
    when it was made and never imported before its signature is) or its packages are
    missing (then :func:`~modelzoo.zoo.requirements.check_requirements`
    reports that at load)."""
    from .requirements import missing_packages

    if info.metadata.get("prevalidated"):
        return
    if info.model.kind != "class" or missing_packages(info.requirements.packages):
        return
    expanded = info if info.model.config is None else _with_config(info, expand_placeholders(info.model.config, info))
    validate_model_config(expanded)


def _with_config(info: ZooModelInfo, config: Mapping[str, Any]) -> ZooModelInfo:
    return dataclasses.replace(info, model=dataclasses.replace(info.model, config=dict(config)))


# -- placeholders ---------------------------------------------------------------------------


def _package_dir(name: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise ConfigError(f"Cannot resolve '{{package:{name}}}': package {name!r} is not installed")
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.dirname(spec.origin or "")


_PLACEHOLDER = re.compile(r"\{(eta_resources|manifest_dir|package:[A-Za-z0-9_.]+)\}")


def expand_placeholders(value: Any, info: ZooModelInfo) -> Any:
    """Expands, in every string of a config: ``{eta_resources}`` (ETA's label
    files), ``{manifest_dir}`` (the directory of the entry's manifest) and
    ``{package:NAME}`` (an installed package's directory)."""
    if isinstance(value, str):
        def sub(m: "re.Match[str]") -> str:
            key = m.group(1)
            if key == "eta_resources":
                return os.path.join(_package_dir("eta"), "resources")
            if key == "manifest_dir":
                if info.manifest_dir is None:
                    raise ConfigError(f"Zoo model {info.key}: '{{manifest_dir}}' is only valid in a manifest file")
                return info.manifest_dir
            return _package_dir(key[len("package:"):])

        return _PLACEHOLDER.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: expand_placeholders(v, info) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_placeholders(v, info) for v in value]
    return value


# -- building -------------------------------------------------------------------------------


def _check_model(obj: Any, info: ZooModelInfo) -> Any:
    from ..models import Model

    if not isinstance(obj, Model):
        raise ZooError(f"Zoo model {info.key}: {info.model.type!r} returned {type(obj).__name__}, not a modelzoo.Model")
    return obj


def build_model(info: ZooModelInfo, weights_path: Optional[str] = None, **overrides: Any) -> Any:
    """Builds the entry's model. ``overrides`` replace config settings (unknown
    ones are errors with suggestions); ``weights_path`` is set in the config
    when given and not overridden.

    Raises:
        ConfigError: a bad setting.
    """
    spec = info.model
    if spec.kind == "factory":
        return _check_model(spec.type(**overrides), info)
    if spec.kind == "loader":
        return _check_model(spec.type.load_model(**overrides), info)
    cls = spec.type
    if isinstance(cls, str):
        cls = import_object(cls, "model.type")
    config: Dict[str, Any] = dict(expand_placeholders(dict(spec.config or {}), info))
    from ..models import Model

    if not (isinstance(cls, type) and issubclass(cls, Model)):
        if not callable(cls):
            raise ConfigError(f"Zoo model {info.key}: model.type {spec.type!r} is neither a Model subclass nor a factory")
        if weights_path is not None:
            config["weights_path"] = weights_path
        return _check_model(cls(**{**config, **overrides}), info)  # a factory named by its import path
    if weights_path is not None:
        config["weights_path"] = weights_path
    config.update(overrides)
    config_cls = getattr(cls, "config_cls", None)
    if config_cls is not None:
        import dataclasses

        if dataclasses.is_dataclass(config_cls):
            fields = sorted(f.name for f in dataclasses.fields(config_cls))
            check_keys(overrides, fields, cls.__name__, where=f"load_zoo_model({info.key!r}): ", kind="setting")
        return _check_model(cls(config_cls(config)), info)
    return _check_model(cls(config), info)
