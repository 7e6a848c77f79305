"""Registrations that last: what :func:`~modelzoo.register_zoo_model` keeps on disk.

A model that another process can rebuild is written to the user's zoo,
``$MODELZOO_HOME/_registered/<name>/<version>.json``, as JSON that names it
(never a pickle): an import path (a :class:`~modelzoo.Model` subclass, a
factory, a Tungsten-style model class), a config with its model class, or a
bundle by its id. The record is signed with this user's key
(:mod:`modelzoo.zoo.trust`) and checked before anything it names is imported,
in whichever process loads it; ``modelzoo serve NAME`` and the user's next
script find it like any zoo model.

What only this process can rebuild stays in this process, and
:func:`recipe_for` says why: a lambda, a function or class defined inside a
function or in ``__main__`` (the running script), a config holding Python
objects.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..atomic import write_json_atomic
from ..config import Config
from ..errors import ConfigError, ZooError
from ..imports import import_object
from .local import subdir_signature
from .manifest import ManifestChecker, ModelSpec, ZooModelInfo, parse_requirements, parse_weights
from .protocols import ModelLoader, RecordedLoader
from .trust import check_record, sign_record
from .weights import zoo_home

__all__ = ["registered_root", "recipe_for", "import_path", "write", "delete", "entries", "resolve_spec", "verify"]

_DIR = "_registered"
_lock = threading.Lock()
_cache: Dict[str, Any] = {"sig": None, "entries": []}


def registered_root() -> str:
    """``$MODELZOO_HOME/_registered``."""
    return os.path.join(zoo_home(), _DIR)


def import_path(obj: Any) -> Tuple[Optional[str], str]:
    """``("package.module.Name", "")`` when another process can import
    ``obj`` by that path, else ``(None, why not)``."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        return None, f"a {type(obj).__name__} has no import path"
    if "<lambda>" in qualname:
        return None, "it is a lambda"
    if "<locals>" in qualname:
        return None, f"{qualname} is defined inside a function"
    if module == "__main__":
        return None, f"{qualname} is defined in __main__ (the running script), which another process cannot import"
    path = f"{module}.{qualname}"
    try:
        found = import_object(path, "model")
    except ConfigError:
        return None, f"{path} cannot be imported"
    if found is not obj:
        return None, f"{path} names another object"
    return path, ""


def _json_data(value: Any, what: str) -> Tuple[Optional[Any], str]:
    try:
        return json.loads(json.dumps(value)), ""
    except (TypeError, ValueError) as e:
        return None, f"its {what} holds Python objects ({e})"


def recipe_for(model: Any, model_cls: Optional[type], config: Optional[Mapping[str, Any]]) -> Tuple[Optional[Dict[str, Any]], str]:
    """The JSON ``model`` recipe that rebuilds ``model`` in another process
    (see :func:`~modelzoo.register_zoo_model` for what ``model`` may be),
    or ``(None, why it cannot)``."""
    from ..models import Model

    if isinstance(model, str):
        target = model.replace(":", ".")
        import_object(target, "model")  # an import path that does not import is an error now
        return {"kind": "import", "target": target, "config": dict(config or {}) or None}, ""
    if isinstance(model, Config) or isinstance(model, Mapping):
        if isinstance(model, Config):
            from . import config_model_cls

            cls = model_cls or config_model_cls(type(model))
            data: Any = model.to_dict()
        else:
            if model_cls is None:
                from ..torch_image_config import TorchImageModelConfig

                cls_path: Optional[str] = TorchImageModelConfig.model_cls
                data = dict(model)
                data, why = _json_data(data, "config")
                if data is None:
                    return None, why
                return {"kind": "class", "type": cls_path, "config": data}, ""
            cls = model_cls
            data = dict(model)
        cls_path, why = import_path(cls)
        if cls_path is None:
            return None, why
        data, why = _json_data(data, "config")
        if data is None:
            return None, why
        return {"kind": "class", "type": cls_path, "config": data}, ""
    if isinstance(model, type) and issubclass(model, Model):
        cls_path, why = import_path(model)
        if cls_path is None:
            return None, why
        data, why = _json_data(dict(config or {}), "config")
        if data is None:
            return None, why
        return {"kind": "class", "type": cls_path, "config": data}, ""
    if isinstance(model, RecordedLoader):
        record = model.zoo_record()
        if record is None:
            return None, f"{model!r} can be rebuilt in this process only (its zoo_record() is None)"
        return dict(record), ""
    if isinstance(model, ModelLoader):
        path, why = import_path(model)  # a loader object importable by name (a module-level instance)
        if path is None:
            return None, f"a loader object is kept by its import path, and {why or 'it has none'}"
        return {"kind": "import", "target": path}, ""
    if callable(model):
        path, why = import_path(model)
        if path is None:
            return None, why
        return {"kind": "factory", "target": path}, ""
    return None, f"a {type(model).__name__} cannot be rebuilt from a record"


def _entry_path(name: str, version: str) -> str:
    if "/" in name or os.sep in name or name.startswith("."):
        raise ZooError(f"Zoo model name {name!r} cannot be kept on disk")
    return os.path.join(registered_root(), name, f"{version}.json")


def write(info: ZooModelInfo, recipe: Mapping[str, Any]) -> str:
    """Writes (atomically) the signed record of ``info`` built by ``recipe``; returns its path."""
    payload = {
        "kind": "zoo-registration",
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "source": info.source,
        "license": info.license,
        "size_bytes": info.size_bytes,
        "tags": list(info.tags),
        "requirements": {"packages": list(info.requirements.packages), "cpu": info.requirements.cpu,
                         "gpu": info.requirements.gpu},
        "weights": None if info.weights is None else {
            "url": info.weights.url, "sha256": info.weights.sha256, "filename": info.weights.filename,
            **({"local_sources": list(info.weights.local_sources)} if info.weights.local_sources else {}),
        },
        "date_added": info.date_added,
        "training_data": info.training_data,
        "model": dict(recipe),
    }
    path = _entry_path(info.name, info.version)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    write_json_atomic(path, {"payload": payload, "signature": sign_record(payload)}, file_mode=0o600, indent=2)
    return path


def delete(name: str, version: Optional[str] = None) -> bool:
    """Removes the kept records of ``name`` (one version, or all). Returns whether any existed."""
    d = os.path.join(registered_root(), name)
    if version is not None:
        path = _entry_path(name, version)
        if not os.path.isfile(path):
            return False
        os.remove(path)
        return True
    if not os.path.isdir(d):
        return False
    shutil.rmtree(d)
    return True


def _signature() -> Tuple[Any, ...]:
    def of_name(d: "os.DirEntry[str]") -> object:
        return (d.name, tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size)
                                     for e in os.scandir(d.path) if e.name.endswith(".json"))))

    return subdir_signature(registered_root(), of_name)


def _info(path: str, record: Mapping[str, Any]) -> ZooModelInfo:
    payload = record["payload"]
    ck = ManifestChecker(path, repr(payload.get("name")))
    model = payload["model"]
    kind = {"class": "class", "import": "class", "factory": "factory"}.get(model.get("kind"))
    if kind is None:
        raise ck.fail("model.kind", f"unknown kind {model.get('kind')!r}")
    return ZooModelInfo(
        name=payload["name"],
        version=payload["version"],
        description=payload.get("description", ""),
        source=payload.get("source", ""),
        license=payload.get("license", ""),
        size_bytes=payload.get("size_bytes"),
        tags=tuple(payload.get("tags", ())),
        requirements=parse_requirements(ck, payload.get("requirements") or {}),
        weights=parse_weights(ck, payload.get("weights")),
        model=ModelSpec(type=model.get("type") or model.get("target"), config=model.get("config"), kind=kind),
        date_added=payload.get("date_added"),
        training_data=payload.get("training_data", ""),
        origin=path,
        zoo_source="local",
        metadata={"prevalidated": True, "persisted": path, "recipe": dict(model)},
    )


def entries() -> List[ZooModelInfo]:
    """Every kept registration (read again when the records changed on disk).

    Raises:
        ManifestError: a record that cannot be read.
    """
    from .manifest import ManifestError

    with _lock:
        sig = _signature()
        if sig == _cache["sig"]:
            return list(_cache["entries"])
        out = []
        root = registered_root()
        for name_sig in sig[1:]:
            name, files = name_sig
            for filename, _, _ in files:
                path = os.path.join(root, name, filename)
                try:
                    with open(path, encoding="utf-8") as f:
                        record = json.load(f)
                    out.append(_info(path, record))
                except FileNotFoundError:
                    continue
                except (ValueError, KeyError, TypeError) as e:
                    raise ManifestError(path, f"unreadable zoo registration ({type(e).__name__}: {e}); delete it or register the model again") from None
        _cache["sig"], _cache["entries"] = sig, out
        return list(out)


def verify(info: ZooModelInfo, trust: bool = False) -> None:
    """Checks the record's signature before anything it names is imported.

    Raises:
        UntrustedError: not signed by this user's key (and not ``trust``).
    """
    path = info.metadata["persisted"]
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    check_record(record["payload"], record.get("signature"), what=f"zoo registration {info.key} ({path})", trust=trust)


def resolve_spec(info: ZooModelInfo) -> ZooModelInfo:
    """The entry with its recipe's import path resolved (after :func:`verify`):
    a factory with its keyword arguments, or an imported object that is a
    model class, a factory or a loader."""
    import dataclasses
    import functools

    from ..models import Model

    recipe = info.metadata["recipe"]
    target = import_object(recipe.get("type") or recipe["target"], "model")
    if recipe["kind"] == "class":
        return info
    if recipe["kind"] == "factory":
        fn = functools.partial(target, **recipe["kwargs"]) if recipe.get("kwargs") else target
        return dataclasses.replace(info, model=ModelSpec(type=fn, kind="factory"))
    if isinstance(target, type) and issubclass(target, Model):
        return dataclasses.replace(info, model=ModelSpec(type=target, config=recipe.get("config") or {}, kind="class"))
    if isinstance(target, ModelLoader):
        return dataclasses.replace(info, model=ModelSpec(type=target, kind="loader"))
    return dataclasses.replace(info, model=ModelSpec(type=target, kind="factory"))
