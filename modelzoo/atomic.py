"""Writing a file whole or not at all: readers see the old file or the new one.

Every writer of the package that replaces a file others may read at the same
time (the embedded database's client and monitor files, zoo verification
records, bundle and VESSL store files, exports) goes through
:func:`atomic_write`: the data goes to a temporary file in the same folder
(so that the rename stays on one file system), is flushed and fsynced (so
that a crash after the rename cannot leave an empty file behind), then
renamed over the target. When writing fails, the temporary file is removed
and the target is untouched.

Example::

    with atomic_write("out/predictions.json") as f:
        json.dump(data, f)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator, Optional, Union

__all__ = ["atomic_write", "write_bytes_atomic", "write_json_atomic"]

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(
    path: PathLike, mode: str = "w", encoding: Optional[str] = "utf-8", file_mode: Optional[int] = None
) -> Iterator[IO[Any]]:
    """A file object to write ``path`` through; ``path`` is replaced when the block ends without an error.

    Args:
        path: the file to (re)place.
        mode: ``"w"`` (text) or ``"wb"`` (bytes).
        encoding: for text mode.
        file_mode: the permissions of the new file; default: those ``open()``
            would give it (``0o666`` less the umask). Pass ``0o600`` for a
            private file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode if file_mode is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: PathLike, data: bytes, file_mode: Optional[int] = None) -> None:
    """Writes ``data`` to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, "wb", file_mode=file_mode) as f:
        f.write(data)


def write_json_atomic(path: PathLike, data: Any, file_mode: Optional[int] = None, **dump_kwargs: Any) -> None:
    """Writes ``data`` as JSON (``json.dump(data, f, **dump_kwargs)``, then a
    newline) to ``path`` with :func:`atomic_write`."""
    with atomic_write(path, "w", file_mode=file_mode) as f:
        json.dump(data, f, **dump_kwargs)
        f.write("\n")
