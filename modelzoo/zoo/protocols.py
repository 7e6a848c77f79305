"""What the zoo reads from an object registered as a model, as typed protocols.

``register_zoo_model(name, obj)`` takes a config, a :class:`~modelzoo.Model`
subclass, a factory, or an object that loads its own model (a model bundle).
The zoo never probes such an object for attributes it happens to have: it
asks whether the object is a :class:`ModelLoader` (and a
:class:`VersionedLoader`, a :class:`RecordedLoader`), the protocols below, which a class satisfies by
defining their members (no base class to inherit). A model class's
download hook is declared on :class:`~modelzoo.Model` itself
(``Model.zoo_post_download``).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol, runtime_checkable

__all__ = ["ModelLoader", "VersionedLoader", "RecordedLoader"]


@runtime_checkable
class ModelLoader(Protocol):
    """An object that builds its model: registered, it becomes a ``"loader"``
    entry, and ``load_zoo_model(name, **overrides)`` returns
    ``obj.load_model(**overrides)``."""

    def load_model(self, **overrides: Any) -> Any:
        """The model (a :class:`~modelzoo.Model`), built with ``overrides``."""
        ...


@runtime_checkable
class VersionedLoader(ModelLoader, Protocol):
    """A loader that names its own zoo version (a model bundle: its id,
    ordered by its ``created_at``); ``register_zoo_model`` files it under
    that version unless the caller gives one."""

    @property
    def zoo_version(self) -> str:
        """The version the zoo files it under (letters, digits, ``_``)."""
        ...

    @property
    def zoo_date(self) -> str:
        """When this version was made (ISO 8601): orders its versions."""
        ...


@runtime_checkable
class RecordedLoader(ModelLoader, Protocol):
    """A loader that says how ``register_zoo_model`` keeps it for other
    processes (a model bundle: by its stored id)."""

    def zoo_record(self) -> Optional[Mapping[str, Any]]:
        """The kept registration's JSON recipe, ``{"kind": "factory", "target":
        "<module>.<function>", "kwargs": {...}}`` (the function returns the
        model), or None when it can be rebuilt in this process only (a
        bundle that is not stored)."""
        ...
