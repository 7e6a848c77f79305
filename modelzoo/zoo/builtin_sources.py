"""The zoo's own sources: manifests, plugins, the local zoo and this process's registrations.

See :mod:`modelzoo.zoo.sources` for the protocol. These four keep the
behaviour the zoo had before sources: manifests and plugins are read once
(until :func:`~modelzoo.zoo.reload_zoo`), the local zoo whenever it changed
on disk, and registrations replace any entry of their name.
"""

from __future__ import annotations

import threading
from typing import Any, List, Tuple

from .manifest import ZooModelInfo
from .sources import IndexedSource, ZooSource

__all__ = ["ManifestSource", "PluginSource", "LocalSource", "RegisteredSource"]


class ManifestSource(IndexedSource):
    """The built-in ``manifests/*.json`` and the files of ``$MODELZOO_MANIFEST_PATHS``."""

    name = "manifests"

    def read_entries(self) -> List[ZooModelInfo]:
        from .plugins import builtin_entries, env_entries

        return [*builtin_entries(), *env_entries()]


class PluginSource(IndexedSource):
    """The entries of installed distributions' ``modelzoo.models`` entry points."""

    name = "plugins"

    def read_entries(self) -> List[ZooModelInfo]:
        from .plugins import plugin_entries

        return plugin_entries()


class LocalSource(ZooSource):
    """Models kept on this machine (:mod:`modelzoo.zoo.local`): the
    ``repository/number`` zoo and the lasting registrations of
    :func:`~modelzoo.register_zoo_model`, read again whenever another
    process changed them."""

    name = "local"
    shadows = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._sig: Any = None
        self._entries: List[ZooModelInfo] = []

    def entries(self) -> List[ZooModelInfo]:
        from . import local, persist
        from .registry import validate_entry

        with self._lock:
            sig: Tuple[Any, ...] = local.signature()
            if sig != self._sig:
                entries = local.local_entries()
                for info in entries:
                    validate_entry(info)
                self._entries, self._sig = entries, sig
            return [*self._entries, *persist.entries()]

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """A kept registration is built once its record's signature checks out
        (nothing it names is imported before); a ``repository/number`` entry as any."""
        from . import persist
        from .build import build_entry

        if info.metadata.get("persisted"):
            persist.verify(info)
            info = persist.resolve_spec(info)
        return build_entry(info, pretrained=pretrained, **options)

    def reload(self) -> None:
        with self._lock:
            self._sig = None


class RegisteredSource(ZooSource):
    """Models registered in this process only (see :func:`~modelzoo.register_zoo_model`)."""

    name = "registered"
    shadows = True

    def entries(self) -> List[ZooModelInfo]:
        from .registry import registry

        return registry.registered_entries()
