"""The local zoo: models registered on this machine as ``repository/number``
(VESSL style), kept on disk so that every process finds them.

Each entry is one directory, ``$MODELZOO_HOME/_local/<repository>/<number>/``,
holding ``entry.json`` (a zoo manifest with the one entry, so it is read and
validated like any manifest; ``{manifest_dir}`` in its config is the
directory) and whatever files its model kind keeps there. An entry is
written in a staging directory and published with one ``rename``: a
directory named by a number is always complete, and two processes
registering at once get different numbers.

Example::

    publish(staging, "my-repo", None, overwrite=False, write_entry=write)  # -> 4
    [info.name for info in local_entries()]                               # ['my-repo/1', ...]
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from typing import Callable, List, Optional, Tuple

from ..errors import ZooError
from .manifest import NAME_RE, ZooModelInfo, load_manifest_file, split_numbered
from .weights import zoo_home

__all__ = [
    "ENTRY_FILE",
    "local_root",
    "entry_dir",
    "numbers",
    "next_number",
    "local_entries",
    "signature",
    "staging_dir",
    "reserve",
    "is_reserved",
    "publish",
    "is_local",
    "delete_local_entry",
    "NumberTakenError",
]

ENTRY_FILE = "entry.json"
_LOCAL = "_local"

#: The model types a local entry may name, by dotted path (a table of names:
#: the core imports none of them). Each type verifies its entry's signature
#: itself before it runs anything the entry names (VESSL's ``RunnerModel``:
#: ``vessl.signature`` over ``entry.json``, the manifest and the pickles), so
#: an ``entry.json`` edited to name another callable (``os.system``) would skip
#: that check: it is refused here, before anything it names is imported.
LOCAL_ENTRY_TYPES = {"modelzoo.vessl.model.RunnerModel"}


class NumberTakenError(ZooError, FileExistsError):
    """``repository/number`` is already registered (and ``overwrite`` was not given)."""

    def __init__(self, repository: str, number: int, next_number: int):
        self.repository = repository
        self.number = number
        super().__init__(
            f"Zoo model '{repository}/{number}' already exists. Pass overwrite=True to replace it, or "
            f"model_number=None to register it as the next number ('{repository}/{next_number}')."
        )


def local_root() -> str:
    """``$MODELZOO_HOME/_local``."""
    return os.path.join(zoo_home(), _LOCAL)


def _check_repository(repository: str) -> str:
    if not isinstance(repository, str) or not NAME_RE.match(repository):
        raise ZooError(
            f"Repository name {repository!r} must be lowercase letters, digits, '.', '_' or '-', starting with "
            "a letter or digit (e.g. 'my-classifier')"
        )
    return repository


def entry_dir(repository: str, number: int) -> str:
    """Where ``repository/number`` lives (whether or not it exists)."""
    return os.path.join(local_root(), _check_repository(repository), str(int(number)))


def _number_dirs(repository: str) -> List[int]:
    """Every number directory of the repository (complete entries)."""
    root = os.path.join(local_root(), repository)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and not n.startswith("0"))


_TOMBSTONE = ".deleted-"


def next_number(repository: str) -> int:
    """One more than any number the repository has used: a deleted number
    leaves a tombstone, so it never names another model later."""
    root = os.path.join(local_root(), repository)
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        names = []
    used = [int(n[len(_TOMBSTONE):]) for n in names if n.startswith(_TOMBSTONE) and n[len(_TOMBSTONE):].isdigit()]
    return max(_number_dirs(repository) + used + [0]) + 1


def numbers(repository: str) -> List[int]:
    """The registered numbers of ``repository``, ascending."""
    return [n for n in _number_dirs(_check_repository(repository))
            if os.path.isfile(os.path.join(local_root(), repository, str(n), ENTRY_FILE))]


def _entry_files() -> List[str]:
    root = local_root()
    out = []
    try:
        repos = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    for repo in repos:
        if repo.name.startswith(".") or not repo.is_dir():
            continue
        for n in _number_dirs(repo.name):
            path = os.path.join(repo.path, str(n), ENTRY_FILE)
            if os.path.isfile(path):
                out.append(path)
    return out


def subdir_signature(root: str, of_dir: Callable[["os.DirEntry[str]"], object]) -> Tuple[object, ...]:
    """``(root, of_dir(d), ...)`` for each directory ``d`` in ``root`` by
    name (dot-directories left out): cheap to compute, and it changes when
    ``of_dir`` of any of them does. A directory removed while it is read is
    left out; no ``root``: ``(root,)``."""
    sig: List[object] = [root]
    try:
        dirs = sorted(os.scandir(root), key=lambda e: e.name)
    except FileNotFoundError:
        return tuple(sig)
    for d in dirs:
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            sig.append(of_dir(d))
        except FileNotFoundError:
            continue
    return tuple(sig)


def signature() -> Tuple[object, ...]:
    """Changes whenever an entry is added, replaced or removed (the registry
    re-reads the local zoo then). Entries are published by renaming a
    directory, so the names and inode numbers of the number directories
    (and their repository directory's mtime) tell, without a ``stat`` per entry."""

    def of_repo(repo: "os.DirEntry[str]") -> object:
        numbered = tuple(sorted((e.name, e.inode()) for e in os.scandir(repo.path) if e.name.isdigit()))
        return (repo.name, repo.stat().st_mtime_ns, numbered)  # mtime: an inode reused after a delete

    return subdir_signature(local_root(), of_repo)


def local_entries() -> List[ZooModelInfo]:
    """Every local entry, validated like a manifest's.

    Raises:
        ManifestError: an ``entry.json`` is invalid, or names another entry than its directory.
    """
    from .manifest import ManifestError

    out = []
    for path in _entry_files():
        for info in load_manifest_file(path):
            parts = split_numbered(info.name)
            where = os.path.dirname(path)
            if parts is None or entry_dir(*parts) != where:
                raise ManifestError(path, f"names {info.name!r}, but its directory is {where}", key="name")
            if info.model.kind != "class" or info.model.type not in LOCAL_ENTRY_TYPES:
                raise ManifestError(
                    path,
                    f"names model type {info.model.type!r}; a local zoo entry may only name "
                    f"{', '.join(sorted(LOCAL_ENTRY_TYPES))}, which checks the entry's signature before running it. "
                    f"This file was edited outside modelzoo: delete {where} and register the model again.",
                    key="model.type",
                )
            out.append(info)
    return out


def staging_dir(repository: str) -> str:
    """A new private directory to write an entry in before :func:`publish`."""
    parent = os.path.join(local_root(), _check_repository(repository))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".staging-", dir=parent)


def reserve(repository: str) -> int:
    """Creates the next number of ``repository`` without an entry (VESSL's
    ``create_model``): listed nowhere and loadable by no one until an entry is
    published under it, which needs no ``overwrite``. Returns the number."""
    parent = os.path.join(local_root(), _check_repository(repository))
    os.makedirs(parent, exist_ok=True)
    candidate = next_number(repository)
    while True:
        try:
            os.mkdir(os.path.join(parent, str(candidate)))
            return candidate
        except FileExistsError:
            candidate += 1


def is_reserved(repository: str, number: int) -> bool:
    """Whether ``repository/number`` was reserved and has no entry yet."""
    d = entry_dir(repository, number)
    return os.path.isdir(d) and not os.path.isfile(os.path.join(d, ENTRY_FILE))


def publish(
    staging: str,
    repository: str,
    number: Optional[int],
    overwrite: bool,
    write_entry: Callable[[str, int], None],
) -> int:
    """Moves a staged entry into place as ``repository/number`` and returns the number.

    Args:
        staging: the directory from :func:`staging_dir`.
        number: the number, or None for the next free one.
        overwrite: replace an existing ``repository/number`` (a number that is
            only reserved, see :func:`reserve`, is replaced without it).
        write_entry: ``write_entry(staging, number)`` writes the files that
            name the number (``entry.json``); called again when a number is
            taken meanwhile by another process.

    Raises:
        NumberTakenError: ``number`` exists and ``overwrite`` is False.
    """
    _check_repository(repository)
    try:
        if number is not None:
            write_entry(staging, number)
            target = entry_dir(repository, number)
            if os.path.isdir(target):
                if not overwrite and not is_reserved(repository, number):
                    raise NumberTakenError(repository, number, next_number(repository))
                trash = os.path.join(os.path.dirname(target), f".trash-{number}-{uuid.uuid4().hex}")
                os.rename(target, trash)
                os.rename(staging, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.rename(staging, target)
            return number
        candidate = next_number(repository)
        while True:
            write_entry(staging, candidate)
            try:
                os.rename(staging, entry_dir(repository, candidate))
                return candidate
            except OSError as e:
                if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                candidate += 1  # another process took it first
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def is_local(info: ZooModelInfo) -> bool:
    """Whether the entry comes from the local zoo."""
    root = local_root() + os.sep
    return os.path.abspath(info.origin).startswith(root)


def delete_local_entry(info: ZooModelInfo) -> bool:
    """Removes a local entry's directory (all its files), leaving a tombstone so
    that its number is not given to another model. Returns whether it existed."""
    d = os.path.dirname(os.path.abspath(info.origin))
    if not os.path.isdir(d):
        return False
    open(os.path.join(os.path.dirname(d), _TOMBSTONE + os.path.basename(d)), "a").close()
    trash = os.path.join(os.path.dirname(d), f".trash-{os.path.basename(d)}-{uuid.uuid4().hex}")
    os.rename(d, trash)  # the entry disappears at once for every process
    shutil.rmtree(trash, ignore_errors=True)
    return True
