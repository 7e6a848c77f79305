"""VESSL's two-step registration: ``create_model`` reserves a number,
``upload_model_volume_file`` puts files in its volume, and ``register_model``
with that number makes it a model (the files become part of it).

A reserved number is listed nowhere and loads nowhere until it is
registered; registering it needs no ``overwrite``. A registered model's
files are fixed: upload to a new number instead.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import check_keys
from ..zoo import local
from . import store
from .artifacts import copy_artifacts, plan_artifacts
from .errors import InvalidParamsError
from .register import RegisteredModel

__all__ = ["create_model", "upload_model_volume_file"]


def create_model(repository_name: str, **kwargs: Any) -> RegisteredModel:
    """Reserves the next number of ``repository_name`` (its ``.number``).

    Args:
        **kwargs: ``model_name``, ``repository_description``, ``organization_name``
            (accepted as VESSL's; nothing to record until registration).

    Raises:
        InvalidParamsError: a bad repository name; ZooError: an unknown keyword.
    """
    check_keys(kwargs, ["model_name", "repository_description", "organization_name"], "create_model",
               kind="keyword argument")
    from ..zoo.manifest import NAME_RE

    if not isinstance(repository_name, str) or not NAME_RE.match(repository_name):
        raise InvalidParamsError(f"repository_name {repository_name!r} must be lowercase letters, digits, '.', '_' or '-'")
    number = local.reserve(repository_name)
    os.makedirs(os.path.join(local.entry_dir(repository_name, number), store.VOLUME), exist_ok=True)
    return RegisteredModel(repository_name, number)


def upload_model_volume_file(repository_name: str, model_number: int, source_path: str, dest_path: str, **kwargs: Any) -> None:
    """Copies a file or directory into a reserved model's volume (checked like an artifact).

    Raises:
        InvalidParamsError: the number is not reserved (unknown, or already registered).
        ArtifactError: a missing source, or a destination outside the volume.
    """
    check_keys(kwargs, ["organization_name"], "upload_model_volume_file", kind="keyword argument")
    if not local.is_reserved(repository_name, model_number):
        state = "is registered, and its files are fixed" if model_number in local.numbers(repository_name) else "does not exist"
        raise InvalidParamsError(
            f"upload_model_volume_file: '{repository_name}/{model_number}' {state}. Reserve a number with "
            f"create_model({repository_name!r}) and upload to it, or pass the files as register_model(artifacts=...)."
        )
    plan = plan_artifacts({source_path: dest_path})
    copy_artifacts(plan, os.path.join(local.entry_dir(repository_name, model_number), store.VOLUME))
