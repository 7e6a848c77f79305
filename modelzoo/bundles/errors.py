"""Errors raised by model bundles. All derive from :class:`modelzoo.ModelzooError`.

Which base each derives from decides what ``apply_model`` does with it:
:class:`SchemaError` and :class:`BundlePredictError` are per-sample data errors
(``skip_failures`` costs that sample only); the configuration errors are fatal
at creation or load time; :class:`BundleServerError` (a runnable bundle's
server died) stops the run.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from ..errors import ConfigError, ModelError, ModelzooError, RequestError, UntrustedError, did_you_mean

__all__ = [
    "BundleError",
    "BundleConfigError",
    "BundleNotFoundError",
    "UntrustedBundleError",
    "UnsafeArchiveError",
    "SchemaError",
    "RequestSchemaError",
    "BundlePredictError",
    "BundleRequestError",
    "BundleServerError",
]


class BundleError(ModelzooError):
    """Root of the bundle errors."""


class BundleConfigError(BundleError, ConfigError):
    """A bundle cannot be created or loaded as given (raised before anything runs)."""


class BundleNotFoundError(BundleError, KeyError):
    """No stored bundle has that id or name."""

    def __init__(self, key: str, available: Sequence[str] = ()):
        self.key = key
        msg = f"No model bundle {key!r}." + did_you_mean(key, available)
        msg += " LaunchClient().list_model_bundles_v2() lists the stored bundles."
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.args[0])


class UntrustedBundleError(BundleConfigError, UntrustedError):
    """Loading the bundle would unpickle code that this process did not create."""


class UnsafeArchiveError(BundleConfigError):
    """A bundle zip holds an entry that would be written outside its directory."""


class SchemaError(BundleError, ValueError):
    """A request or response does not validate against the bundle's schema.

    Attributes:
        bundle: the bundle's name.
        direction: ``"request"`` or ``"response"``.
        field: the dotted location of the first failing field (``""`` for the root).
        value: the value found there.
    """

    def __init__(self, bundle: str, direction: str, field: str, value: Any, reason: str, schema: str, count: int = 1):
        self.bundle = bundle
        self.direction = direction
        self.field = field
        self.value = value
        where = f"field {field!r}" if field else "the whole value"
        more = f" (and {count - 1} more error{'s' if count > 2 else ''})" if count > 1 else ""
        super().__init__(
            f"Bundle {bundle!r}: the {direction} does not match {direction}_schema {schema}: "
            f"{where} = {value!r:.200}: {reason}{more}"
        )


class RequestSchemaError(SchemaError, RequestError):
    """A request does not validate against the bundle's request schema (an
    unknown key included): that request only; ``modelzoo serve`` answers 422."""


class BundlePredictError(BundleError, RuntimeError):
    """A runnable bundle's server answered one request with an error (that sample only)."""


class BundleRequestError(BundlePredictError, RequestError):
    """A runnable bundle's server refused one request as malformed (HTTP 422):
    the input is wrong; ``modelzoo serve`` passes the 422 on.

    Attributes:
        records: the server's ``errors`` records (``loc``, ``msg``, ``type``), when it gave them.
    """

    def __init__(self, message: str, errors: Optional[list] = None):
        self.records = errors
        super().__init__(message)

    def errors(self) -> List[Dict[str, Any]]:
        """The server's own records when it gave them, else this error as one record."""
        return list(self.records) if self.records else super().errors()


class BundleServerError(BundleError, ModelError):
    """A runnable bundle's server could not be started, became unreachable or exited.

    Attributes:
        returncode: the process's exit code, when it exited.
        stderr_tail: the last lines it wrote to stderr.
    """

    def __init__(self, message: str, returncode: Optional[int] = None, stderr_tail: str = ""):
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        if stderr_tail:
            message += "\n--- last lines of its stderr ---\n" + stderr_tail
        super().__init__(message)
