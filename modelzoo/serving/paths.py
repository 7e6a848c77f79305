"""Path inputs, confined: :class:`PathPolicy` decides which files a request may name.

A request that names a file (``{"path": ...}``) reads from the server's
machine, with the server's rights. So a server opens no path unless its
operator listed the folders it may read (``modelzoo serve NAME --allow-paths
DIR...``), and then only:

- a path whose real path (symlinks resolved) lies under one of those
  folders: a symlink inside a folder that points out of it is refused;
- a regular file: FIFOs, devices, sockets and directories are refused. The
  file is opened with ``O_NONBLOCK`` (a FIFO without a writer does not block
  the open) and ``O_NOFOLLOW``, and checked with ``fstat`` on the open
  descriptor, so what is checked is what is read;
- of at most ``max_bytes`` bytes, checked before reading (and the read stops
  one byte past the limit, should the file grow meanwhile).

Every refusal is an :class:`~modelzoo.serving.errors.InputError` on the
field ``"path"`` (HTTP 422), or a :class:`~modelzoo.serving.errors.TooLargeError`
(HTTP 413) for size.
"""

from __future__ import annotations

import os
import stat
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigError
from .errors import InputError, TooLargeError

__all__ = ["PathPolicy", "resolve_roots"]

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_NOCTTY", 0)
_PROC_FD = "/proc/self/fd"
_CHUNK = 1 << 20


def resolve_roots(roots: Optional[Iterable[Union[str, "os.PathLike[str]"]]]) -> Tuple[str, ...]:
    """The real paths of the allowed folders.

    Raises:
        ConfigError: a root that is not an existing directory, or ``roots``
            given as a bool (``allow_paths=True`` once meant "any file").
    """
    if roots is None or roots is False:
        return ()
    if roots is True or isinstance(roots, (str, bytes, os.PathLike)):
        raise ConfigError(
            f"allow_paths takes a list of the folders requests may read files from, got {roots!r}; "
            "e.g. allow_paths=['/data/images'] (modelzoo serve NAME --allow-paths /data/images)"
        )
    out: List[str] = []
    for root in roots:
        path = os.path.realpath(os.fspath(root))
        if not os.path.isdir(path):
            raise ConfigError(f"allow_paths: {os.fspath(root)!r} is not an existing folder")
        if path not in out:
            out.append(path)
    return tuple(out)


def _inside(path: str, roots: Sequence[str]) -> bool:
    for root in roots:
        if path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep):
            return True
    return False


class PathPolicy:
    """Which files requests may read, and how much of them.

    Args:
        roots: the allowed folders (none: path inputs are refused).
        max_bytes: a larger file is refused before it is read.
    """

    def __init__(self, roots: Optional[Iterable[Union[str, "os.PathLike[str]"]]], max_bytes: int):
        self.roots = resolve_roots(roots)
        self.max_bytes = int(max_bytes)

    def __repr__(self) -> str:
        return f"PathPolicy(roots={list(self.roots)!r}, max_bytes={self.max_bytes})"

    @property
    def enabled(self) -> bool:
        """Whether any path is allowed."""
        return bool(self.roots)

    def resolve(self, path: str) -> str:
        """The real path of ``path``, checked to lie under an allowed folder (not opened).

        Raises:
            InputError: path inputs are off, or the path lies outside the allowed folders.
        """
        if not self.roots:
            raise InputError(
                "path", "this server does not open files by path: send the image itself (its bytes, or base64 "
                "in 'image'), or start the server with --allow-paths DIR (allow_paths=[DIR] in Python)"
            )
        if not isinstance(path, str) or not path or "\x00" in path:
            raise InputError("path", f"not a file path: {path!r:.200}")
        real = os.path.realpath(path)
        if not _inside(real, self.roots):
            raise InputError("path", f"{path!r:.300} is outside the folders this server reads from (--allow-paths)")
        return real

    def _open(self, path: str) -> Tuple[int, str, int]:
        real = self.resolve(path)
        try:
            fd = os.open(real, _FLAGS)
        except FileNotFoundError:
            raise InputError("path", f"file not found: {path!r:.300}") from None
        except OSError as e:  # ELOOP: the last component became a symlink after it was resolved
            raise InputError("path", f"cannot open {path!r:.300}: {e.strerror or e}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InputError("path", f"{path!r:.300} is not a regular file (a FIFO, device, socket or folder)")
            opened = _opened_path(fd)
            if opened is not None and not _inside(opened, self.roots):  # a folder on the way was swapped
                raise InputError("path", f"{path!r:.300} is outside the folders this server reads from (--allow-paths)")
            if info.st_size > self.max_bytes:
                raise TooLargeError(
                    "path", f"{path!r:.300} has {info.st_size} bytes, over the limit of {self.max_bytes} "
                    "(--max-file-bytes)", info.st_size, self.max_bytes,
                )
        except BaseException:
            os.close(fd)
            raise
        return fd, real, int(info.st_size)

    def check(self, path: str) -> str:
        """For a model that opens the file itself: the checked real path.

        Raises:
            InputError: refused (see the module docstring); ``TooLargeError`` for size.
        """
        fd, real, _ = self._open(path)
        os.close(fd)
        return real

    def read(self, path: str) -> bytes:
        """The file's bytes, read from the descriptor that was checked.

        Raises:
            InputError: refused (see the module docstring); ``TooLargeError`` for size.
        """
        fd, _, size = self._open(path)
        try:
            os.set_blocking(fd, True)
            chunks, total = [], 0
            while True:
                chunk = os.read(fd, min(_CHUNK, self.max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > self.max_bytes:
                    raise TooLargeError(
                        "path", f"{path!r:.300} grew over the limit of {self.max_bytes} bytes while it was read "
                        "(--max-file-bytes)", total, self.max_bytes,
                    )
            return b"".join(chunks)
        except OSError as e:
            raise InputError("path", f"cannot read {path!r:.300}: {e.strerror or e}") from None
        finally:
            os.close(fd)


def _opened_path(fd: int) -> Optional[str]:
    """What the kernel says ``fd`` is (Linux), or None where it cannot tell."""
    try:
        return os.readlink(os.path.join(_PROC_FD, str(fd)))
    except OSError:
        return None
