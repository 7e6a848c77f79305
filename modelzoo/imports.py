"""Importing objects by dotted path (``"package.module.attr"``), for configs and
manifests that name classes and functions as strings.

Torch-free on purpose: the zoo reads its manifests with it without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any, Optional

from .errors import ConfigError, check_keys

__all__ = ["import_object"]


def import_object(path: str, what: str = "object") -> Any:
    """Imports ``package.module.attr`` (the attribute may be nested: ``mod.Class.method``).

    Args:
        path: the dotted path.
        what: what the path names, for the error (``"entrypoint_fcn"``).

    Raises:
        ConfigError: naming ``path`` and the module that was tried; a missing
            attribute suggests the close names.

    Example::

        fn = import_object("torchvision.models.mobilenet_v2", "entrypoint_fcn")
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{what} must be a dotted path such as 'package.module.name', got {path!r}")
    parts = path.strip().split(".")
    if len(parts) < 2:
        raise ConfigError(
            f"Cannot import {what} {path!r}: expected a dotted path 'package.module.name'"
        )
    last_error: Optional[BaseException] = None
    # try the longest importable module prefix first
    for i in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            # a missing *dependency* inside an existing module is a real error
            if e.name is not None and not module_name.startswith(e.name) and e.name != module_name:
                raise ConfigError(
                    f"Cannot import {what} {path!r}: importing module {module_name!r} failed: {e}"
                ) from e
            last_error = e
            continue
        except Exception as e:  # the module exists but is broken
            raise ConfigError(
                f"Cannot import {what} {path!r}: importing module {module_name!r} raised "
                f"{type(e).__name__}: {e}"
            ) from e
        obj: Any = module
        for j, attr in enumerate(parts[i:]):
            if not hasattr(obj, attr):
                owner = ".".join(parts[: i + j])
                names = sorted(n for n in dir(obj) if not n.startswith("_"))
                check_keys(
                    [attr], names, repr(owner), kind="attribute",
                    where=f"Cannot import {what} {path!r}: module {module_name!r} was imported but ",
                )
            obj = getattr(obj, attr)
        return obj
    raise ConfigError(
        f"Cannot import {what} {path!r}: no module named {parts[0]!r} "
        f"(tried module {'.'.join(parts[:-1])!r}). Is the package installed? ({last_error})"
    )
