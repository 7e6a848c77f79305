"""Checkpoint files: a state dict loaded safely (``weights_only=True``),
after its sha256 is checked."""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch

from .checksum import sha256_file
from .errors import ChecksumError, ConfigError

__all__ = ["load_state_dict"]


def load_state_dict(path: str, sha256: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Loads a checkpoint's state dict with ``weights_only=True`` after checking its sha256.

    Accepts a bare state dict or one wrapped under ``"state_dict"`` / ``"model"``.

    Raises:
        ChecksumError: the file's sha256 is not ``sha256`` (the file is not loaded).
        ConfigError: the file is missing or holds no state dict.
    """
    try:
        if sha256 is not None:
            actual = sha256_file(path)
            if actual.lower() != sha256.lower():
                raise ChecksumError(path, sha256.lower(), actual, hint="Check weights_path and weights_sha256.")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"weights_path {path!r} does not exist") from None
    except ChecksumError:
        raise
    except Exception as e:
        raise ConfigError(
            f"Cannot load weights {path!r} with torch.load(weights_only=True): {type(e).__name__}: {e}"
        ) from e
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and not isinstance(obj.get(key), torch.Tensor):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"weights_path {path!r} does not hold a state dict (a dict of tensors)")
    return dict(obj)
