"""A bundle's stored code: a cloudpickle of the callables, or a zip of directories.

Unpickling runs code, so :func:`load_pickle` refuses unless the caller
trusts the bundle. Zips are extracted refusing entries that would land
outside their directory, and their modules are imported without staying in
``sys.modules`` (two bundles may both have a ``predict`` module).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import os
import posixpath
import sys
import zipfile
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple

from .errors import BundleConfigError, UnsafeArchiveError, UntrustedBundleError

#: what a bundle zip may hold once extracted (a zip bomb is refused before anything is written)
MAX_EXTRACTED_BYTES = 2 * 1024**3
MAX_ENTRIES = 100_000

__all__ = [
    "MAX_EXTRACTED_BYTES",
    "MAX_ENTRIES",
    "pickle_callables",
    "pickle_schemas",
    "load_pickle",
    "zip_directories",
    "zip_modules",
    "safe_extract",
    "import_function",
    "zip_digest",
    "tree_digest",
    "extract_tops",
]


def pickle_callables(bundle: Any) -> bytes:
    """The callable flavor's artifact: its functions (or model) and schemas, cloudpickled."""
    import cloudpickle

    return cloudpickle.dumps({
        "load_predict_fn": bundle.load_predict_fn,
        "load_model_fn": bundle.load_model_fn,
        "model": bundle.model,
        "request_schema": bundle.request_schema,
        "response_schema": bundle.response_schema,
    })


def pickle_schemas(request_schema: Any, response_schema: Any) -> bytes:
    """The schemas of a zip or runnable bundle, cloudpickled (they are classes)."""
    import cloudpickle

    return cloudpickle.dumps({"request_schema": request_schema, "response_schema": response_schema})


def load_pickle(data: bytes, path: str, trusted: bool, bundle: str, what: str) -> Dict[str, Any]:
    """Unpickles a stored artifact (its bytes, already checked against its
    signed digest), only when it is ``trusted`` (signed by this user, or the
    caller passed ``trust=True``).

    Raises:
        UntrustedBundleError: not trusted; says why and how to proceed.
    """
    if not trusted:
        raise UntrustedBundleError(
            f"Bundle {bundle!r}: its {what} are stored as a pickle ({path}), and unpickling runs arbitrary "
            "code. Its record is not signed by this user's modelzoo key (another user or process wrote it, or it "
            "was changed since), so it is not loaded. Create it again as its owner, or, if you trust where it came "
            "from, pass trust=True (bundle.to_model(trust=True) or load_zoo_model(name, trust=True))."
        )
    import cloudpickle

    return cloudpickle.loads(data)


# -- zips -------------------------------------------------------------------------------------
def zip_directories(base_paths: Sequence[str]) -> bytes:
    """Zips each directory under its own name (Launch's layout: ``mydir/predict.py``).

    Raises:
        BundleConfigError: a path is not a directory, or two have the same name.
    """
    buf = io.BytesIO()
    names = set()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for base in base_paths:
            base = os.path.abspath(base)
            if not os.path.isdir(base):
                raise BundleConfigError(f"base_paths: {base!r} is not a directory")
            top = os.path.basename(base.rstrip(os.sep))
            if top in names:
                raise BundleConfigError(f"base_paths: two directories are named {top!r}; rename one")
            names.add(top)
            for root, dirs, files in os.walk(base):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    full = os.path.join(root, name)
                    rel = os.path.relpath(full, os.path.dirname(base))
                    info = zipfile.ZipInfo(rel.replace(os.sep, "/"), date_time=(1980, 1, 1, 0, 0, 0))
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with open(full, "rb") as f:
                        zf.writestr(info, f.read())  # fixed dates: the same files give the same digest
    return buf.getvalue()


def _top_dirs(names: Sequence[str]) -> List[str]:
    return sorted({n.split("/", 1)[0] for n in names if "/" in n})


def zip_modules(data: bytes) -> List[str]:
    """The importable modules in a bundle zip, both as ``dir.module`` and, for
    the files at the top of each directory, ``module``."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    out = set()
    for n in names:
        if not n.endswith(".py"):
            continue
        parts = n[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            out.add(".".join(parts))
            if len(parts) > 1:
                out.add(".".join(parts[1:]))
    return sorted(out)


def _bounded(zf: zipfile.ZipFile) -> List[zipfile.ZipInfo]:
    """The zip's entries, refusing a zip bomb (zipfile reads no more than an entry declares)."""
    infos = zf.infolist()
    total = sum(i.file_size for i in infos)
    if total > MAX_EXTRACTED_BYTES or len(infos) > MAX_ENTRIES:
        raise UnsafeArchiveError(
            f"Refusing to extract the bundle zip: it declares {len(infos)} entries and {total} bytes once "
            f"extracted (at most {MAX_ENTRIES} and {MAX_EXTRACTED_BYTES} bytes). Bundle code only; keep data "
            "and weights out of base_paths."
        )
    return infos


def safe_extract(data: bytes, dest: str) -> List[str]:
    """Extracts a bundle zip into ``dest`` and returns the top directories.

    Raises:
        UnsafeArchiveError: an entry is absolute, holds ``..``, or is a link;
            the zip would extract to more than :data:`MAX_EXTRACTED_BYTES` or
            :data:`MAX_ENTRIES`; nothing is extracted then.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        infos = _bounded(zf)
        for info in infos:
            name = info.filename
            norm = posixpath.normpath(name.replace("\\", "/"))
            mode = (info.external_attr >> 16) & 0o170000
            if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or norm.startswith("..") or ".." in name.replace("\\", "/").split("/"):
                raise UnsafeArchiveError(
                    f"Refusing to extract the bundle zip: entry {name!r} would be written outside its directory "
                    "(absolute paths and '..' are not allowed). Rebuild the zip from plain directories."
                )
            if mode == 0o120000:
                raise UnsafeArchiveError(f"Refusing to extract the bundle zip: entry {name!r} is a symbolic link")
        os.makedirs(dest, exist_ok=True)
        root = os.path.realpath(dest)
        for info in infos:
            target = os.path.realpath(os.path.join(root, info.filename))
            if not target.startswith(root + os.sep) and target != root:  # belt and braces
                raise UnsafeArchiveError(f"Refusing to extract {info.filename!r}: it resolves outside {dest}")
            zf.extract(info, root)
        return _top_dirs([i.filename for i in infos])


@contextlib.contextmanager
def _isolated_imports(paths: Sequence[str]) -> Iterator[None]:
    """``paths`` first on ``sys.path`` and a clean slate in ``sys.modules`` for
    the duration; every module imported meanwhile is removed afterwards (the
    functions keep their modules alive through their globals)."""
    before = set(sys.modules)
    saved_path = list(sys.path)
    saved_bytecode = sys.dont_write_bytecode
    sys.path[:0] = list(paths)
    sys.dont_write_bytecode = True  # the extracted tree must stay exactly the zip's (see tree_digest)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_bytecode
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            del sys.modules[name]
        importlib.invalidate_caches()


def import_function(root: str, tops: Sequence[str], dotted: str, what: str, bundle: str, modules: Sequence[str]) -> Callable[..., Any]:
    """Imports ``module.function`` from an extracted bundle zip.

    Raises:
        BundleConfigError: the module is not in the zip (the modules found are
            listed), fails to import, or lacks the function.
    """
    module_name, _, fn_name = dotted.rpartition(".")
    if not module_name or module_name not in modules:
        raise BundleConfigError(
            f"Bundle {bundle!r}: {what} {dotted!r} names module {module_name or dotted!r}, which is not in the "
            f"bundle's zip. Modules found: {', '.join(modules) or '(none)'}. Give 'module.function', e.g. "
            f"'{(modules or ['predict'])[0]}.my_function'."
        )
    paths = [root] + [os.path.join(root, t) for t in tops]
    # A module shadowed by one already imported elsewhere (same name) must come from the zip.
    shadowed = {n: sys.modules.pop(n) for n in list(sys.modules) if n == module_name.split(".")[0] or n.startswith(module_name.split(".")[0] + ".")}
    try:
        with _isolated_imports(paths):
            try:
                module = importlib.import_module(module_name)
            except Exception as e:
                raise BundleConfigError(
                    f"Bundle {bundle!r}: importing {module_name!r} for {what} failed: {type(e).__name__}: {e}"
                ) from e
    finally:
        sys.modules.update(shadowed)
    fn = getattr(module, fn_name, None)
    if fn is None:
        names = sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n]))
        raise BundleConfigError(
            f"Bundle {bundle!r}: module {module_name!r} has no {fn_name!r} ({what}). Its functions: {', '.join(names)}"
        )
    return fn


def zip_digest(data: bytes) -> str:
    """A digest of a zip's files (names and contents), as :func:`tree_digest` gives for its extraction."""
    mac = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in sorted(_bounded(zf), key=lambda i: i.filename):
            if info.is_dir():
                continue
            mac.update(posixpath.normpath(info.filename).encode() + b"\0" + hashlib.sha256(zf.read(info)).digest())
    return mac.hexdigest()


def tree_digest(root: str) -> str:
    """A digest of the regular files under ``root`` (relative names and contents);
    a link or any other kind of file makes it ``"!"`` (never a zip's digest)."""
    mac = hashlib.sha256()
    entries = []
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not (os.path.isdir(full) or os.path.isfile(full)):
                return "!"
        for name in files:
            full = os.path.join(dirpath, name)
            entries.append((os.path.relpath(full, root).replace(os.sep, "/"), full))
    for rel, full in sorted(entries):
        with open(full, "rb") as f:
            mac.update(rel.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return mac.hexdigest()


def extract_tops(data: bytes) -> Tuple[List[str], List[str]]:
    """``(top directories, modules)`` of a zip, without extracting it."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return _top_dirs(zf.namelist()), zip_modules(data)
