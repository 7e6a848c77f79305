"""Zoo manifests: JSON files -> typed, strictly validated :class:`ZooModelInfo` records.

A manifest file is ``{"manifest_version": 1, "models": [entry, ...]}``; each entry::

    {
      "name": "mobilenet-v2-imagenet-torch",       # [a-z0-9][a-z0-9._-]*, no "@"
      "version": "1.0",                            # dotted integers; newest wins by default
      "description": "...", "source": "https://...", "license": "BSD-3-Clause",
      "size_bytes": 14212972,                      # of the weights file
      "tags": ["classification", "imagenet", "torch"],
      "requirements": {"packages": ["torch", "torchvision"], "cpu": true, "gpu": true},
      "weights": {"url": "https://...", "sha256": "<64 hex>", "filename": "x.pth",
                  "local_sources": ["package:some_pkg", "/a/dir"]},   # or null
      "model": {"type": "modelzoo.torch_image.TorchImageModel", "config": {...}},
      "date_added": "2024-05-01",
      "training_data": "ImageNet-1k (ILSVRC2012) train split"
    }

Only ``name`` and ``model`` are required (``"model": "package.module.Name"``,
a Model subclass or a factory, is enough for a Python model); the other keys
default to empty, ``version`` to ``"1.0"``. An unknown key, a wrong type or
a malformed value raises :class:`ManifestError` naming the file, the entry
and the key (every missing key at once). Nothing is skipped with a warning.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import ConfigError, UnknownKeyError, ZooError, check_keys
from ..imports import import_object

__all__ = [
    "ManifestError",
    "Requirements",
    "WeightsSpec",
    "ModelSpec",
    "ZooModelInfo",
    "ManifestChecker",
    "parse_manifest",
    "load_manifest_file",
    "parse_version",
    "NAME_RE",
    "NUMBERED_NAME_RE",
    "split_numbered",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
#: ``repository/number`` names (VESSL style, see :mod:`modelzoo.zoo.local`): a
#: repository named like any zoo model, then a positive number
NUMBERED_NAME_RE = re.compile(r"^([a-z0-9][a-z0-9._-]*)/([1-9][0-9]*)$")
_VERSION_RE = re.compile(r"^\d+(\.\d+){0,3}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_URL_SCHEMES = ("http://", "https://", "file://")

_ENTRY_REQUIRED = ("name", "model")
_ENTRY_OPTIONAL = (
    "version", "description", "source", "license", "size_bytes", "tags",
    "requirements", "weights", "date_added", "training_data",
)
_REQUIREMENTS_KEYS = ("packages", "cpu", "gpu")
_WEIGHTS_KEYS = ("url", "sha256", "filename")
_WEIGHTS_OPTIONAL = ("local_sources",)
_MODEL_KEYS = ("type", "config")
#: config keys the zoo fills in itself from ``weights``
_ZOO_FILLED = ("weights_path", "weights_sha256")


class ManifestError(ConfigError, ZooError):
    """A manifest (or a registered entry) is invalid.

    Attributes:
        path: the manifest file (or another description of the origin).
        entry: the entry's name (or index) in the file, when known.
        key: the offending key as a dotted path (``"weights.sha256"``), when known.
    """

    def __init__(self, path: str, message: str, entry: Optional[str] = None, key: Optional[str] = None):
        self.path = path
        self.entry = entry
        self.key = key
        where = f"Invalid zoo manifest {path}"
        if entry is not None:
            where += f", entry {entry}"
        if key is not None:
            where += f", key {key!r}"
        super().__init__(f"{where}: {message}")


@dataclasses.dataclass(frozen=True)
class Requirements:
    """What a model needs to run.

    Attributes:
        packages: pip requirement strings (``"torchvision>=0.15"``).
        cpu: whether the model runs without a GPU.
        gpu: whether the model runs on a GPU.
    """

    packages: Tuple[str, ...] = ()
    cpu: bool = True
    gpu: bool = True


@dataclasses.dataclass(frozen=True)
class WeightsSpec:
    """Where a model's weights come from.

    Attributes:
        url: ``http(s)://`` or ``file://`` URL, or None when the weights only
            come from ``local_sources``.
        sha256: the full hex sha256 of the file, checked before first use.
        filename: the file's name in the cache.
        local_sources: searched by checksum before any download:
            ``"package:NAME"`` (the files of an installed package) or a directory.
    """

    url: Optional[str]
    sha256: str
    filename: str
    local_sources: Tuple[str, ...] = ()

    @property
    def full_sha256(self) -> bool:
        """Whether :attr:`sha256` is the whole hash, not only a prefix (a
        library catalogue's entry knows only the prefix its file name carries,
        torch hub's rule; the whole hash is recorded on first download)."""
        return len(self.sha256) == 64

    def matches(self, sha256: str) -> bool:
        """Whether a file of this sha256 (64 hex digits) is these weights."""
        return bool(self.sha256) and sha256.startswith(self.sha256)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to build the model.

    Attributes:
        type: for manifests, the dotted path of a :class:`~modelzoo.Model`
            subclass; for registered models, the class, a factory function
            or a loader object (anything with ``load_model(**overrides)``).
        config: the model's settings (for a class), or None.
        kind: ``"class"``, ``"factory"`` or ``"loader"``.
    """

    type: Any
    config: Optional[Mapping[str, Any]] = None
    kind: str = "class"


@dataclasses.dataclass(frozen=True)
class ZooModelInfo:
    """One zoo entry (one version of one model).

    Attributes:
        origin: where the entry came from (a manifest path, ``"plugin ..."``,
            ``"registered"``); shown in errors.
    """

    name: str
    version: str
    description: str = ""
    source: str = ""
    license: str = ""
    size_bytes: Optional[int] = None
    tags: Tuple[str, ...] = ()
    requirements: Requirements = Requirements()
    weights: Optional[WeightsSpec] = None
    model: ModelSpec = ModelSpec(None)
    date_added: Optional[str] = None
    training_data: str = ""
    origin: str = "registered"
    #: the zoo source the entry comes from (``"manifests"``, ``"torchvision"``...)
    zoo_source: str = ""
    #: what the source knows beyond the manifest keys (a library's own metadata)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """``"name@version"``."""
        return f"{self.name}@{self.version}"

    @property
    def manifest_dir(self) -> Optional[str]:
        """The directory of the manifest file the entry came from, if any."""
        return os.path.dirname(self.origin) if self.origin.endswith(".json") else None

    def to_dict(self) -> Dict[str, Any]:
        """The entry as manifest JSON (registered callables appear by their name)."""
        model_type = self.model.type
        if not isinstance(model_type, str):
            model_type = f"{getattr(model_type, '__module__', '?')}.{getattr(model_type, '__qualname__', repr(model_type))}"
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "source": self.source,
            "license": self.license,
            "size_bytes": self.size_bytes,
            "tags": list(self.tags),
            "requirements": {
                "packages": list(self.requirements.packages),
                "cpu": self.requirements.cpu,
                "gpu": self.requirements.gpu,
            },
            "weights": None if self.weights is None else {
                "url": self.weights.url,
                "sha256": self.weights.sha256,
                "filename": self.weights.filename,
                **({"local_sources": list(self.weights.local_sources)} if self.weights.local_sources else {}),
            },
            "model": {"type": model_type, "config": None if self.model.config is None else dict(self.model.config)},
            "date_added": self.date_added,
            "training_data": self.training_data,
        }


def split_numbered(name: str) -> Optional[Tuple[str, int]]:
    """``"repo/3"`` -> ``("repo", 3)``; None for any other name."""
    m = NUMBERED_NAME_RE.match(name) if isinstance(name, str) else None
    return (m.group(1), int(m.group(2))) if m else None


def parse_version(version: str) -> Tuple[int, ...]:
    """``"1.10.2"`` -> ``(1, 10, 2)`` (for ordering)."""
    return tuple(int(p) for p in str(version).split("."))


# -- validation ---------------------------------------------------------------------------


class ManifestChecker:
    """Checks the values of one entry (of a manifest file, a plugin or a
    registration); every error is a :class:`ManifestError` naming the origin,
    the entry and the key.

    Args:
        path: the origin (a manifest path, ``"registered"``...).
        entry: the entry's name or index, or None for the file itself.
    """

    def __init__(self, path: str, entry: Optional[str]):
        self.path = path
        self.entry = entry

    def fail(self, key: Optional[str], message: str) -> ManifestError:
        """The error to raise for ``key`` (a dotted path such as ``"weights.sha256"``)."""
        return ManifestError(self.path, message, entry=self.entry, key=key)

    def keys(self, obj: Any, key: str, required: Sequence[str], optional: Sequence[str] = ()) -> Mapping[str, Any]:
        """Checks that the object at ``key`` (``""``: the entry itself) has all of
        ``required``, maybe some of ``optional``, and nothing else."""
        if not isinstance(obj, Mapping):
            raise self.fail(key or None, f"expected an object, got {type(obj).__name__}")
        prefix = f"{key}." if key else ""
        try:
            what = repr(key) if key else ("the manifest" if self.entry is None else "the entry")
            check_keys(obj, list(required) + list(optional), what)
        except UnknownKeyError as e:
            raise self.fail(f"{prefix}{e.key}", str(e)) from None
        missing = [k for k in required if k not in obj]
        if len(missing) == 1:
            raise self.fail(f"{prefix}{missing[0]}", "missing required key")
        if missing:  # every missing key at once, so one edit fixes the entry
            raise self.fail(
                f"{prefix}{missing[0]}", "missing required keys " + ", ".join(repr(f"{prefix}{k}") for k in missing)
            )
        return obj

    def string(self, value: Any, key: str, allow_empty: bool = False) -> str:
        """Checks a (non-empty, unless ``allow_empty``) string."""
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.fail(key, f"expected a non-empty string, got {value!r:.80}")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        """Checks a JSON boolean."""
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r:.80}")
        return value

    def strings(self, value: Any, key: str) -> Tuple[str, ...]:
        """Checks a list of non-empty strings."""
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list of strings, got {type(value).__name__}")
        for i, v in enumerate(value):
            self.string(v, f"{key}[{i}]")
        return tuple(value)


def _check_package_requirement(ck: ManifestChecker, spec: str, key: str) -> None:
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # packaging is optional here: accept a plain name
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*", spec):
            raise ck.fail(key, f"{spec!r} is not a pip requirement such as 'torchvision>=0.15'") from None
        return
    try:
        Requirement(spec)
    except InvalidRequirement as e:
        raise ck.fail(key, f"{spec!r} is not a pip requirement such as 'torchvision>=0.15' ({e})") from None


def check_local_source(ck: ManifestChecker, source: str, key: str) -> str:
    if source.startswith("package:"):
        name = source[len("package:"):]
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$", name):
            raise ck.fail(key, f"{source!r}: 'package:' must be followed by an importable package name")
        return source
    expanded = os.path.expanduser(source)
    if not os.path.isabs(expanded):
        raise ck.fail(key, f"{source!r} must be 'package:NAME' or an absolute directory path")
    return source


def parse_weights(ck: ManifestChecker, obj: Any, key: str = "weights") -> Optional[WeightsSpec]:
    if obj is None:
        return None
    ck.keys(obj, key, _WEIGHTS_KEYS, _WEIGHTS_OPTIONAL)
    url = obj["url"]
    local = tuple(
        check_local_source(ck, s, f"{key}.local_sources[{i}]")
        for i, s in enumerate(ck.strings(obj.get("local_sources", []), f"{key}.local_sources"))
    )
    if url is None:
        if not local:
            raise ck.fail(f"{key}.url", "url is null, so local_sources must name where the weights are")
    else:
        ck.string(url, f"{key}.url")
        if not url.startswith(_URL_SCHEMES):
            raise ck.fail(f"{key}.url", f"{url!r} must start with http://, https:// or file://")
    sha = obj["sha256"]
    if not isinstance(sha, str) or not _SHA256_RE.match(sha):
        raise ck.fail(
            f"{key}.sha256",
            f"expected the full sha256 (64 lowercase hex digits), got {sha!r:.80}",
        )
    filename = ck.string(obj["filename"], f"{key}.filename")
    if os.path.basename(filename) != filename or filename in (".", ".."):
        raise ck.fail(f"{key}.filename", f"{filename!r} must be a bare file name, without directories")
    return WeightsSpec(url=url, sha256=sha, filename=filename, local_sources=local)


def parse_requirements(ck: ManifestChecker, obj: Any, key: str = "requirements") -> Requirements:
    ck.keys(obj, key, (), _REQUIREMENTS_KEYS)
    packages = ck.strings(obj.get("packages", []), f"{key}.packages")
    for i, p in enumerate(packages):
        _check_package_requirement(ck, p, f"{key}.packages[{i}]")
    cpu = ck.boolean(obj.get("cpu", True), f"{key}.cpu")
    gpu = ck.boolean(obj.get("gpu", True), f"{key}.gpu")
    if not cpu and not gpu:
        raise ck.fail(f"{key}.cpu", "a model must run on the CPU, the GPU or both")
    return Requirements(packages=packages, cpu=cpu, gpu=gpu)


def parse_entry(obj: Any, path: str, index: int) -> ZooModelInfo:
    """Validates one manifest entry. Only ``name`` and ``model`` are required:
    ``"model": "package.module.Name"`` (a :class:`~modelzoo.Model` subclass
    or a factory returning one) or ``{"type": ..., "config": {...}}``; the
    other keys default to empty (``version`` to ``"1.0"``).

    Raises:
        ManifestError: naming ``path``, the entry and the key (every missing key at once).
    """
    label = f"#{index}"
    if isinstance(obj, Mapping) and isinstance(obj.get("name"), str):
        label = f"#{index} ({obj['name']!r})"
    ck = ManifestChecker(path, label)
    ck.keys(obj, "", _ENTRY_REQUIRED, _ENTRY_OPTIONAL)
    name = ck.string(obj["name"], "name")
    if not NAME_RE.match(name) and not NUMBERED_NAME_RE.match(name):
        raise ck.fail(
            "name",
            f"{name!r} must be lowercase letters, digits, '.', '_' or '-' (no '@'), starting with a letter or digit "
            "(or 'repository/number', such a name then a positive number)",
        )
    version = obj.get("version", "1.0")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ck.fail("version", f"expected a version string such as '1.0', got {version!r:.80}")
    for k in ("description", "source", "license", "training_data"):
        ck.string(obj.get(k, ""), k, allow_empty=k not in obj)
    size = obj.get("size_bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise ck.fail("size_bytes", f"expected a non-negative integer, got {size!r:.80}")
    tags = ck.strings(obj.get("tags", []), "tags")
    date = obj.get("date_added")
    if date is not None:
        ck.string(date, "date_added")
        try:
            _dt.date.fromisoformat(date)
        except ValueError:
            raise ck.fail("date_added", f"expected an ISO date 'YYYY-MM-DD', got {date!r}") from None
    requirements = parse_requirements(ck, obj.get("requirements", {}))
    weights = parse_weights(ck, obj.get("weights"))
    model = obj["model"]
    if isinstance(model, str):
        model = {"type": model}
    model = ck.keys(model, "model", ("type",), ("config",))
    model_type = ck.string(model["type"], "model.type")
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$", model_type):
        raise ck.fail("model.type", f"expected the dotted path of a Model subclass or a factory, got {model_type!r}")
    config = model.get("config")
    if config is not None and not isinstance(config, Mapping):
        raise ck.fail("model.config", f"expected an object of settings, got {type(config).__name__}")
    for k in _ZOO_FILLED:
        if config is not None and k in config:
            raise ck.fail(f"model.config.{k}", "is filled in by the zoo from 'weights'; remove it")
    return ZooModelInfo(
        name=name,
        version=version,
        description=obj.get("description", ""),
        source=obj.get("source", ""),
        license=obj.get("license", ""),
        size_bytes=size,
        tags=tags,
        requirements=requirements,
        weights=weights,
        model=ModelSpec(type=model_type, config=None if config is None else dict(config), kind="class"),
        date_added=date,
        training_data=obj.get("training_data", ""),
        origin=path,
    )


def parse_manifest(data: Any, path: str) -> List[ZooModelInfo]:
    """Validates a manifest's parsed JSON and returns its entries.

    Raises:
        ManifestError: the first problem found, naming ``path``, the entry and the key.
    """
    ck = ManifestChecker(path, None)
    if not isinstance(data, Mapping):
        raise ManifestError(path, f"expected an object with a 'models' list, got {type(data).__name__}")
    ck.keys(data, "", ("models",), ("manifest_version",))
    mv = data.get("manifest_version", 1)
    if mv != 1:
        raise ManifestError(path, f"manifest_version {mv!r} is not supported (this modelzoo reads version 1)", key="manifest_version")
    models = data["models"]
    if not isinstance(models, list):
        raise ManifestError(path, f"expected a list, got {type(models).__name__}", key="models")
    entries = [parse_entry(obj, path, i) for i, obj in enumerate(models)]
    seen: Dict[str, int] = {}
    for i, e in enumerate(entries):
        if e.key in seen:
            raise ManifestError(path, f"{e.key} is defined twice (entries #{seen[e.key]} and #{i})", entry=f"#{i} ({e.name!r})", key="version")
        seen[e.key] = i
    return entries


def load_manifest_file(path: Union[str, "os.PathLike[str]"]) -> List[ZooModelInfo]:
    """Reads and validates one manifest file.

    Raises:
        ManifestError: unreadable file, invalid JSON (with line and column) or invalid entry.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ManifestError(path, f"cannot read the file: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ManifestError(path, f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    return parse_manifest(data, path)


# -- model configs ------------------------------------------------------------------------


#: config classes that name their model class by dotted path (``model_cls``) and
#: import no heavy package: an entry of one of these model types is checked
#: without importing the model's module (for the built-in models: torch)
TORCH_FREE_CONFIGS = ("modelzoo.torch_image_config.TorchImageModelConfig",)


def _config_cls_of(model_type: str) -> Optional[type]:
    """The config class of a model type named by dotted path, if a torch-free
    config names it (see :data:`TORCH_FREE_CONFIGS`)."""
    for path in TORCH_FREE_CONFIGS:
        config_cls = import_object(path, "config class")
        if vars(config_cls).get("model_cls") == model_type:
            return config_cls
    return None


def validate_model_config(info: ZooModelInfo) -> None:
    """Checks an entry's ``model.type`` and ``model.config`` against the model's
    config class (unknown keys, bad values). A built-in model type is checked
    without importing its module (see :data:`TORCH_FREE_CONFIGS`).

    Raises:
        ManifestError: naming the entry's origin, the entry and the key.
    """
    from ..models import Model

    if info.model.kind != "class" or info.model.config is None:
        return
    ck = ManifestChecker(info.origin, repr(info.key))
    cls = info.model.type
    config_cls = _config_cls_of(cls) if isinstance(cls, str) else None
    if config_cls is None:
        if isinstance(cls, str):
            try:
                cls = import_object(cls, "model.type")
            except ConfigError as e:
                raise ck.fail("model.type", str(e)) from None
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            if callable(cls):  # a factory: its settings are its keyword arguments
                return
            raise ck.fail("model.type", f"{info.model.type!r} is not a modelzoo.Model subclass nor a factory")
        config_cls = getattr(cls, "config_cls", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return
    try:
        fields = sorted(f.name for f in dataclasses.fields(config_cls))
        check_keys(info.model.config, fields, config_cls.__name__, kind="setting")
    except UnknownKeyError as e:
        raise ck.fail(f"model.config.{e.key}", str(e)) from None
    try:
        config_cls(dict(info.model.config))  # type: ignore[call-arg,operator]
    except ConfigError as e:
        raise ck.fail("model.config", str(e)) from None
