"""How a VESSL-style model is kept: files in one local-zoo entry directory.

``$MODELZOO_HOME/_local/<repository>/<number>/`` (see :mod:`modelzoo.zoo.local`)::

    entry.json            the zoo entry (model type RunnerModel, requirements)
    vessl.manifest.json   runner, model, hooks, use_default, artifacts (VESSL's manifest, as JSON)
    vessl.runner.pkl      the runner class, only when it cannot be imported (defined in __main__)
    vessl.model.pkl       the model instance, only when neither save_model nor load_model is overridden
    vessl.model.pt        register_torch_model: the module's state dict (loaded with weights_only=True)
    vessl.signature       this user's HMAC of entry.json, the manifest, pickles and state dict (see :mod:`.signing`)
    volume/               the model volume: the artifacts, and what save_model wrote

Parts are named by dotted path whenever the object can be imported back;
only what cannot (a class in ``__main__``, a lambda, a model instance) is
cloudpickled, and unpickled only when trusted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import sys
import threading
import types
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ..atomic import write_json_atomic
from ..errors import ConfigError
from ..imports import import_object
from ..zoo.local import ENTRY_FILE
from .errors import InvalidParamsError, UntrustedModelError

__all__ = [
    "MANIFEST_FILE",
    "RUNNER_PICKLE",
    "MODEL_PICKLE",
    "STATE_DICT",
    "VOLUME",
    "MODEL_TYPE",
    "importable_path",
    "dump_pickle",
    "save_callable",
    "load_callable",
    "working_directory",
    "write_json",
    "read_manifest",
    "pickled_files",
    "check_trust",
    "signed_files",
    "now",
    "MANIFEST_VERSION",
]

MANIFEST_FILE = "vessl.manifest.json"
RUNNER_PICKLE = "vessl.runner.pkl"
MODEL_PICKLE = "vessl.model.pkl"
STATE_DICT = "vessl.model.pt"
VOLUME = "volume"
#: the zoo entry's model type
MODEL_TYPE = "modelzoo.vessl.model.RunnerModel"
MANIFEST_VERSION = "v1"

_CWD_LOCK = threading.RLock()


def importable_path(obj: Any) -> Optional[str]:
    """``module.qualname`` when importing it gives back ``obj`` itself, else None
    (classes and functions of ``__main__``, lambdas, nested functions)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return None
    path = f"{module}.{qualname}"
    try:
        found = import_object(path)
    except ConfigError:
        return None
    return path if found is obj else None


def dump_pickle(obj: Any, path: str) -> None:
    """Cloudpickles ``obj`` to ``path``. Entries of ``sys.modules`` that are not
    plain modules (``torch.backends`` is a module subclass) are stored as an
    import of their name: cloudpickle records the submodules a function uses,
    and recognises only plain modules."""
    import importlib

    import cloudpickle

    stand_ins = {id(m): name for name, m in list(sys.modules.items())
                 if m is not None and type(m) is not types.ModuleType}

    class _Pickler(cloudpickle.Pickler):
        def reducer_override(self, o: Any) -> Any:
            name = stand_ins.get(id(o))
            if name is not None:
                return importlib.import_module, (name,)
            return super().reducer_override(o)

    with open(path, "wb") as f:
        _Pickler(f, protocol=4).dump(obj)


def save_callable(obj: Any, directory: str, filename: str) -> Dict[str, Any]:
    """Describes ``obj`` for the manifest: by dotted path, or cloudpickled to ``filename``."""
    path = importable_path(obj)
    if path is not None:
        return {"save_type": "import", "path": path}
    dump_pickle(obj, os.path.join(directory, filename))
    return {"save_type": "cloudpickle", "save_path": filename}


def _unpickle(path: str, what: str, name: str, python: str) -> Any:
    import cloudpickle

    try:
        with open(path, "rb") as f:
            return cloudpickle.load(f)
    except Exception as e:
        here = ".".join(map(str, sys.version_info[:3]))
        raise InvalidParamsError(
            f"Zoo model {name!r}: could not load its {what} from {path}: {type(e).__name__}: {e}. It was registered "
            f"with Python {python} (this is {here}); a pickle needs the same Python and the packages it refers to."
        ) from e


def load_callable(desc: Mapping[str, Any], directory: str, what: str, name: str, python: str) -> Any:
    """The object :func:`save_callable` described (trust is checked before, by :func:`check_trust`)."""
    if desc["save_type"] == "import":
        try:
            return import_object(desc["path"], what)
        except ConfigError as e:
            raise ConfigError(
                f"Zoo model {name!r}: {e}. Its {what} is imported by that path: run from where the module can be "
                "imported (the directory holding it on PYTHONPATH, or the package installed)."
            ) from e
    return _unpickle(os.path.join(directory, desc["save_path"]), what, name, python)


@contextlib.contextmanager
def working_directory(path: str) -> Iterator[None]:
    """Runs the block in ``path`` (VESSL runs ``save_model`` / ``load_model`` in
    the model volume, so relative paths such as ``"model.pt"`` work), then
    restores the working directory. The working directory is the process's:
    other threads see the change during the block."""
    with _CWD_LOCK:
        before = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(before)


def write_json(path: str, data: Any) -> None:
    write_json_atomic(path, data, indent=2, sort_keys=True)


def read_manifest(directory: str, name: str) -> Dict[str, Any]:
    """The entry's ``vessl.manifest.json``.

    Raises:
        ConfigError: missing or unreadable, or of another manifest version.
    """
    path = os.path.join(directory, MANIFEST_FILE)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"Zoo model {name!r}: cannot read {path}: {e}. Register the model again.") from None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        raise ConfigError(f"Zoo model {name!r}: {path} is not a version {MANIFEST_VERSION} VESSL manifest")
    return manifest


def pickled_files(manifest: Mapping[str, Any]) -> List[str]:
    """The pickles an entry holds (what loading it would unpickle)."""
    out = []
    parts: List[Any] = [manifest.get("runner"), manifest.get("model"), *(manifest.get("hooks") or {}).values()]
    for part in parts:
        if isinstance(part, Mapping) and part.get("save_type") == "cloudpickle":
            out.append(part["save_path"])
    return sorted(set(out))


def signed_files(directory: str, manifest: Mapping[str, Any]) -> List[str]:
    """The files an entry's signature covers: the manifest, ``entry.json``,
    the pickles and the state dict (those of them that exist)."""
    names = [MANIFEST_FILE, ENTRY_FILE, STATE_DICT, *pickled_files(manifest)]
    return sorted({n for n in names if n in (MANIFEST_FILE, ENTRY_FILE) or os.path.isfile(os.path.join(directory, n))})


def check_trust(directory: str, manifest: Mapping[str, Any], name: str, trust: bool) -> None:
    """Refuses an entry unless the caller's ``trust`` or this user's signature vouches for it.

    Every entry is checked, with or without pickles: its manifest names the
    runner, the builder and its kwargs, which are imported and called.
    ``trust`` is the caller's (``load_zoo_model(name, trust=True)``); an
    ``entry.json`` that sets it itself is refused.

    Raises:
        UntrustedModelError: naming the entry and how to proceed.
    """
    from ..signing import key_path
    from .signing import verify

    entry_path = os.path.join(directory, ENTRY_FILE)
    if _entry_sets_trust(entry_path):
        raise UntrustedModelError(
            f"Zoo model {name!r}: {entry_path} sets 'trust' in the model's config, a decision only the caller may "
            "make: a record cannot vouch for itself. Remove 'trust' from that file, and pass trust=True to "
            f"load_zoo_model({name!r}, trust=True) if you trust its author."
        )
    pickles = pickled_files(manifest)
    if trust or verify(directory, signed_files(directory, manifest), legacy_files=[MANIFEST_FILE, *pickles]):
        return
    holds = f"holds pickled code or data ({', '.join(pickles)} in {directory}), and unpickling runs arbitrary code" if pickles \
        else f"names code that is imported and called when it loads (its manifest in {directory})"
    raise UntrustedModelError(
        f"Zoo model {name!r} {holds}. Its signature does not match this user's key ({key_path()}): it was not "
        "registered by you on this machine, or its files changed since. Register it again as its owner, or, if you "
        f"trust where it came from, pass trust=True (load_zoo_model({name!r}, trust=True))."
    )


def _entry_sets_trust(entry_path: str) -> bool:
    try:
        with open(entry_path) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return False
    models = entry.get("models") if isinstance(entry, dict) else None
    for model in models if isinstance(models, list) else []:
        config = model.get("model", {}).get("config") if isinstance(model, dict) and isinstance(model.get("model"), dict) else None
        if isinstance(config, dict) and "trust" in config:
            return True
    return False


def now() -> str:
    """The current UTC time, ISO 8601 (``created_at`` in the manifest)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
