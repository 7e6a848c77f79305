"""Where zoo entries come from: the built-in manifests, ``MODELZOO_MANIFEST_PATHS``
and the ``modelzoo.models`` entry-point group of installed distributions.

A plugin declares, in its packaging metadata::

    [options.entry_points]
    modelzoo.models =
        my_models = my_package.zoo:manifests

The entry point may name a manifest path (str or ``pathlib.Path``: a ``.json``
file or a directory of them), a manifest dict, a :class:`ZooModelInfo` (see
:func:`modelzoo.zoo.make_zoo_model_info`), a list of these, or a callable
taking no arguments that returns any of them. A plugin that fails to load is
an error naming the distribution and the entry point: it is never skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Any, List, Mapping

from ..errors import ZooError
from .manifest import ManifestError, ZooModelInfo, load_manifest_file, parse_entry, parse_manifest

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_MANIFEST_PATHS",
    "builtin_manifest_dir",
    "manifest_files",
    "builtin_entries",
    "env_entries",
    "plugin_entries",
]

ENTRY_POINT_GROUP = "modelzoo.models"
ENV_MANIFEST_PATHS = "MODELZOO_MANIFEST_PATHS"


def builtin_manifest_dir() -> str:
    """The built-in manifests: ``modelzoo/zoo/manifests`` (a link to the
    repository's top-level ``manifests/``, installed as package data)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "manifests", here.parent.parent / "manifests"):
        if candidate.is_dir():
            return str(candidate)
    raise ZooError(f"The built-in zoo manifests are missing (looked in {here / 'manifests'}); reinstall modelzoo")


def manifest_files(path: str) -> List[str]:
    """The ``*.json`` files of a manifest path (a file, or a directory, not recursive), sorted."""
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".json"))
    if os.path.isfile(path):
        return [path]
    raise ZooError(f"Zoo manifest path {path!r} does not exist")


def builtin_entries() -> List[ZooModelInfo]:
    entries: List[ZooModelInfo] = []
    for f in manifest_files(builtin_manifest_dir()):
        entries.extend(load_manifest_file(f))
    return entries


def env_entries() -> List[ZooModelInfo]:
    """The entries of the manifest files and directories in ``$MODELZOO_MANIFEST_PATHS``."""
    entries: List[ZooModelInfo] = []
    for p in os.environ.get(ENV_MANIFEST_PATHS, "").split(os.pathsep):
        if not p.strip():
            continue
        try:
            files = manifest_files(p.strip())
        except ZooError:
            raise ZooError(f"{ENV_MANIFEST_PATHS} names {p!r}, which does not exist") from None
        for f in files:
            entries.extend(load_manifest_file(f))
    return entries


def _contributions(obj: Any, origin: str, depth: int = 0) -> List[ZooModelInfo]:
    if depth > 3:
        raise ZooError(f"{origin}: the entry point's value nests too deeply")
    if isinstance(obj, ZooModelInfo):
        return [obj]
    if isinstance(obj, (str, os.PathLike)):
        out: List[ZooModelInfo] = []
        for f in manifest_files(os.fspath(obj)):
            out.extend(load_manifest_file(f))
        return out
    if isinstance(obj, Mapping):
        if "models" in obj:
            return parse_manifest(obj, origin)
        return [parse_entry(obj, origin, 0)]
    if isinstance(obj, (list, tuple)):
        return [e for item in obj for e in _contributions(item, origin, depth + 1)]
    if callable(obj):
        return _contributions(obj(), origin, depth + 1)
    raise ZooError(
        f"{origin} gave a {type(obj).__name__}; expected a manifest path, a manifest dict, a ZooModelInfo, "
        "a list of them or a callable returning them"
    )


def plugin_entries(group: str = ENTRY_POINT_GROUP) -> List[ZooModelInfo]:
    """The entries contributed by installed distributions through ``group``."""
    entries: List[ZooModelInfo] = []
    for ep in sorted(importlib.metadata.entry_points(group=group), key=lambda e: (e.dist.name if e.dist else "", e.name)):
        dist = ep.dist.name if ep.dist is not None else "?"
        origin = f"plugin {dist} (entry point {ep.name} = {ep.value})"
        try:
            value = ep.load()
            entries.extend(_contributions(value, origin))
        except ManifestError:
            raise
        except Exception as e:
            raise ZooError(f"Zoo {origin} failed to load: {type(e).__name__}: {e}") from e
    return entries
