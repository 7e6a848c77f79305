"""What ``optimize="auto"`` measured, kept for the next process.

Timing eager against each candidate graph is most of what the decision
costs (0.4 s for mobilenet_v3_small, 0.7-0.9 s for the zoo's mobilenet_v2,
about 4 s for a transformers ConvNeXt that keeps eager), and every process
used to pay it again for the same model on the same machine. A decision is
kept here, one small JSON file per key, and a later process with the same
key builds and verifies only the kind that won, timing nothing (a kept
``"eager"`` builds nothing at all).

The key is everything the outcome depends on: the module's structure (its
class, ``repr`` and parameter shapes and dtypes; not its weight values,
which do not change the speed, and the chosen graph is still verified
against eager with the real weights), the example inputs' shapes, the
optimize mode, whether fusion was allowed, the margin, torch's version, the
CPU (model name and flags), the device and the number of torch threads.
An entry is measured again after :data:`MAX_AGE_S`.

Where: ``$MODELZOO_OPTIMIZE_CACHE``, else ``$MODELZOO_HOME/optimize``, else
``~/.modelzoo/optimize``; a directory only its user can enter (0700), files
0600. ``MODELZOO_OPTIMIZE_CACHE=off`` (or ``0``) measures every time. An
entry holds a kind name from a fixed list and the timings for the log,
nothing that runs: a file that does not parse or names another kind is
ignored (and replaced by the next decision).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import stat
import time
from typing import Any, Dict, Optional, Sequence, Tuple

from .atomic import write_json_atomic

__all__ = ["ENV", "MAX_AGE_S", "MAX_ENTRIES", "KINDS", "Kept", "cache_dir", "decision_key", "read", "write"]

#: the directory, or ``off`` / ``0`` for no cache
ENV = "MODELZOO_OPTIMIZE_CACHE"
#: an entry older than this (seconds) is measured again: 30 days
MAX_AGE_S = 30 * 24 * 3600
#: at most this many entries are kept: writing one removes the oldest past it
#: (a model whose ``repr`` changes from process to process would otherwise
#: add one per run)
MAX_ENTRIES = 256
#: the kinds an entry may name (what :func:`modelzoo.optimize.optimize_module` returns)
KINDS = ("frozen+onednn", "frozen", "compiled", "channels_last", "eager")
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Kept:
    """A decision read back.

    Attributes:
        kind: what ran faster.
        timings: per candidate timed, ``(eager, candidate)`` ms/sample.
        measured_at: when it was measured (seconds since the epoch).
    """

    kind: str
    timings: Dict[str, Tuple[float, float]]
    measured_at: float


def cache_dir() -> Optional[str]:
    """The directory of the kept decisions, or None when switched off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in ("off", "0", "false", "no"):
        return None
    if value:
        return os.path.abspath(os.path.expanduser(value))
    home = os.environ.get("MODELZOO_HOME") or os.path.join(os.path.expanduser("~"), ".modelzoo")
    return os.path.join(os.path.abspath(home), "optimize")


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            fields = {}
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip()
                if name in ("model name", "flags") and name not in fields:
                    fields[name] = value.strip()
                if len(fields) == 2:
                    break
        return fields.get("model name", "") + "|" + fields.get("flags", "")
    except OSError:
        return platform.processor() or platform.machine()


def decision_key(module: Any, examples: Sequence[Any], **settings: Any) -> str:
    """The key of ``module``'s decision on ``examples`` (tensors, or lists
    or tuples of them) under ``settings`` (mode, fuse, min_gain...)."""
    import torch

    def shapes(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return [list(x.shape), str(x.dtype), x.device.type]
        if isinstance(x, (list, tuple)):
            return [shapes(v) for v in x]
        return type(x).__name__

    params = [[name, list(p.shape), str(p.dtype)] for name, p in module.named_parameters()]
    ident = {
        "format": _FORMAT,
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "repr": hashlib.sha256(repr(module).encode()).hexdigest(),
        "params": hashlib.sha256(json.dumps(params).encode()).hexdigest(),
        "examples": [shapes(x) for x in examples],
        "settings": {k: settings[k] for k in sorted(settings)},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": hashlib.sha256(_cpu().encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:40]


def read(key: str, now: Optional[float] = None) -> Optional[Kept]:
    """The decision kept under ``key``, or None (none, too old, unreadable,
    or not in a directory of this user's own)."""
    root = cache_dir()
    if root is None or not _own_dir(root):
        return None
    try:
        with open(os.path.join(root, key + ".json")) as f:
            data = json.load(f)
        kind = data["kind"]
        measured_at = float(data["measured_at"])
        timings = {str(k): (float(v[0]), float(v[1])) for k, v in dict(data.get("timings") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    if data.get("format") != _FORMAT or kind not in KINDS:
        return None
    if (time.time() if now is None else now) - measured_at > MAX_AGE_S:
        return None
    return Kept(kind, timings, measured_at)


def write(key: str, kind: str, timings: Dict[str, Tuple[float, float]], what: str = "") -> Optional[str]:
    """Keeps a decision; returns the file's path (None when switched off or
    the directory cannot be made private). A failure to write only costs
    the next process a measurement."""
    root = cache_dir()
    if root is None or kind not in KINDS:
        return None
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not _own_dir(root):
        return None
    path = os.path.join(root, key + ".json")
    data = {"format": _FORMAT, "kind": kind, "measured_at": time.time(), "what": what,
            "timings": {k: [round(v[0], 4), round(v[1], 4)] for k, v in timings.items()}}
    try:
        write_json_atomic(path, data, file_mode=0o600)
    except OSError:
        return None
    _prune(root, keep=path)
    return path


def _prune(root: str, keep: str) -> None:
    """Removes entries older than :data:`MAX_AGE_S`, then the oldest past
    :data:`MAX_ENTRIES` (never ``keep``, the one just written)."""
    entries = []
    with os.scandir(root) as it:
        for e in it:
            if e.name.endswith(".json") and e.is_file(follow_symlinks=False):
                try:
                    entries.append((e.stat(follow_symlinks=False).st_mtime, e.path))
                except OSError:
                    pass
    entries.sort(reverse=True)  # newest first
    now = time.time()
    for i, (mtime, path) in enumerate(entries):
        if path != keep and (i >= MAX_ENTRIES or now - mtime > MAX_AGE_S):
            try:
                os.remove(path)
            except OSError:
                pass


def _own_dir(path: str) -> bool:
    """Whether ``path`` is a directory (not a link) of this user's, closed to
    others (made so when it is this user's)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return False
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
        return True
    except OSError:
        return False
