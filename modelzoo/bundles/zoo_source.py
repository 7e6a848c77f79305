"""Bundles as zoo models by their own names (the ``bundles`` zoo source).

A bundle made with :class:`~modelzoo.bundles.LaunchClient` is a zoo model
under its name: ``load_zoo_model("my-bundle")`` loads its newest version,
``"my-bundle@<id>"`` that exact one. Bundles live in the database, so they
are resolved when a name is looked up, never listed: listing the zoo stays
instant and starts no database (``list_model_bundles_v2`` lists them).
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from ..errors import ZooError
from ..zoo.manifest import ModelSpec, ZooModelInfo
from ..zoo.sources import ZooSource
from .errors import BundleNotFoundError
from .store import BundleStore, bundles_dir, is_live

__all__ = ["BundleSource", "is_stored", "load_bundle"]


def load_bundle(bundle_id: str, **overrides: Any) -> Any:
    """The bundle of that id as a :class:`~modelzoo.Model` (``to_model(**overrides)``)."""
    return BundleStore().get(bundle_id).load_model(**overrides)


def is_stored(bundle_id: str) -> bool:
    """Whether the store holds a bundle of this id (so another process can
    load it by id); no database query when no bundle was ever saved here."""
    if is_live(bundle_id):
        return True
    if not os.path.isdir(bundles_dir()):
        return False
    try:
        BundleStore().get(bundle_id)
    except BundleNotFoundError:
        return False
    return True


class BundleSource(ZooSource):
    """Resolves a name to the newest bundle of that name (``name@<id>``: that bundle)."""

    name = "bundles"

    def entries(self) -> List[ZooModelInfo]:
        return []

    def describe(self, name: str) -> Optional[ZooModelInfo]:
        base, _, bundle_id = name.partition("@")
        if not os.path.isdir(bundles_dir()):  # no bundle was ever saved here: no database query
            return None
        try:
            bundle = BundleStore().get(bundle_id) if bundle_id else BundleStore().latest(base)
        except BundleNotFoundError:
            return None
        if bundle.name != base:
            return None
        return ZooModelInfo(
            name=bundle.name,
            version=bundle.id,
            description=f"model bundle {bundle.name!r} ({bundle.flavor.flavor})",
            tags=("bundle",),
            model=ModelSpec(type=load_bundle, kind="factory"),
            date_added=str(bundle.created_at),
            origin=f"bundle {bundle.id}",
            zoo_source=self.name,
            metadata={"bundle_id": bundle.id, "prevalidated": True},
        )

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        if not pretrained:
            raise ZooError(
                f"Zoo model {info.key} is a model bundle, whose code builds its own model: it has no "
                "architecture-only form (pretrained=False)"
            )
        options.pop("download", None)
        options.pop("progress", None)
        return load_bundle(info.metadata["bundle_id"], **options)
