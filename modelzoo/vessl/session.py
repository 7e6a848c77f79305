"""VESSL's account and repository calls, accepted locally.

VESSL's examples start with ``vessl.configure(...)`` (an access token, the
default organization and project) and may create the model repository first
(``vessl.create_model_repository(...)``). Here nothing leaves the machine:
these calls check their keywords and record what they were given
(:func:`settings`); the access token is never stored. Repositories need no
creation (``register_model`` makes them), so :func:`create_model_repository`
records the description and returns the repository's name.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

from ..errors import check_keys
from ..zoo import local
from ..zoo.manifest import NAME_RE
from .errors import InvalidParamsError

__all__ = ["configure", "init", "settings", "create_model_repository", "read_model_repository", "list_model_repositories"]

_LOCK = threading.Lock()
_SETTINGS: Dict[str, Any] = {"organization_name": None, "project_name": None, "configured": False}
_REPOSITORIES: Dict[str, Dict[str, Any]] = {}


def configure(
    access_token: Optional[str] = None,
    organization_name: Optional[str] = None,
    project_name: Optional[str] = None,
    credentials_file: Optional[str] = None,
    force_update_access_token: bool = False,
) -> None:
    """VESSL's ``vessl.configure``: records the default organization and
    project (no network; the access token is accepted and dropped)."""
    with _LOCK:
        _SETTINGS.update(configured=True)
        if organization_name is not None:
            _SETTINGS["organization_name"] = organization_name
        if project_name is not None:
            _SETTINGS["project_name"] = project_name


def init(organization_name: Optional[str] = None, project_name: Optional[str] = None, **kwargs: Any) -> None:
    """VESSL's ``vessl.init``: as :func:`configure` (other keywords are VESSL's
    experiment settings, accepted and not used)."""
    check_keys(kwargs, ["access_token", "credentials_file", "message", "tags", "hp"], "vessl.init",
               kind="keyword argument")
    configure(organization_name=organization_name, project_name=project_name)


def settings() -> Dict[str, Any]:
    """What :func:`configure` / :func:`init` recorded."""
    with _LOCK:
        return dict(_SETTINGS)


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidParamsError(f"repository name {name!r} must be lowercase letters, digits, '.', '_' or '-'")
    return name


def create_model_repository(name: str, description: Optional[str] = None, **kwargs: Any) -> str:
    """VESSL's ``vessl.create_model_repository``: records ``description``
    and returns ``name`` (the local zoo creates repositories on registration)."""
    check_keys(kwargs, ["organization_name"], "create_model_repository", kind="keyword argument")
    with _LOCK:
        _REPOSITORIES[_check_name(name)] = {"name": name, "description": description or ""}
    return name


def read_model_repository(repository_name: str, **kwargs: Any) -> Dict[str, Any]:
    """The repository's name, description and registered model numbers.

    Raises:
        InvalidParamsError: no such repository (neither created nor registered to).
    """
    check_keys(kwargs, ["organization_name"], "read_model_repository", kind="keyword argument")
    numbers = sorted(local.numbers(_check_name(repository_name)))
    with _LOCK:
        known = _REPOSITORIES.get(repository_name)
    if known is None and not numbers:
        raise InvalidParamsError(
            f"No model repository {repository_name!r}: create it with create_model_repository({repository_name!r}) "
            "or register a model to it"
        )
    return {"name": repository_name, "description": (known or {}).get("description", ""), "model_numbers": numbers}


def list_model_repositories(**kwargs: Any) -> List[str]:
    """The repositories created in this process or holding a registered model."""
    import os

    check_keys(kwargs, ["organization_name"], "list_model_repositories", kind="keyword argument")
    try:
        names = [n for n in os.listdir(local.local_root()) if NAME_RE.match(n) and local.numbers(n)]
    except FileNotFoundError:
        names = []
    with _LOCK:
        return sorted(set(names) | set(_REPOSITORIES))
