"""Weights: the cache, local sources searched by checksum, and resumable downloads.

Where a model's weights file is looked for, in order:

1. the cache, ``$MODELZOO_HOME/<name>/<version>/<filename>`` (default
   ``MODELZOO_HOME=~/.modelzoo/models``);
2. a file found earlier in a local source (remembered in the cache directory);
3. the local sources, searched by checksum: the entry's ``local_sources``
   (``"package:NAME"`` or a directory), the directories of
   ``$MODELZOO_WEIGHTS_PATH`` (``os.pathsep``-separated) and torch's hub cache
   (``$TORCH_HOME/hub/checkpoints``, by file name only);
4. the entry's URL (``http(s)://`` or ``file://``), downloaded to ``<file>.part``
   with resume (HTTP ``Range``), verified, then atomically renamed into place.

A file's sha256 is checked before its first use (a library catalogue's
entry may know only the hash prefix its file name carries, torch hub's rule:
the file must match it, and the whole hash is recorded then, see
:func:`recorded_sha256`); a verified file gets a
``<file>.verified`` record (size, mtime, inode, change time, sha256) so that
later loads skip the hash while the file is unchanged. The change time
(``st_ctime``) cannot be set back by anyone but root (``os.utime`` sets the
modification time, not it), so a file rewritten and re-dated is hashed again.
Downloads are written to a 0600 ``.part`` file; a verified file then gets
its final mode (the source's for ``file://``, 0644 less the umask for HTTP),
and a mismatch stays 0600. A mismatch sets the file aside as
``<file>.sha256-mismatch`` and raises :class:`~modelzoo.errors.ChecksumError`
with both hashes. ``MODELZOO_OFFLINE=1`` forbids downloads; every download
error names the URL and the exact path where the file can be placed by hand.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import unquote, urlparse

from ..atomic import write_json_atomic
from ..checksum import sha256_file
from ..errors import ChecksumError, DownloadError, ZooError
from ..progress import progress_bar
from .manifest import ZooModelInfo

__all__ = [
    "ENV_HOME",
    "ENV_OFFLINE",
    "ENV_WEIGHTS_PATH",
    "zoo_home",
    "model_dir",
    "cache_path",
    "find_weights",
    "resolve_weights",
    "download_weights",
    "delete_weights",
    "recorded_sha256",
]

logger = logging.getLogger("modelzoo.zoo")

ENV_HOME = "MODELZOO_HOME"
ENV_OFFLINE = "MODELZOO_OFFLINE"
ENV_WEIGHTS_PATH = "MODELZOO_WEIGHTS_PATH"

_CHUNK = 1 << 20
_LINK_FILE = "weights-source.json"
_TIMEOUT = 30.0


def zoo_home() -> str:
    """The weights cache: ``$MODELZOO_HOME`` or ``~/.modelzoo/models``."""
    return os.path.abspath(os.path.expanduser(os.environ.get(ENV_HOME) or os.path.join("~", ".modelzoo", "models")))


def model_dir(info: ZooModelInfo) -> str:
    """``<home>/<name>/<version>``: everything the zoo stores for one entry."""
    return os.path.join(zoo_home(), info.name, info.version)


def cache_path(info: ZooModelInfo) -> str:
    """Where the entry's weights file lives in the cache (whether or not it is there)."""
    if info.weights is None:
        raise ZooError(f"Zoo model {info.key} has no weights file")
    return os.path.join(model_dir(info), info.weights.filename)


# -- verification records ------------------------------------------------------------------


def _stat_key(path: str) -> Tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def _read_json(path: str) -> Optional[Dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json_atomic(path: str, data: Dict) -> None:
    write_json_atomic(path, data, indent=2)


def _is_recorded(record: Optional[Dict], path: str, sha256: str) -> bool:
    """Whether ``record`` says ``path`` (unchanged since) has a hash starting
    with ``sha256`` (the whole hash, or the prefix a library's file name carries)."""
    if not record or not str(record.get("sha256", "")).startswith(sha256) or record.get("path", path) != path:
        return False
    try:
        size, mtime, ino, ctime = _stat_key(path)
    except OSError:
        return False
    return (record.get("size"), record.get("mtime_ns"), record.get("ino"), record.get("ctime_ns")) == (size, mtime, ino, ctime)


def _record(path: str, sha256: str) -> Dict:
    size, mtime, ino, ctime = _stat_key(path)
    return {"path": path, "sha256": sha256, "size": size, "mtime_ns": mtime, "ino": ino, "ctime_ns": ctime}


def _umask() -> int:
    """This process's umask, read without changing it (Linux); 0o022 where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _open_part(part: str, append: bool) -> Any:
    """The ``.part`` file, only this user can read it (until it is verified)."""
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab" if append else "wb")


def _set_aside(path: str) -> str:
    aside = path + ".sha256-mismatch"
    os.replace(path, aside)
    return aside


def _verify_cached(info: ZooModelInfo, path: str) -> bool:
    """True when the cached file is there and verified (hashing it once if needed)."""
    assert info.weights is not None
    if not os.path.isfile(path):
        return False
    marker = path + ".verified"
    if _is_recorded(_read_json(marker), path, info.weights.sha256):
        return True
    actual = sha256_file(path)
    if not info.weights.matches(actual):
        aside = _set_aside(path)
        raise ChecksumError(
            path, info.weights.sha256, actual,
            hint=f"The file was moved to {aside}. Delete it, then download {info.key} again"
            + (f" from {info.weights.url}." if info.weights.url else "."),
        )
    _write_json_atomic(marker, _record(path, actual))
    return True


def recorded_sha256(info: ZooModelInfo) -> Optional[str]:
    """The whole sha256 of the entry's weights: the entry's own, or the one
    recorded when a file known by its hash prefix (torch hub's rule) was
    first downloaded or found and verified; None while neither is known."""
    if info.weights is None:
        return None
    if info.weights.full_sha256:
        return info.weights.sha256
    for record_path in (cache_path(info) + ".verified", os.path.join(model_dir(info), _LINK_FILE)):
        record = _read_json(record_path)
        sha = str((record or {}).get("sha256", ""))
        if len(sha) == 64 and info.weights.matches(sha):
            return sha
    return None


# -- local sources -------------------------------------------------------------------------


def _torch_hub_checkpoints() -> str:
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "torch"
    )
    return os.path.join(os.path.expanduser(torch_home), "hub", "checkpoints")


def _package_dirs(name: str) -> List[str]:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations:
        return [os.fspath(p) for p in spec.submodule_search_locations]
    if spec.origin:
        return [os.path.dirname(spec.origin)]
    return []


def local_source_dirs(info: ZooModelInfo) -> List[str]:
    """The directories searched for the entry's weights, in order."""
    dirs: List[str] = []
    sources = list(info.weights.local_sources) if info.weights else []
    for source in sources:
        if source.startswith("package:"):
            dirs.extend(_package_dirs(source[len("package:"):]))
        else:
            dirs.append(os.path.expanduser(source))
    dirs.extend(p for p in os.environ.get(ENV_WEIGHTS_PATH, "").split(os.pathsep) if p)
    dirs.append(_torch_hub_checkpoints())
    seen, out = set(), []
    for d in dirs:
        d = os.path.abspath(d)
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".pkl", ".onnx", ".h5", ".npz")


def _candidates(root: str, filename: str, size: Optional[int]) -> Iterator[str]:
    """Files under ``root`` that may be the weights: same name first, then same
    size (when the size is unknown: any file with a weights-like suffix)."""
    same_name, same_size = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        for f in filenames:
            p = os.path.join(dirpath, f)
            if f == filename:
                same_name.append(p)
            elif size:
                try:
                    if os.path.getsize(p) == size:
                        same_size.append(p)
                except OSError:
                    pass
            elif f.lower().endswith(_WEIGHT_SUFFIXES):
                same_size.append(p)
    yield from same_name
    yield from same_size


def find_local_weights(info: ZooModelInfo) -> Optional[str]:
    """Searches the local sources by checksum; returns the matching file or None.

    A file is a candidate when it has the weights' file name or their size
    (or, when the size is unknown, a weights-like suffix); only candidates are hashed.
    """
    assert info.weights is not None
    size = info.size_bytes or None
    hub = os.path.abspath(_torch_hub_checkpoints())
    for root in local_source_dirs(info):
        # torch's hub cache can hold many large files: only its same-name file is hashed
        names_only = root == hub
        for path in _candidates(root, info.weights.filename, size):
            if names_only and os.path.basename(path) != info.weights.filename:
                continue
            try:
                if size and os.path.getsize(path) != size:
                    continue
                if info.weights.matches(sha256_file(path)):
                    logger.info("Zoo model %s: using weights found at %s", info.key, path)
                    return os.path.abspath(path)
            except OSError:
                continue
    return None


# -- finding -------------------------------------------------------------------------------


def find_weights(info: ZooModelInfo, search: bool = True) -> Optional[str]:
    """The verified weights file of an entry already on this machine, or None.

    Checks the cache, then the file a previous search found, then (with
    ``search``) the local sources.

    Raises:
        ChecksumError: the cached file does not match (it is set aside).
    """
    if info.weights is None:
        return None
    path = cache_path(info)
    if _verify_cached(info, path):
        return path
    link = os.path.join(model_dir(info), _LINK_FILE)
    record = _read_json(link)
    if record and _is_recorded(record, record.get("path", ""), info.weights.sha256):
        return record["path"]
    if not search:
        return None
    found = find_local_weights(info)
    if found is not None:
        try:
            os.makedirs(model_dir(info), exist_ok=True)
            _write_json_atomic(link, _record(found, sha256_file(found) if not info.weights.full_sha256 else info.weights.sha256))
        except OSError as e:  # a read-only home only costs a search next time
            logger.debug("Cannot record %s: %s", link, e)
    return found


def resolve_weights(info: ZooModelInfo, download: bool = True, progress: Optional[bool] = None) -> Optional[str]:
    """The path of the entry's verified weights, downloading them if needed.

    Returns None for an entry without weights.

    Raises:
        DownloadError: not on this machine and the download failed (or is
            forbidden), naming the URL and where to place the file by hand.
        ChecksumError: the file does not have the expected sha256.
    """
    if info.weights is None:
        return None
    found = find_weights(info)
    if found is not None:
        return found
    if not download:
        url = f" from {info.weights.url}" if info.weights.url else ""
        raise DownloadError(
            f"Weights of zoo model {info.key} ({info.weights.filename}) are not on this machine. Download them{url} "
            f"with modelzoo.download_zoo_model({info.key!r}), or place the file at {cache_path(info)}; "
            "or load the architecture alone with pretrained=False."
        )
    return download_weights(info, progress=progress)


# -- downloading ---------------------------------------------------------------------------


def _manual_hint(info: ZooModelInfo, dest: str) -> str:
    assert info.weights is not None
    sha = info.weights.sha256
    which = f"sha256 {sha}" if info.weights.full_sha256 else f"its sha256 starts with {sha}"
    return (
        f"Download it by hand and place it at {dest} ({which}), "
        f"or set {ENV_WEIGHTS_PATH} to a directory that holds it."
    )


def download_weights(
    info: ZooModelInfo, progress: Optional[bool] = None, overwrite: bool = False, retries: int = 2
) -> str:
    """Downloads the entry's weights into the cache, verifies them and returns the path.

    An interrupted HTTP transfer is resumed (``Range``) up to ``retries``
    times, and on the next call; the partial file is ``<file>.part``.

    Raises:
        DownloadError: offline (``MODELZOO_OFFLINE``), unreachable, HTTP error
            or missing ``file://`` source; names the URL and the manual path.
        ChecksumError: the downloaded file does not match; it is set aside.
    """
    if info.weights is None:
        raise ZooError(f"Zoo model {info.key} has no weights to download")
    dest = cache_path(info)
    url = info.weights.url
    if overwrite:
        for p in (dest, dest + ".verified", dest + ".part"):
            if os.path.exists(p):
                os.remove(p)
    elif _verify_cached(info, dest):
        return dest
    if url is None:
        sources = ", ".join(info.weights.local_sources)
        raise DownloadError(
            f"Weights of zoo model {info.key} ({info.weights.filename}) have no download URL and were not "
            f"found in their local sources ({sources}). " + _manual_hint(info, dest)
        )
    if os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no"):
        raise DownloadError(
            f"Cannot download weights of zoo model {info.key} from {url}: {ENV_OFFLINE} is set. "
            + _manual_hint(info, dest)
        )
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    part = dest + ".part"
    scheme = urlparse(url).scheme
    final_mode = 0o644 & ~_umask()
    if scheme == "file":
        final_mode = _copy_file_url(info, url, part, dest, progress) & final_mode
    else:
        attempt = 0
        while True:
            try:
                _http_download(url, part, info.size_bytes, info.weights.filename, progress)
                break
            except _Interrupted as e:
                attempt += 1
                if attempt > retries:
                    size = os.path.getsize(part) if os.path.exists(part) else 0
                    raise DownloadError(
                        f"Download of zoo model {info.key} from {url} was interrupted ({e}); {size} bytes are kept "
                        f"in {part} and the next attempt resumes from there. " + _manual_hint(info, dest)
                    ) from None
                logger.warning("Download of %s interrupted (%s); resuming (attempt %d)", url, e, attempt + 1)
                time.sleep(min(2.0 ** attempt * 0.25, 4.0))
            except _Failed as e:
                raise DownloadError(
                    f"Cannot download weights of zoo model {info.key} from {url}: {e}. " + _manual_hint(info, dest)
                ) from None
    actual = sha256_file(part)
    if not info.weights.matches(actual):
        aside = _set_aside(part)
        raise ChecksumError(
            dest, info.weights.sha256, actual,
            hint=f"The downloaded file was set aside as {aside}; the URL {url} serves a different file.",
        )
    os.chmod(part, final_mode)
    os.replace(part, dest)  # atomic: the cache never holds an unverified file under its final name
    _write_json_atomic(dest + ".verified", _record(dest, actual))
    return dest


class _Interrupted(Exception):
    """The transfer broke off after it started; resumable."""


class _Failed(Exception):
    """The transfer cannot succeed by retrying now (HTTP error, unreachable host)."""


def _http_download(url: str, part: str, expected_size: Optional[int], desc: str, progress: Optional[bool]) -> None:
    have = os.path.getsize(part) if os.path.exists(part) else 0
    headers = {"User-Agent": "modelzoo", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # nothing left to send: the part file is complete
            return
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _Failed(f"the server is unreachable ({e.reason}); are you offline?") from None
    except (socket.timeout, TimeoutError) as e:
        raise _Failed(f"the server did not answer within {_TIMEOUT:.0f}s ({e})") from None
    except (http.client.HTTPException, OSError) as e:
        raise _Interrupted(f"{type(e).__name__}: {e}") from None
    with response:
        status = getattr(response, "status", 200)
        start = 0
        if have and status == 206:
            content_range = response.headers.get("Content-Range", "")
            try:
                start = int(content_range.split()[1].split("-")[0])
            except (IndexError, ValueError):
                start = -1
            if start != have:  # the server resumed elsewhere: start over
                raise _Interrupted(f"server answered Range bytes={have}- with Content-Range {content_range!r}") from None
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else expected_size
        mode = "ab" if start else "wb"
        received = 0
        with _open_part(part, mode == "ab") as f, progress_bar(total, desc, unit="B", enabled=progress, initial=start) as bar:
            try:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            except (http.client.HTTPException, OSError) as e:
                raise _Interrupted(f"{type(e).__name__}: {e}") from None
        if length and length.isdigit() and received < int(length):
            raise _Interrupted(f"connection closed after {start + received} of {start + int(length)} bytes")


def _copy_file_url(info: ZooModelInfo, url: str, part: str, dest: str, progress: Optional[bool]) -> int:
    """Copies a ``file://`` source to ``part`` (0600); returns the source's permission bits."""
    parsed = urlparse(url)
    src = unquote(parsed.path)
    if parsed.netloc and parsed.netloc != "localhost":
        src = f"//{parsed.netloc}{src}"
    if not os.path.isfile(src):
        raise DownloadError(
            f"Cannot copy weights of zoo model {info.key} from {url}: {src} does not exist. " + _manual_hint(info, dest)
        )
    size = os.path.getsize(src)
    with open(src, "rb") as fin, _open_part(part, False) as fout, progress_bar(size, info.weights.filename if info.weights else "", unit="B", enabled=progress) as bar:
        while True:
            chunk = fin.read(_CHUNK)
            if not chunk:
                break
            fout.write(chunk)
            bar.update(len(chunk))
        return os.fstat(fin.fileno()).st_mode & 0o777


def delete_weights(info: ZooModelInfo) -> bool:
    """Deletes what the cache holds for the entry (never files in local sources).

    Returns:
        whether anything was deleted.
    """
    d = model_dir(info)
    if not os.path.isdir(d):
        return False
    shutil.rmtree(d)
    parent = os.path.dirname(d)
    try:
        os.rmdir(parent)  # only when no other version is left
    except OSError:
        pass
    return True
