"""The one exception root of modelzoo, and its structured subclasses.

Every error modelzoo raises on purpose derives from :class:`ModelzooError`, so
``except modelzoo.ModelzooError`` catches them all. Subclasses also derive from
the builtin that fits (``KeyError``, ``ValueError``...) so that callers who
catch builtins keep working. Messages name the input, what was expected, and
how to fix it.
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, Iterable, List, Optional, Sequence

__all__ = [
    "ModelzooError",
    "DatabaseError",
    "DatasetError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "SampleNotFoundError",
    "LabelError",
    "InvalidInputError",
    "FormatError",
    "EvaluationError",
    "ConfigError",
    "ModelError",
    "PredictionError",
    "SampleError",
    "RequestError",
    "VideoError",
    "ZooError",
    "ModelNotFoundError",
    "DownloadError",
    "ChecksumError",
    "RequirementsError",
    "ExtraNotInstalledError",
    "BackendError",
    "UnknownKeyError",
    "UntrustedError",
    "TrustKeyError",
    "did_you_mean",
    "check_keys",
]


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Returns ``" Did you mean 'x'?"`` for the close matches of ``name``, or ``""``."""
    matches = difflib.get_close_matches(str(name), list(choices), n=n, cutoff=0.5)
    if not matches:
        return ""
    if len(matches) == 1:
        return f" Did you mean {matches[0]!r}?"
    return " Did you mean one of " + ", ".join(repr(m) for m in matches) + "?"


class ModelzooError(Exception):
    """Root of every error modelzoo raises on purpose."""


class DatabaseError(ModelzooError, RuntimeError):
    """The database cannot be started, reached or used."""


class DatasetError(ModelzooError):
    """A dataset operation cannot be carried out."""


class DatasetExistsError(DatasetError, ValueError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(
            f"Dataset {name!r} already exists. Pass overwrite=True to replace it, "
            f"or load it with modelzoo.load_dataset({name!r})."
        )


class DatasetNotFoundError(DatasetError, KeyError):
    def __init__(self, name: str, available: Sequence[str] = ()):
        self.name = name
        msg = f"Dataset {name!r} not found." + did_you_mean(name, available)
        msg += " modelzoo.list_datasets() lists the datasets that exist."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class SampleNotFoundError(DatasetError, KeyError):
    def __init__(self, sample_id: Any, dataset: str):
        self.sample_id = sample_id
        self.dataset = dataset
        super().__init__(f"Sample {str(sample_id)!r} is not in dataset {dataset!r}.")

    def __str__(self) -> str:
        return str(self.args[0])


class LabelError(ModelzooError, ValueError):
    """A label holds a value it cannot hold (e.g. a box outside [0, 1])."""


class FormatError(DatasetError, ValueError):
    """An imported file (a COCO JSON...) holds an entry that cannot be imported.

    Attributes:
        path: the file (``"<dict>"`` for data given in memory).
        index: the entry's position in its list (e.g. ``annotations[12]``), or None.
        key: the key that is missing or wrong, or None.
    """

    def __init__(self, path: str, reason: str, section: Optional[str] = None, index: Optional[int] = None,
                 key: Optional[str] = None):
        self.path = path
        self.section = section
        self.index = index
        self.key = key
        self.reason = reason
        where = f"{section}[{index}]" if section is not None and index is not None else (section or "")
        if key is not None:
            where += f"[{key!r}]" if where else repr(key)
        super().__init__(f"{path}: {where + ': ' if where else ''}{reason}")


class EvaluationError(ModelzooError, ValueError):
    """An evaluation cannot be run or found: a missing or mistyped field,
    predictions and ground truth of different types, an unknown eval_key."""


class ConfigError(ModelzooError, ValueError):
    """A model or zoo configuration is invalid. Raised at load time."""


class UnknownKeyError(ConfigError):
    """A mapping (a config, a manifest object, a module's attributes) was given
    a key it does not have. Raised by :func:`check_keys`.

    Attributes:
        key: the unknown key.
        allowed: the valid keys, in the order given.
        what: what has the keys (``"TorchImageModelConfig"``, ``"the entry"``).
    """

    def __init__(self, message: str, key: Any, allowed: Sequence[str], what: str):
        self.key = key
        self.allowed = list(allowed)
        self.what = what
        super().__init__(message)


#: at most this many valid keys are listed in an unknown-key message
_MAX_LISTED = 40


def check_keys(
    given: Iterable[Any], allowed: Iterable[str], what: str, where: str = "", kind: str = "key"
) -> None:
    """Raises for the first key of ``given`` that is not in ``allowed``.

    The one unknown-key check of modelzoo: configs, manifests, ``load_zoo_model``
    overrides and dotted imports all use it, so every such error reads the same::

        {where}{what} has no {kind} 'x'. Did you mean 'y'? Valid {kind}s: a, b, c.

    Args:
        given: the keys to check (a mapping checks its keys).
        allowed: the valid keys, listed in the message in this order (the
            first 40, then how many more).
        what: what has the keys, e.g. ``"TorchImageModelConfig"``.
        where: a prefix naming the call or file, e.g. ``"load_zoo_model('x'): "``.
        kind: the word for a key: ``"setting"``, ``"attribute"``...

    Raises:
        UnknownKeyError: a :class:`ConfigError` with ``key``, ``allowed`` and ``what``.
    """
    valid: List[str] = list(allowed)
    known = set(valid)
    for key in given:
        if key in known:
            continue
        listed = ", ".join(valid[:_MAX_LISTED])
        if len(valid) > _MAX_LISTED:
            listed += f" (and {len(valid) - _MAX_LISTED} more)"
        raise UnknownKeyError(
            f"{where}{what} has no {kind} {key!r}." + did_you_mean(str(key), valid)
            + (f" Valid {kind}s: {listed}." if valid else f" It takes no {kind}s."),
            key, valid, what,
        )


class UntrustedError(ModelzooError):
    """Stored code (a bundle, a VESSL entry, a zoo registration) is not signed
    by this user's key, and the caller did not pass ``trust=True``. The
    message names what was refused and how to proceed (see :mod:`modelzoo.signing`)."""


class TrustKeyError(ModelzooError, PermissionError):
    """The signing key file is unsafe (readable by others, or another user's);
    the message says how to fix it (``chmod 600 PATH``)."""


class ModelError(ModelzooError):
    """A model misbehaved in a way that is not tied to one sample."""


class RequestError(ModelzooError, ValueError):
    """One request (one input) does not match what the model takes: a missing
    or misspelled field, a value of the wrong type. It costs that request only
    (``modelzoo serve`` answers it with HTTP 422).

    Attributes:
        field: the field at fault (``""`` for the whole request).
    """

    field: str = ""

    def errors(self) -> List[Dict[str, Any]]:
        """The error as FastAPI-style records (``loc``, ``msg``, ``type``)."""
        return [{"loc": [self.field] if self.field else [], "msg": str(self), "type": "value_error"}]


#: The same class under the name the server's hardening used first.
InvalidInputError = RequestError


class SampleError(ModelzooError):
    """One sample could not be processed.

    Attributes:
        sample_id: the id of the sample, as a string.
        filepath: the sample's media path.
        reason: what went wrong.
    """

    def __init__(self, sample_id: Any, filepath: Optional[str], reason: str):
        self.sample_id = str(sample_id) if sample_id is not None else None
        self.filepath = filepath
        self.reason = reason
        super().__init__(f"Sample {self.sample_id} ({filepath}): {reason}")


class VideoError(ModelzooError, OSError):
    """A video file cannot be opened or read (missing, empty, not a video, no
    video stream); the message names the file."""


class PredictionError(SampleError):
    """A prediction failed for one sample (``skip_failures=False`` raises it)."""


class ZooError(ModelzooError):
    """A zoo operation failed."""


class ModelNotFoundError(ZooError, KeyError):
    def __init__(self, name: str, available: Sequence[str] = ()):
        self.name = name
        msg = f"Unknown zoo model {name!r}." + did_you_mean(name, available)
        if not available:
            msg += " The zoo has no models registered."
        msg += " modelzoo.list_zoo_models() lists them."
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])


class DownloadError(ZooError, OSError):
    """Weights could not be downloaded."""


class ChecksumError(ZooError, ValueError):
    """A file's sha256 does not match the expected one."""

    def __init__(self, path: str, expected: str, actual: str, hint: str = ""):
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"Checksum mismatch for {path}: expected sha256 {expected}, got {actual}. "
            "The file was not loaded." + (" " + hint if hint else "")
        )


class RequirementsError(ZooError, ImportError):
    """A model needs packages (or hardware) that are not available."""


class ExtraNotInstalledError(ModelzooError, ImportError):
    """An optional feature needs a package that is not installed.

    Attributes:
        extra: the ``modelzoo[extra]`` to install.
    """

    def __init__(self, feature: str, extra: str, missing: str):
        self.extra = extra
        super().__init__(
            f"{feature} needs {missing}, which is not installed. Install it with: pip install 'modelzoo[{extra}]'"
        )


class BackendError(ModelzooError, RuntimeError):
    """A run on a distributed backend (Ray) failed on the cluster; the
    message holds the worker's traceback."""
