"""Errors raised by VESSL-style models. All derive from :class:`modelzoo.ModelzooError`.

The registration errors are configuration errors (raised before anything is
stored); :class:`UntrustedModelError` is raised at load, before anything is
unpickled.
"""

from __future__ import annotations

from ..errors import ConfigError, ModelzooError, UntrustedError

__all__ = ["VesslError", "InvalidParamsError", "RunnerDefinitionError", "ArtifactError", "UntrustedModelError"]


class VesslError(ModelzooError):
    """Root of the VESSL-style errors."""


class InvalidParamsError(VesslError, ConfigError):
    """``register_model`` / ``register_torch_model`` got arguments it cannot
    store (VESSL's name for the same refusals)."""


class RunnerDefinitionError(InvalidParamsError):
    """A runner class breaks RunnerBase's rules (``predict`` missing,
    ``save_model`` without ``load_model``, a hook with the wrong arguments)."""


class ArtifactError(InvalidParamsError):
    """An artifact path is missing, uses a glob other than one trailing ``*``,
    or would be stored outside the model's directory."""


class UntrustedModelError(VesslError, ConfigError, UntrustedError):
    """Loading the model would unpickle data that cannot be shown to come from
    this user's own registration (see ``docs/vessl.md``, "Trust")."""
