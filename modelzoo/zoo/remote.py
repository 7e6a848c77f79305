"""Remote zoo sources in FiftyOne's layout, so zoo repositories written for FiftyOne work unchanged.

A remote source is a folder (or a git repository, or an archive at an
http(s) URL) holding, in one directory or several:

* ``manifest.json``: ``{"name": "user/repo", "url": ..., "models": [...]}``,
  each model FiftyOne's zoo entry (``base_name``, ``base_filename``,
  ``version``, ``description``, ``license``, ``size_bytes``, ``tags``,
  ``requirements``, ``date_added``...);
* ``__init__.py`` with ``download_model(model_name, model_path)`` and
  ``load_model(model_name, model_path, **kwargs)``.

:func:`register_zoo_model_source` copies the directories into the zoo
(``$MODELZOO_HOME/_sources/<name>/code``) and records their files' sha256,
signed with this user's key: registering is the user's explicit trust in
that code. Before the code runs (a load or a download, in any process) the
record's signature and every recorded file are checked; a source edited
since, or registered by another account, is refused
(:class:`~modelzoo.errors.UntrustedError` with :mod:`modelzoo.signing`).

As in FiftyOne, a model's files live in its source's directory:
``model_path`` is ``<code>/<base_filename>``; ``download_model`` runs when
that path does not exist. ``load_model`` may return a
:class:`~modelzoo.Model` or any object with ``predict`` (and maybe
``predict_all``), which is adapted. ``load_zoo_model(name, pretrained=False)``
skips the download and passes ``pretrained=False`` to ``load_model``.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from typing import Any, Dict, List, Optional, Sequence

from ..atomic import write_json_atomic
from ..errors import ConfigError, DownloadError, ZooError
from ..models import Model
from .manifest import ModelSpec, Requirements, ZooModelInfo
from .sources import ZooSource
from .trust import check_record, file_digests, sign_record
from .weights import zoo_home

__all__ = [
    "RemoteSources",
    "register_zoo_model_source",
    "list_zoo_model_sources",
    "delete_zoo_model_source",
    "sources_root",
]

MANIFEST = "manifest.json"
_RECORD = "source.json"
_CODE = "code"


def sources_root() -> str:
    """``$MODELZOO_HOME/_sources``: one directory per registered source."""
    return os.path.join(zoo_home(), "_sources")


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", name.strip()).strip("-.") or "source"
    return slug[:100]


def _normalize(path_or_url: str) -> str:
    """A local folder's absolute path; a URL as given; ``user/repo`` as its GitHub URL."""
    if os.path.isdir(os.path.expanduser(path_or_url)):
        return os.path.abspath(os.path.expanduser(path_or_url))
    if re.match(r"^[a-z][a-z0-9+.-]*://", path_or_url):
        return path_or_url
    if re.match(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+(/.*)?$", path_or_url):
        return "https://github.com/" + path_or_url
    raise ZooError(
        f"Remote zoo source {path_or_url!r} is neither a folder on this machine, a URL, nor a GitHub 'user/repo'"
    )


def _manifest_dirs(root: str) -> List[str]:
    """Directories under ``root`` holding a ``manifest.json`` (not looking below one), as FiftyOne walks them."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        if MANIFEST in filenames:
            out.append(dirpath)
            dirnames[:] = []
    return out


def _fetch(url: str, into: str) -> str:
    """Brings a git repository or an archive to ``into``; returns its root."""
    github = re.match(r"^https://github\.com/([^/]+)/([^/]+?)(?:\.git)?(?:/(?:tree|commit)/(.+))?/?$", url)
    if github or url.endswith(".git"):
        repo = f"https://github.com/{github.group(1)}/{github.group(2)}.git" if github else url
        ref = github.group(3) if github else None
        if shutil.which("git") is None:
            raise ZooError(f"Registering {url} needs git on the PATH (or download it and register the folder)")
        dest = os.path.join(into, "repo")
        result = subprocess.run(["git", "clone", "--quiet", *([] if ref else ["--depth", "1"]), repo, dest],
                                capture_output=True, text=True)
        if result.returncode == 0 and ref:
            result = subprocess.run(["git", "-C", dest, "checkout", "--quiet", ref], capture_output=True, text=True)
        if result.returncode != 0:
            raise DownloadError(f"Cannot fetch remote zoo source {url}: {result.stderr.strip()[-300:]}")
        return dest
    if url.startswith(("http://", "https://")) and re.search(r"\.(zip|tar|tar\.gz|tgz|tar\.bz2|tar\.xz)$", url):
        import urllib.request

        archive = os.path.join(into, os.path.basename(url))
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as e:
            raise DownloadError(f"Cannot download remote zoo source {url}: {e}") from None
        dest = os.path.join(into, "archive")
        if archive.endswith(".zip"):
            import zipfile

            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    target = os.path.abspath(os.path.join(dest, member))
                    if not target.startswith(os.path.abspath(dest) + os.sep):
                        raise ZooError(f"Remote zoo source {url}: archive member {member!r} escapes its folder")
                z.extractall(dest)
        else:
            import tarfile

            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")  # refuses links and paths that escape
        return dest
    raise ZooError(
        f"Cannot register {url}: expected a folder, a GitHub repository ('user/repo' or its URL), a git URL "
        "or an http(s) URL of a .zip / .tar.gz archive"
    )


def _read_manifest(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise ZooError(f"Remote zoo source manifest {path} cannot be read: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), list):
        raise ZooError(f"Remote zoo source manifest {path} must be an object with a 'models' list")
    missing = [k for k in ("name",) if not data.get(k)]
    if missing:
        raise ZooError(f"Remote zoo source manifest {path} has no 'name' (FiftyOne requires one: 'user/repo')")
    for i, m in enumerate(data["models"]):
        if not isinstance(m, dict) or not isinstance(m.get("base_name"), str) or not m["base_name"]:
            raise ZooError(f"Remote zoo source manifest {path}: model #{i} has no 'base_name'")
        filename = str(m.get("base_filename") or m["base_name"])
        parts = filename.replace("\\", "/").split("/")
        if os.path.isabs(filename) or ".." in parts or "@" in m["base_name"]:
            raise ZooError(f"Remote zoo source manifest {path}: model {m['base_name']!r} has an unsafe name or base_filename")
    if not os.path.isfile(os.path.join(os.path.dirname(path), "__init__.py")):
        raise ZooError(
            f"Remote zoo source {os.path.dirname(path)} has a manifest.json but no __init__.py with "
            "download_model(model_name, model_path) and load_model(model_name, model_path, **kwargs)"
        )
    return data


def register_zoo_model_source(path_or_url: str, overwrite: bool = False) -> List[str]:
    """Registers a FiftyOne-style remote source of models; returns the names of its models.

    Registering is your explicit trust in the source's code: its files are
    copied into the zoo and recorded, signed with your key; the code runs
    (``download_model``, ``load_model``) only while it is unchanged.

    Args:
        path_or_url: a folder, a GitHub ``user/repo`` or repository URL
            (``.../tree/<ref>`` for a branch or commit), a git URL, or an
            http(s) URL of a zip / tar archive.
        overwrite: replace a source already registered under the same name.

    Raises:
        ZooError: no ``manifest.json`` (with ``__init__.py``) in it, a name taken
            without ``overwrite``, or a fetch that failed.
    """
    url = _normalize(path_or_url)
    root = sources_root()
    os.makedirs(root, exist_ok=True)
    names: List[str] = []
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as tmp:
        fetched = url if os.path.isdir(url) else _fetch(url, tmp)
        dirs = _manifest_dirs(fetched)
        if not dirs:
            raise ZooError(f"Remote zoo source {path_or_url!r} holds no {MANIFEST} (FiftyOne's remote-source layout)")
        for d in dirs:
            data = _read_manifest(os.path.join(d, MANIFEST))
            slug = _slug(str(data["name"]))
            target = os.path.join(root, slug)
            if os.path.exists(target):
                record = _read_record(target)
                if not overwrite:
                    raise ZooError(
                        f"A remote zoo source named {data['name']!r} is already registered (from {record.get('url')}); "
                        "pass overwrite=True to replace it"
                    )
            staging = os.path.join(root, f".staging-{uuid.uuid4().hex}")
            shutil.copytree(d, os.path.join(staging, _CODE), ignore=shutil.ignore_patterns("__pycache__", ".git"))
            payload = {
                "kind": "remote-zoo-source",
                "name": str(data["name"]),
                "url": url,
                "subdir": os.path.relpath(d, fetched).replace(os.sep, "/"),
                "files": file_digests(os.path.join(staging, _CODE)),
                "registered_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            write_json_atomic(os.path.join(staging, _RECORD), {"payload": payload, "signature": sign_record(payload)},
                              file_mode=0o600, indent=2)
            if os.path.exists(target):
                trash = os.path.join(root, f".trash-{uuid.uuid4().hex}")
                os.rename(target, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(staging, target)
            names.extend(str(m["base_name"]) for m in data["models"])
    from .registry import registry

    registry.reload()
    return names


def _read_record(source_dir: str) -> Dict[str, Any]:
    path = os.path.join(source_dir, _RECORD)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        payload = record["payload"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ZooError(f"Remote zoo source record {path} is unreadable ({e}); delete {source_dir} and register it again") from None
    return {**payload, "signature": record.get("signature")}


def _records() -> List[Dict[str, Any]]:
    root = sources_root()
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        d = os.path.join(root, name)
        if name.startswith(".") or not os.path.isfile(os.path.join(d, _RECORD)):
            continue
        out.append({**_read_record(d), "dir": d})
    return out


def list_zoo_model_sources() -> List[str]:
    """The registered remote sources: the folder or URL each was registered from, sorted."""
    return sorted({r["url"] for r in _records()})


def delete_zoo_model_source(path_or_url: str) -> None:
    """Deletes a registered remote source (by the folder or URL it was
    registered from, or its manifest's name) and its downloaded models.

    Raises:
        ZooError: no such source (listing the registered ones).
    """
    try:
        url: Optional[str] = _normalize(path_or_url)
    except ZooError:
        url = None
    matched = [r for r in _records() if r["url"] in (url, path_or_url) or r["name"] == path_or_url]
    if not matched:
        raise ZooError(
            f"No remote zoo source {path_or_url!r} is registered; the registered ones are: "
            + (", ".join(list_zoo_model_sources()) or "none")
        )
    for r in matched:
        trash = os.path.join(sources_root(), f".trash-{uuid.uuid4().hex}")
        os.rename(r["dir"], trash)
        shutil.rmtree(trash, ignore_errors=True)
    from .registry import registry

    registry.reload()


# -- the source ---------------------------------------------------------------------------


def _requirements(obj: Any) -> Requirements:
    if not isinstance(obj, dict):
        return Requirements()
    packages = tuple(str(p) for p in obj.get("packages") or ())

    def support(key: str) -> bool:
        value = obj.get(key)
        if isinstance(value, dict):
            return bool(value.get("support", True))
        return True if value is None else bool(value)

    cpu, gpu = support("cpu"), support("gpu")
    return Requirements(packages=packages, cpu=cpu or not gpu, gpu=gpu)


class _ForeignModel(Model):
    """A remote source's model that is not a :class:`~modelzoo.Model` (a
    FiftyOne model): its ``predict`` / ``predict_all`` are called as they are."""

    def __init__(self, obj: Any):
        super().__init__(None)
        self.wrapped = obj

    @property
    def media_type(self) -> str:
        return str(getattr(self.wrapped, "media_type", "image"))

    def __enter__(self) -> "_ForeignModel":
        enter = getattr(self.wrapped, "__enter__", None)
        if callable(enter):
            enter()
        return self

    def __exit__(self, *exc: Any) -> None:
        exit_ = getattr(self.wrapped, "__exit__", None)
        if callable(exit_):
            exit_(*exc)

    def predict(self, arg: Any) -> Any:
        return self.wrapped.predict(arg)

    def predict_all(self, args: Sequence[Any]) -> List[Any]:
        many = getattr(self.wrapped, "predict_all", None)
        return list(many(args)) if callable(many) else [self.wrapped.predict(a) for a in args]


class RemoteSources(ZooSource):
    """The models of every registered remote source (see the module's docstring)."""

    name = "remote"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._modules: Dict[str, Any] = {}

    def entries(self) -> List[ZooModelInfo]:
        out = []
        for record in _records():
            manifest_path = os.path.join(record["dir"], _CODE, MANIFEST)
            data = _read_manifest(manifest_path)
            for m in data["models"]:
                version = m.get("version")
                out.append(ZooModelInfo(
                    name=str(m["base_name"]),
                    version=str(version) if version else "1.0",
                    description=str(m.get("description") or ""),
                    source=str(m.get("source") or data.get("url") or record["url"]),
                    license=str(m.get("license") or ""),
                    size_bytes=m.get("size_bytes") if isinstance(m.get("size_bytes"), int) else None,
                    tags=tuple(str(t) for t in m.get("tags") or ()),
                    requirements=_requirements(m.get("requirements")),
                    weights=None,
                    model=ModelSpec(type=record["dir"], config=None, kind="remote"),
                    date_added=str(m.get("date_added") or "")[:10] or None,
                    training_data="",
                    origin=f"remote source {record['name']} ({manifest_path})",
                    zoo_source=self.name,
                    metadata={"source_dir": record["dir"], "filename": str(m.get("base_filename") or m["base_name"]),
                              "source_name": record["name"], "url": record["url"], "prevalidated": True},
                ))
        return out

    def _module(self, info: ZooModelInfo) -> Any:
        """The source's ``__init__.py``, imported once its record is verified."""
        source_dir = info.metadata["source_dir"]
        record = _read_record(source_dir)
        signature = record.pop("signature", None)
        check_record(record, signature, what=f"remote zoo source {record['name']!r} ({record['url']})")
        code = os.path.join(source_dir, _CODE)
        for rel, sha in record["files"].items():
            path = os.path.join(code, rel)
            actual = file_digests(os.path.dirname(path)).get(os.path.basename(path)) if os.path.isfile(path) else None
            if actual != sha:
                raise ZooError(
                    f"Remote zoo source {record['name']!r}: {path} changed since it was registered (or is missing); "
                    f"its code will not run. Register the source again (register_zoo_model_source({record['url']!r}, "
                    "overwrite=True)) if you trust the change."
                )
        key = f"{source_dir}:{sorted(record['files'].items())}"
        with self._lock:
            module = self._modules.get(key)
            if module is None:
                name = "modelzoo_remote_" + re.sub(r"\W", "_", os.path.basename(source_dir))
                spec = importlib.util.spec_from_file_location(name, os.path.join(code, "__init__.py"),
                                                              submodule_search_locations=[code])
                if spec is None or spec.loader is None:
                    raise ZooError(f"Cannot import {os.path.join(code, '__init__.py')}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
                self._modules[key] = module
        return module

    def model_path(self, info: ZooModelInfo) -> str:
        """Where the model's files live: ``<source>/code/<base_filename>``, as in FiftyOne."""
        return os.path.join(info.metadata["source_dir"], _CODE, info.metadata["filename"])

    def _function(self, module: Any, name: str, info: ZooModelInfo) -> Any:
        fn = getattr(module, name, None)
        if not callable(fn):
            raise ConfigError(f"Remote zoo source {info.metadata['source_name']!r}: its __init__.py has no {name}()")
        return fn

    def download(self, info: ZooModelInfo, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
        path = self.model_path(info)
        if overwrite and os.path.exists(path):
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        if not os.path.exists(path):
            module = self._module(info)
            self._function(module, "download_model", info)(info.name, path)
        return path

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        download = options.pop("download", True)
        options.pop("progress", None)
        module = self._module(info)
        path = self.model_path(info)
        if pretrained and not os.path.exists(path):
            if not download:
                raise DownloadError(
                    f"Zoo model {info.key} of remote source {info.metadata['source_name']!r} is not downloaded: "
                    f"run modelzoo.download_zoo_model({info.name!r}), or place its files at {path}"
                )
            self._function(module, "download_model", info)(info.name, path)
        if not pretrained:
            options["pretrained"] = False
        obj = self._function(module, "load_model", info)(info.name, path, **options)
        if isinstance(obj, Model):
            return obj
        if callable(getattr(obj, "predict", None)):
            return _ForeignModel(obj)
        raise ZooError(f"Zoo model {info.key}: load_model() returned {type(obj).__name__}, which has no predict()")

    def is_downloaded(self, info: ZooModelInfo) -> bool:
        return os.path.exists(self.model_path(info))

    def delete(self, info: ZooModelInfo) -> bool:
        path = self.model_path(info)
        if not os.path.exists(path):
            return False
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        return True
