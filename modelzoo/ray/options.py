"""``ray_options``: what a Ray run may be told, and the resources it asks for.

Everything here is plain Python (no Ray import): the options are checked
before Ray starts, and :func:`plan_resources` sizes the replicas from the
cluster's resources (``ray.cluster_resources()``) so that no default can
deadlock a small machine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Sequence

from ..db import ENV_URI, redact_uri
from ..errors import ConfigError, DatabaseError, check_keys

__all__ = ["RayOptions", "ResourcePlan", "plan_resources", "uri_is_loopback", "check_database_reach"]


@dataclass(frozen=True)
class RayOptions:
    """The ``ray_options`` of a Ray run; checked when made.

    Attributes:
        address: the cluster to use (``ray.init(address)``; default
            ``$RAY_ADDRESS``, else a local Ray started and stopped by the run).
            Ignored when Ray is already initialised in this process.
        num_replicas: model replicas (Ray actors, each building the model
            once). Default: one per GPU when replicas get GPUs, else one per
            4 CPUs (at least 1).
        num_cpus: CPUs per replica (default: half the cluster's CPUs shared
            among the replicas, at most 2, so the other half decodes).
        num_gpus: GPUs per replica (default: 1 when the cluster has GPUs, else 0).
        batch_size: inputs per model call (the same as ``batch_size=``; give one).
        decode_cpus: CPUs per decoding task (default: 1, or half the
            cluster's CPUs when that is less).
        shard_size: samples per read shard (one decoding task each; default 512).
        database_uri: the MongoDB URI the workers use (default: the driver's;
            set it when the workers reach the server by another address).
    """

    address: Optional[str] = None
    num_replicas: Optional[int] = None
    num_cpus: Optional[float] = None
    num_gpus: Optional[float] = None
    batch_size: Optional[int] = None
    decode_cpus: Optional[float] = None
    shard_size: int = 512
    database_uri: Optional[str] = None

    def __post_init__(self) -> None:
        for name in ("num_replicas", "batch_size", "shard_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"ray_options[{name!r}] must be a positive integer, got {value!r}")
        for name in ("num_cpus", "num_gpus", "decode_cpus"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ConfigError(f"ray_options[{name!r}] must be a number >= 0, got {value!r}")
        if self.num_cpus == 0 and not self.num_gpus:
            raise ConfigError("ray_options['num_cpus'] is 0 and num_gpus is 0: a replica needs some resource")
        if self.decode_cpus == 0:
            raise ConfigError("ray_options['decode_cpus'] must be > 0 (decoding runs in CPU tasks)")
        for name in ("address", "database_uri"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"ray_options[{name!r}] must be a non-empty string, got {value!r}")

    @classmethod
    def from_mapping(cls, options: Optional[Mapping[str, Any]]) -> "RayOptions":
        """Checks ``options`` (unknown keys raise, listing the valid ones)."""
        if options is None:
            return cls()
        if isinstance(options, RayOptions):
            return options
        if not isinstance(options, Mapping):
            raise ConfigError(f"ray_options must be a dict, got {type(options).__name__}")
        check_keys(options, [f.name for f in dataclasses.fields(cls)], "ray_options", kind="key")
        return cls(**dict(options))


@dataclass(frozen=True)
class ResourcePlan:
    """What the run asks Ray for.

    Attributes:
        num_replicas: model replicas.
        num_cpus: CPUs per replica.
        num_gpus: GPUs per replica.
        decode_cpus: CPUs per decoding task.
        threads: torch threads in each replica.
    """

    num_replicas: int
    num_cpus: float
    num_gpus: float
    decode_cpus: float
    threads: int


def plan_resources(options: RayOptions, cluster: Mapping[str, float]) -> ResourcePlan:
    """Sizes the replicas from the cluster's resources.

    The replicas never take every CPU: at least one decoding task always
    fits beside them (Ray Data's actors hold their CPUs for the whole run,
    so replicas holding every CPU leave the reading tasks none, and the run
    hangs; see docs/ray.md).

    Args:
        options: what the caller asked for.
        cluster: ``ray.cluster_resources()``.

    Raises:
        ConfigError: the request cannot run on this cluster, saying why and what fits.
    """
    cpus = float(cluster.get("CPU", 0))
    gpus = float(cluster.get("GPU", 0))
    if cpus <= 0:
        raise ConfigError(f"The Ray cluster has no CPUs ({dict(cluster)}); decoding runs in CPU tasks")
    num_gpus = options.num_gpus if options.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    if num_gpus and num_gpus > gpus:
        raise ConfigError(
            f"ray_options['num_gpus']={num_gpus:g} per replica, but the cluster has {gpus:g} GPU(s). "
            "Pass num_gpus=0 to run the replicas on CPUs, or add GPU nodes."
        )
    if options.num_replicas is not None:
        replicas = options.num_replicas
    elif num_gpus:
        replicas = max(1, int(gpus // num_gpus))
    else:
        replicas = max(1, int(cpus // 4))
    decode = options.decode_cpus if options.decode_cpus is not None else min(1.0, cpus / 2)
    if options.num_cpus is not None:
        per_replica = float(options.num_cpus)
    else:
        per_replica = min(2.0, (cpus - decode) / replicas, cpus / (2 * replicas))
        per_replica = math.floor(per_replica * 100) / 100  # Ray rounds resources to 1e-4
    if num_gpus and replicas * num_gpus > gpus:
        raise ConfigError(
            f"{replicas} replicas x {num_gpus:g} GPU(s) need {replicas * num_gpus:g} GPUs; the cluster has "
            f"{gpus:g}. Lower ray_options['num_replicas'] or ['num_gpus']."
        )
    if replicas * per_replica + decode > cpus + 1e-9:
        raise ConfigError(
            f"{replicas} replicas x {per_replica:g} CPUs + {decode:g} CPU for a decoding task need "
            f"{replicas * per_replica + decode:g} CPUs; the cluster has {cpus:g}. The replicas hold their CPUs "
            "for the whole run, so nothing would be left to read and decode the images and the run would "
            f"hang. Lower ray_options['num_cpus'] (e.g. {max(0.1, (cpus - decode) / replicas):.2g}) or "
            "['num_replicas'], or leave them unset to size them from the cluster."
        )
    threads = max(1, int(round(per_replica)))
    return ResourcePlan(replicas, per_replica, float(num_gpus), float(decode), threads)


_HOSTS_RE = re.compile(r"^mongodb(\+srv)?://(?:[^@/?#]*@)?(?P<hosts>[^/?#]*)")


def _hosts(uri: str) -> List[str]:
    m = _HOSTS_RE.match(uri)
    if m is None:
        return []
    hosts = []
    for part in m.group("hosts").split(","):
        part = part.strip()
        if part.startswith("["):  # [::1]:27017
            hosts.append(part[1:].split("]", 1)[0])
        else:
            hosts.append(part.rsplit(":", 1)[0] if part.count(":") == 1 else part)
    return [h for h in hosts if h]


def uri_is_loopback(uri: str) -> bool:
    """Whether every host of the MongoDB ``uri`` is this machine's loopback (or a Unix socket, as the embedded server's)."""
    hosts = _hosts(uri)
    if not hosts:
        return False
    for host in hosts:
        if host.lower() == "localhost" or host.lower().endswith(".sock"):  # a Unix socket: this machine only
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def check_database_reach(uri: str, nodes: Sequence[Mapping[str, Any]], local_node_id: Optional[str]) -> None:
    """Refuses a loopback database URI when the cluster has other machines.

    Args:
        uri: the URI the workers would use.
        nodes: ``ray.nodes()``.
        local_node_id: the node this process runs on
            (``ray.get_runtime_context().get_node_id()``).

    Raises:
        DatabaseError: ``uri`` is a loopback address and some live node is
            another machine; says to set ``MODELZOO_DATABASE_URI``.
    """
    if not uri_is_loopback(uri):
        return
    others = [n for n in nodes if n.get("Alive", True) and n.get("NodeID") != local_node_id]
    if not others:
        return
    shown = ", ".join(str(n.get("NodeManagerAddress") or n.get("NodeID")) for n in others[:5])
    raise DatabaseError(
        f"The database {redact_uri(uri)} listens on this machine's loopback only, but the Ray cluster has "
        f"{len(others)} other node(s) ({shown}) whose workers would write there and cannot reach it. Set "
        f"{ENV_URI} to a MongoDB server every node reaches (e.g. mongodb://db-host:27017), or pass "
        "ray_options={'database_uri': ...} with the address the workers use."
    )
