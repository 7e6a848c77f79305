"""The four bundle flavors, as frozen records (Launch's ``launch/model_bundle.py``
discriminated by ``flavor``). They hold plain data only: what each flavor
needs to run and what the remote cluster would have needed (recorded)."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple, Union

__all__ = [
    "CloudpickleArtifactFlavor",
    "ZipArtifactFlavor",
    "RunnableImageFlavor",
    "TritonEnhancedRunnableImageFlavor",
    "StreamingEnhancedRunnableImageFlavor",
    "RUNNABLE_FLAVORS",
    "Flavor",
    "flavor_from_dict",
    "flavor_to_dict",
]


@dataclasses.dataclass(frozen=True)
class CloudpickleArtifactFlavor:
    """A bundle made from Python callables, saved with cloudpickle.

    Attributes:
        framework: the recorded base image choice (``pytorch_image_tag``...).
        load_predict_fn / load_model_fn: their source text, for reading only.
    """

    flavor: str = "cloudpickle_artifact"
    framework: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    load_predict_fn: str = ""
    load_model_fn: str = ""


@dataclasses.dataclass(frozen=True)
class ZipArtifactFlavor:
    """A bundle made from directories of code, zipped.

    Attributes:
        load_predict_fn_module_path / load_model_fn_module_path: dotted
            paths of the two functions inside the zip.
        modules: the modules the zip holds (for messages).
    """

    load_predict_fn_module_path: str = ""
    load_model_fn_module_path: str = ""
    flavor: str = "zip_artifact"
    framework: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    modules: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunnableImageFlavor:
    """A bundle that is a command serving ``POST /predict`` and ``GET /readyz``.

    Locally the command runs as a process on a free loopback port (``PORT``
    in its environment, and ``$PORT`` in the command is replaced);
    ``repository`` and ``tag`` name the image a cluster would run (recorded).

    Attributes:
        readiness_initial_delay_seconds: how long the server may take to get ready.
        readiness_timeout_seconds: extra time allowed after that delay
            (a modelzoo addition; Launch's cluster retries forever).
    """

    repository: str = ""
    tag: str = ""
    command: Tuple[str, ...] = ()
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    protocol: str = "http"
    readiness_initial_delay_seconds: float = 120
    readiness_timeout_seconds: float = 60
    predict_route: str = "/predict"
    healthcheck_route: str = "/readyz"
    flavor: str = "runnable_image"


@dataclasses.dataclass(frozen=True)
class TritonEnhancedRunnableImageFlavor(RunnableImageFlavor):
    """A runnable image with NVIDIA's ``tritonserver`` started beside its command.

    Every ``triton_*`` field is recorded; locally, ``tritonserver`` must be on ``PATH``.
    """

    triton_model_repository: str = ""
    triton_model_replicas: Optional[Mapping[str, str]] = None
    triton_num_cpu: float = 1.0
    triton_commit_tag: str = ""
    triton_storage: Optional[str] = None
    triton_memory: Optional[str] = None
    triton_readiness_initial_delay_seconds: float = 300
    flavor: str = "triton_enhanced_runnable_image"


@dataclasses.dataclass(frozen=True)
class StreamingEnhancedRunnableImageFlavor(RunnableImageFlavor):
    """A runnable image that also streams answers (server-sent events) on
    ``streaming_predict_route``, served by ``streaming_command``.

    Locally the bundle runs ``command`` (or, without one, ``streaming_command``)
    and ``apply_model`` / ``predict`` send ``POST predict_route``; the
    streaming route is recorded, not used.
    """

    streaming_command: Tuple[str, ...] = ()
    streaming_predict_route: str = "/stream"
    flavor: str = "streaming_enhanced_runnable_image"


Flavor = Union[
    CloudpickleArtifactFlavor, ZipArtifactFlavor, RunnableImageFlavor, TritonEnhancedRunnableImageFlavor,
    StreamingEnhancedRunnableImageFlavor,
]

#: the flavors that run a command serving HTTP
RUNNABLE_FLAVORS = ("runnable_image", "triton_enhanced_runnable_image", "streaming_enhanced_runnable_image")

_BY_NAME = {
    next(f.default for f in dataclasses.fields(cls) if f.name == "flavor"): cls
    for cls in (CloudpickleArtifactFlavor, ZipArtifactFlavor, RunnableImageFlavor, TritonEnhancedRunnableImageFlavor,
                StreamingEnhancedRunnableImageFlavor)
}


def flavor_to_dict(flavor: Flavor) -> Dict[str, Any]:
    """The flavor as plain data (stored in the bundles collection)."""
    out = dataclasses.asdict(flavor)
    for k, v in out.items():
        if isinstance(v, tuple):
            out[k] = list(v)
    return out


def flavor_from_dict(d: Mapping[str, Any]) -> Flavor:
    """The inverse of :func:`flavor_to_dict`."""
    cls = _BY_NAME[d["flavor"]]
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
    return cls(**values)  # type: ignore[arg-type]
