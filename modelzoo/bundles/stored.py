"""A stored bundle as a zoo manifest entry, so that another process (a
second interpreter, ``modelzoo serve``, a Ray worker) loads it by name::

    {"name": "doubler", "version": "1.0", ...,
     "model": {"type": "modelzoo.bundles.StoredBundleModel",
               "config": {"bundle": "doubler", "trust": true, "input": "request",
                          "input_fields": {"x": "x"}}}}

The settings are checked when the manifest is read (an unknown key names
the close match).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from ..config import Config
from ..errors import ConfigError
from ..models import ModelConfig
from .model import BundleModel

__all__ = ["StoredBundleModel", "StoredBundleConfig"]


@dataclasses.dataclass(init=False)
class StoredBundleConfig(ModelConfig):
    """Settings of :class:`StoredBundleModel`.

    Attributes:
        bundle: a stored bundle's name (its newest version) or id (``bun_...``).
        trust, input, input_fields, output, validate: as :meth:`ModelBundle.to_model`.
    """

    bundle: str = ""
    trust: bool = False
    input: Optional[str] = None
    input_fields: Optional[Dict[str, str]] = None
    output: str = "auto"
    validate_schemas: bool = True

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.bundle, str):
            raise ConfigError(f"StoredBundleConfig.bundle must be a stored bundle's name or id, got {self.bundle!r}")


class StoredBundleModel(BundleModel):
    """The stored bundle that :class:`StoredBundleConfig` names, as a model."""

    config_cls = StoredBundleConfig

    def __init__(self, config: Any = None):
        if isinstance(config, Config):
            config = config.to_dict()
        cfg = StoredBundleConfig(dict(config or {}))
        if not cfg.bundle:
            raise ConfigError("StoredBundleModel needs config 'bundle': a stored bundle's name or id (bun_...)")
        from .store import BundleStore

        store = BundleStore()
        bundle = store.get(cfg.bundle) if cfg.bundle.startswith("bun_") else store.latest(cfg.bundle)
        super().__init__(bundle, input=cfg.input, input_fields=cfg.input_fields, output=cfg.output,
                         trust=cfg.trust, validate=cfg.validate_schemas)
        self.config = cfg
