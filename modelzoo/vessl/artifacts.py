"""Artifacts: ``{local path: path in the model volume}``, checked and copied.

Rules (VESSL's, checked before anything is copied):

- a local path is a file or a directory (copied with its contents);
- the only glob is one trailing ``*``, on both sides: ``{"ckpt/*": "weights/*"}``
  copies every entry of ``ckpt/`` to ``weights/<its name>`` (in general, the
  text a match has after the local prefix replaces the ``*``);
- the volume path is relative, with no ``..`` and no ``~``: nothing is
  written outside the model's volume directory;
- a directory's symbolic links must point inside it: a link out of it (to
  ``~/.ssh``, say) is refused rather than copied into the volume.
"""

from __future__ import annotations

import glob
import os
import posixpath
import shutil
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import ArtifactError

__all__ = ["plan_artifacts", "copy_artifacts", "artifact_paths"]

_GLOB_CHARS = "*?["


def _volume_path(remote: str, local: str) -> str:
    if not isinstance(remote, str) or not remote.strip():
        raise ArtifactError(f"artifacts[{local!r}]: the volume path must be a non-empty string, got {remote!r}")
    text = remote.replace("\\", "/")
    if text.split("/")[0].startswith("~"):
        raise ArtifactError(
            f"artifacts[{local!r}] = {remote!r}: volume paths are inside the model's volume, where '~' is not "
            f"your home but a folder named '~'; give the path inside the volume, e.g. {text.lstrip('~/') or 'model.pt'!r}"
        )
    if text.startswith("/") or (len(text) > 1 and text[1] == ":") or ".." in text.split("/"):
        raise ArtifactError(
            f"artifacts[{local!r}] = {remote!r}: the volume path must be relative and stay inside the model's "
            "volume (no leading '/', no '..'), e.g. 'model.pt' or 'checkpoints/'"
        )
    norm = posixpath.normpath(text)
    if norm in (".", ""):
        norm = ""
    return norm + ("/" if text.endswith("/") and norm else "")


def _check_glob(local: str, remote: str) -> bool:
    """Whether the pair is a trailing-``*`` glob; refuses every other glob."""
    for side, text in (("local path", local), ("volume path", remote)):
        stars = [i for i, c in enumerate(text) if c in _GLOB_CHARS]
        if stars and (stars != [len(text) - 1] or text[-1] != "*"):
            raise ArtifactError(
                f"artifacts {{{local!r}: {remote!r}}}: the {side} {text!r} uses a glob other than one trailing '*' "
                "(the only pattern allowed, e.g. {'checkpoints/*': 'checkpoints/*'}); list the files instead"
            )
    if local.endswith("*") != remote.endswith("*"):
        raise ArtifactError(
            f"artifacts {{{local!r}: {remote!r}}}: a trailing '*' must be on both sides or on neither"
        )
    return local.endswith("*")


def plan_artifacts(artifacts: Optional[Mapping[str, str]]) -> List[Tuple[str, str, str]]:
    """Checks the map and returns ``(key, absolute source, volume path)`` for
    every file or directory to copy.

    Raises:
        ArtifactError: a missing path, a bad glob, a path outside the volume,
            two sources for one volume path.
    """
    if artifacts is None:
        return []
    if not isinstance(artifacts, Mapping):
        raise ArtifactError(f"artifacts must be a dict {{local path: volume path}}, got {type(artifacts).__name__}")
    plan: List[Tuple[str, str, str]] = []
    for local, remote in artifacts.items():
        if not isinstance(local, str) or not local.strip():
            raise ArtifactError(f"artifacts: a local path must be a non-empty string, got {local!r}")
        is_glob = _check_glob(local, remote if isinstance(remote, str) else "")
        if is_glob:
            prefix, dest_prefix = local[:-1], remote[:-1]
            matches = sorted(glob.glob(glob.escape(os.path.expanduser(prefix)) + "*"))
            if not matches:
                raise ArtifactError(f"artifacts[{local!r}]: nothing matches {local!r} (from {os.getcwd()})")
            for match in matches:
                suffix = match[len(os.path.expanduser(prefix)):]
                plan.append((local, os.path.abspath(match), _volume_path(dest_prefix + suffix, local)))
            continue
        source = os.path.abspath(os.path.expanduser(local))
        if not os.path.exists(source):
            raise ArtifactError(f"artifacts[{local!r}]: {source} does not exist (paths are relative to {os.getcwd()})")
        dest = _volume_path(remote, local)
        if dest.endswith("/") and os.path.isfile(source):
            dest += os.path.basename(source)
        if not dest:
            if not os.path.isdir(source):
                raise ArtifactError(f"artifacts[{local!r}] = {remote!r}: a file needs a file name in the volume")
        plan.append((local, source, dest))
    for key, source, _ in plan:
        if os.path.isdir(source):
            _check_links(key, source)
    seen: Dict[str, str] = {}
    for key, _, dest in plan:
        d = dest.rstrip("/")
        if d and d in seen and seen[d] != key:
            raise ArtifactError(f"artifacts {seen[d]!r} and {key!r} both go to {d!r} in the volume")
        seen[d] = key
    return plan


def _check_links(key: str, directory: str) -> None:
    """Refuses a symbolic link under ``directory`` that resolves outside it."""
    root = os.path.realpath(directory)
    for dirpath, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            target = os.path.realpath(path)
            if target != root and not target.startswith(root + os.sep):
                raise ArtifactError(
                    f"artifacts[{key!r}]: {path} is a symbolic link to {target}, outside {directory}; its target "
                    "would be copied into the model's volume. Copy the file into the directory, or list it as an "
                    "artifact of its own."
                )


def copy_artifacts(plan: List[Tuple[str, str, str]], volume: str) -> None:
    """Copies the planned files into ``volume``, refusing any that would land outside it."""
    root = os.path.realpath(volume)
    for key, source, dest in plan:
        target = os.path.realpath(os.path.join(root, dest))
        if target != root and not target.startswith(root + os.sep):
            raise ArtifactError(f"artifacts[{key!r}]: {dest!r} resolves outside the model's volume")
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(source, target)


def artifact_paths(artifacts: Mapping[str, str], volume: str) -> Dict[str, str]:
    """What ``load_model`` receives: the absolute path of each stored copy,
    under both the local path given at registration and the volume path
    (a glob's value keeps its ``*``; a directory's ends with a separator)."""
    out = {}
    for local, remote in artifacts.items():
        path = os.path.join(volume, remote.replace("/", os.sep)) if remote not in ("", "./") else volume + os.sep
        out[remote] = path
        out[local] = path
    return out
