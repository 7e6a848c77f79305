"""``ModelBundle``: one frozen, content-addressed version of a Launch-style bundle.

A bundle is a record: its name, its flavor (how it runs), the two functions
(or the model) when this process holds them, its ``app_config``, schemas,
requirements and metadata. Its id is derived from that content, so the same
content always has the same id; a clone is a new bundle recording its parent.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import re
import types
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..loaders import LOADER_KINDS
from .calling import check_conventions
from .errors import BundleConfigError
from .flavors import CloudpickleArtifactFlavor, Flavor, flavor_to_dict
from .schemas import Schema

__all__ = ["ModelBundle", "INPUTS", "UNSET", "freeze", "thaw"]

#: what a bundle's ``predict_fn`` receives under ``apply_model``
INPUTS = (*LOADER_KINDS, "request")  # the core's loader kinds, and requests built from sample fields

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


#: "keep the current value" (so that ``None`` can clear a config explicitly)
UNSET: Any = _Unset()


def freeze(value: Any, what: str = "value") -> Any:
    """A read-only deep copy of JSON-like data (dicts become mappingproxies,
    lists tuples). Raises BundleConfigError for values JSON cannot hold."""
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise BundleConfigError(f"{what}: keys must be strings, got {k!r}")
            out[k] = freeze(v, f"{what}[{k!r}]")
        return types.MappingProxyType(out)
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v, f"{what}[{i}]") for i, v in enumerate(value))
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise BundleConfigError(f"{what} = {value!r:.80}: only JSON data (dict, list, str, number, bool, None) is allowed")


def thaw(value: Any) -> Any:
    """A mutable deep copy of :func:`freeze`'s output (what user functions get)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


@dataclasses.dataclass(frozen=True, eq=False)
class ModelBundle:
    """One immutable version of a model bundle.

    Build bundles with :class:`~modelzoo.bundles.LaunchClient`, or directly
    from callables::

        bundle = ModelBundle("doubler", load_predict_fn=lambda model: model,
                             model=lambda x: 2 * x, input="request")

    Attributes:
        name: the bundle's name; versions share it.
        flavor: how it runs (:mod:`modelzoo.bundles.flavors`).
        load_predict_fn, load_model_fn, model: the functions (or the model),
            when this process holds them; None for a bundle read from the
            store (its artifact is loaded on first use, see ``trust``).
        app_config: passed to both load functions when not None (read-only).
        request_schema, response_schema: pydantic model classes, enforced on every call.
        requirements: pip requirement lines (recorded).
        metadata: free-form JSON data; a clone adds ``__cloned_from_bundle_id``.
        created_at: ISO 8601 UTC time of creation.
        input: what ``predict_fn`` receives under ``apply_model``: ``"bytes"``
            (the image file's bytes, like Launch's ``url`` requests),
            ``"path"``, ``"array"`` (uint8 HWC RGB), ``"pil"``, or
            ``"request"`` (a dict built from sample fields, passed as keyword
            arguments).
        input_fields: for ``input="request"``: ``{argument: sample field}``.
        remote: arguments that only matter to a remote cluster (recorded).
        parent_id: the bundle this one was cloned from.
        artifact_sha256: the digest of the stored code (pickle or zip).
        id: derived from the content (``bun_`` + 24 hex digits).
    """

    name: str
    flavor: Flavor = dataclasses.field(default_factory=CloudpickleArtifactFlavor)
    load_predict_fn: Optional[Callable[..., Any]] = None
    load_model_fn: Optional[Callable[..., Any]] = None
    model: Any = None
    app_config: Optional[Mapping[str, Any]] = None
    request_schema: Optional[type] = None
    response_schema: Optional[type] = None
    requirements: Tuple[str, ...] = ()
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    created_at: str = ""
    input: str = "bytes"
    input_fields: Mapping[str, str] = dataclasses.field(default_factory=dict)
    remote: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    parent_id: Optional[str] = None
    artifact_sha256: str = ""
    schemas_json: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise BundleConfigError(
                f"Bundle name {self.name!r} must start with a letter or digit and hold only letters, digits, "
                "'.', '_' or '-'"
            )
        if self.input not in INPUTS:
            raise BundleConfigError(f"Bundle {self.name!r}: input must be one of {list(INPUTS)}, got {self.input!r}")
        set_("app_config", None if self.app_config is None else freeze(self.app_config, "app_config"))
        set_("metadata", freeze(dict(self.metadata), "metadata"))
        set_("input_fields", freeze(dict(self.input_fields), "input_fields"))
        set_("remote", freeze(dict(self.remote), "remote"))
        set_("requirements", tuple(str(r) for r in self.requirements))
        schemas = {k: Schema(c) for k, c in (("request", self.request_schema), ("response", self.response_schema)) if c is not None}
        if schemas or not self.schemas_json:
            set_("schemas_json", freeze({k: {"name": s.name, "json_schema": s.json_schema()} for k, s in schemas.items()}))
        if not self.created_at:
            set_("created_at", _now())
        is_artifact = self.flavor.flavor == "cloudpickle_artifact"
        if is_artifact and (self.load_predict_fn is not None or not self.artifact_sha256):
            check_conventions(self.name, self.load_predict_fn, self.load_model_fn, self.model, self.app_config)
            if not self.artifact_sha256:
                from .artifacts import pickle_callables

                set_("artifact_sha256", hashlib.sha256(pickle_callables(self)).hexdigest())
        if not self.id:
            set_("id", self.content_id())

    # -- content ---------------------------------------------------------------------------
    def content_id(self) -> str:
        """The id this bundle's content gives (equal to :attr:`id` unless the record was edited)."""
        return "bun_" + hashlib.sha256(self._content_json().encode()).hexdigest()[:24]

    def _content_json(self) -> str:
        content = {
            "name": self.name,
            "flavor": flavor_to_dict(self.flavor),
            "artifact_sha256": self.artifact_sha256,
            "app_config": thaw(self.app_config),
            "schemas": thaw(self.schemas_json),
            "requirements": list(self.requirements),
            "metadata": thaw(self.metadata),
            "input": self.input,
            "input_fields": thaw(self.input_fields),
            "remote": thaw(self.remote),
            "parent_id": self.parent_id,
        }
        return json.dumps(content, sort_keys=True, default=str)

    @property
    def has_schemas(self) -> bool:
        """Whether the bundle declares a request or a response schema."""
        return bool(self.schemas_json)

    @property
    def holds_code(self) -> bool:
        """Whether this object holds its functions and schemas (made in this
        process), so that running it unpickles nothing."""
        if self.flavor.flavor == "cloudpickle_artifact":
            return self.load_predict_fn is not None
        return not self.has_schemas or self.request_schema is not None or self.response_schema is not None

    def with_changes(self, app_config: Any = UNSET, metadata: Optional[Mapping[str, Any]] = None) -> "ModelBundle":
        """A new bundle (new id, new ``created_at``) with this one as its parent.

        Args:
            app_config: the clone's config; ``UNSET`` keeps this one's, None clears it.
            metadata: entries added to the clone's metadata.

        Raises:
            BundleConfigError: the functions do not take the new config (see
                :func:`~modelzoo.bundles.calling.check_conventions`).
        """
        new_config = self.app_config if app_config is UNSET else app_config
        if self.load_predict_fn is not None:
            check_conventions(self.name, self.load_predict_fn, self.load_model_fn, self.model, new_config)
        meta = {**thaw(self.metadata), **dict(metadata or {}), "__cloned_from_bundle_id": self.id}
        return dataclasses.replace(
            self, app_config=thaw(new_config), metadata=meta, created_at="", parent_id=self.id, id=""
        )

    # -- running ---------------------------------------------------------------------------
    def to_model(
        self,
        input: Optional[str] = None,
        input_fields: Optional[Mapping[str, str]] = None,
        output: str = "auto",
        trust: bool = False,
        validate: bool = True,
    ) -> Any:
        """This bundle as a :class:`modelzoo.Model` for ``apply_model`` and ``predict``.

        Args:
            input: overrides :attr:`input`.
            input_fields: overrides :attr:`input_fields`.
            output: ``"auto"`` (Labels stay Labels, Nucleus boxes become
                Detections, other JSON is stored as plain fields),
                ``"detections"`` (a list of Nucleus boxes, empty included, is
                always Detections) or ``"json"`` (store the response as is).
            trust: allow unpickling this bundle's stored code (needed for a
                pickled bundle this process did not create).
            validate: enforce the schemas (default True).

        Raises:
            UntrustedBundleError: its code is pickled and ``trust`` is False.
        """
        from .model import BundleModel

        return BundleModel(self, input=input, input_fields=input_fields, output=output, trust=trust, validate=validate)

    def load_model(self, **overrides: Any) -> Any:
        """The zoo's loader protocol: ``load_zoo_model(name, **overrides)`` calls
        ``bundle.load_model(**overrides)``; the overrides are :meth:`to_model`'s."""
        return self.to_model(**overrides)

    def zoo_record(self) -> Optional[Dict[str, Any]]:
        """The zoo's kept-registration protocol: a stored bundle is kept by its
        id (``load_bundle(bundle_id)``, its signature checked on each load); one
        that is not stored stays registered in this process only."""
        from .zoo_source import is_stored

        if not is_stored(self.id):
            return None
        return {"kind": "factory", "target": "modelzoo.bundles.zoo_source.load_bundle", "kwargs": {"bundle_id": self.id}}

    @property
    def zoo_version(self) -> str:
        """The version the zoo files this bundle under: its id."""
        return self.id

    @property
    def zoo_date(self) -> str:
        """When the zoo considers this version added (orders versions): its ``created_at``."""
        return self.created_at

    def __repr__(self) -> str:
        parent = f", parent_id={self.parent_id!r}" if self.parent_id else ""
        return f"ModelBundle(name={self.name!r}, id={self.id!r}, flavor={self.flavor.flavor!r}{parent})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ModelBundle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self) -> Dict[str, Any]:
        """The bundle as plain data (what the store keeps, functions excluded)."""
        return {**json.loads(self._content_json()), "id": self.id, "created_at": self.created_at}
