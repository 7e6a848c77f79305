"""What the batcher hands a model for one caller's input.

A caller sends what it has: for a model of images, a decoded image (a uint8
``(H, W, 3)`` array or a PIL image), the encoded file's bytes, or a path;
for a model with a ``request_schema``, an instance of it or a dict of its
fields. :class:`InputAdapter` turns that into what the model's ``predict``
takes, decoding the way the model's loader (:meth:`modelzoo.Model.build_loader`)
does for the engine, so that a batched answer equals ``model.predict(image)``:

============================================  ===============================================
the model's loader                            the model receives
============================================  ===============================================
``ImageLoader`` (the default), a torch model  the decoded uint8 RGB array (its ``predict``
                                              applies its own preprocessing, as always)
``BytesLoader``                               the file's bytes (a path is read)
``PathLoader``                                the path, checked to exist
``PILLoader``                                 an RGB PIL image
another ``FileLoader``                        ``loader.load(item)`` for a path
anything else                                 the input unchanged
============================================  ===============================================

An input that cannot be converted (bytes that are not an image, a missing
file) raises :class:`~modelzoo.serving.errors.InputError` naming it: that
costs the one caller, before anything reaches the model.
"""

from __future__ import annotations

import io
import os
from typing import Any, Mapping, Optional

import numpy as np

from ..loaders import FileLoader, Loader, WorkItem, kind_of_loader
from ..mixins import TorchModelMixin
from ..models import Model
from .errors import InputError, RequestValidationError

__all__ = ["InputAdapter", "KINDS", "describe", "validate_request"]

#: what an :class:`InputAdapter` gives its model: see the module docstring
KINDS = ("request", "array", "bytes", "path", "pil", "file", "raw")


def describe(x: Any) -> str:
    """A short description of an input, for messages (never its content)."""
    if isinstance(x, (bytes, bytearray, memoryview)):
        return f"{len(x)} bytes"
    if isinstance(x, (str, os.PathLike)):
        return f"path {os.fspath(x)!r}"
    if isinstance(x, np.ndarray):
        return f"array {tuple(x.shape)} {x.dtype}"
    return type(x).__name__


def _unknown_keys(schema: Any, data: Any) -> None:
    """A key of a JSON object that is no field of ``schema`` (which would drop
    it silently) is refused, naming the close match."""
    fields = getattr(schema, "model_fields", None)
    config = getattr(schema, "model_config", {}) or {}
    if not isinstance(data, Mapping) or not fields or getattr(schema, "__pydantic_root_model__", False):
        return
    if config.get("extra") == "allow":
        return
    names = list(fields) + [f.alias for f in fields.values() if getattr(f, "alias", None)]
    bad = [k for k in data if k not in names]
    if bad:
        from ..errors import did_you_mean

        raise RequestValidationError(schema.__name__, [
            {"loc": (k,), "type": "unknown_field",
             "msg": f"{k!r} is not a field of {schema.__name__}." + did_you_mean(str(k), list(fields), n=1)
             + f" Its fields: {', '.join(fields)}."}
            for k in bad
        ])


def validate_request(schema: type, data: Any) -> Any:
    """``schema.model_validate(data)``, with a pydantic error turned into a
    :class:`RequestValidationError` naming each field; a key that is no
    field of ``schema`` is refused too, naming the close match."""
    import pydantic

    _unknown_keys(schema, data)
    try:
        return schema.model_validate(data)  # type: ignore[attr-defined]
    except pydantic.ValidationError as e:
        raise RequestValidationError(schema.__name__, e.errors(include_url=False)) from None


def _decode(data: bytes, what: str) -> Any:
    """Bytes -> an RGB PIL image, decoded as the loaders decode files."""
    from PIL import Image, UnidentifiedImageError

    from ..image_io import decode_rgb

    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise InputError("image", f"{what} are not an image file of a format PIL reads (JPEG, PNG, ...)") from None
    except Exception as e:
        raise InputError("image", f"{what} are not an image PIL can open ({type(e).__name__}: {e})") from None
    try:
        rgb = decode_rgb(img, what)
        return rgb if rgb is not img else img.copy()
    except OSError as e:
        raise InputError("image", str(e)) from None
    finally:
        img.close()


def _read_path(path: str) -> np.ndarray:
    from ..image_io import read_image

    try:
        return read_image(path)
    except (OSError, ValueError) as e:
        raise InputError("path", str(e)) from None


def _kind(model: Any, loader: Optional[Loader]) -> str:
    if getattr(model, "request_schema", None) is not None:
        return "request"
    if isinstance(model, TorchModelMixin):
        return "array"
    kind = kind_of_loader(loader)  # the core's table: bytes, path, array (ImageLoader), pil
    if kind is not None:
        return kind
    if isinstance(loader, FileLoader):
        return "file"
    return "raw"


class InputAdapter:
    """Turns one caller's input into what ``model.predict`` takes (see the module docstring).

    Args:
        model: the model fed.
        name: the model's name, for messages.

    Attributes:
        kind: one of :data:`KINDS`.
    """

    def __init__(self, model: Model, name: Optional[str] = None):
        self.name = name or type(model).__name__
        self.schema: Optional[type] = getattr(model, "request_schema", None)
        self.loader: Optional[Loader] = None
        if self.schema is None and not isinstance(model, TorchModelMixin):
            self.loader = model.build_loader()
        self.kind = _kind(model, self.loader)

    def __repr__(self) -> str:
        return f"InputAdapter({self.name!r}, kind={self.kind!r})"

    @property
    def takes_images(self) -> bool:
        """Whether the model takes images (so bytes, paths and base64 mean an image)."""
        return self.kind in ("array", "bytes", "path", "pil", "file")

    def __call__(self, x: Any) -> Any:
        """The model's input for ``x``.

        Raises:
            InputError: ``x`` cannot be given to this model (the message names it and says why).
        """
        if isinstance(x, (bytearray, memoryview)):
            x = bytes(x)
        if isinstance(x, os.PathLike):
            x = os.fspath(x)
        kind = self.kind
        if kind == "raw":
            return x
        if kind == "request":
            return self._request(x)
        if kind == "array":
            if isinstance(x, bytes):
                return np.asarray(_decode(x, f"image bytes ({len(x)})"))
            if isinstance(x, str):
                return _read_path(x)
            return x  # an array or a PIL image: predict takes it as it is
        if kind == "bytes":
            if isinstance(x, str):
                try:
                    with open(x, "rb") as f:
                        return f.read()
                except OSError as e:
                    raise InputError("path", f"cannot read {x!r}: {e.strerror or e}") from None
            if not isinstance(x, bytes):
                raise self._wrong(x, "an encoded image's bytes or a path (its loader is BytesLoader)")
            return x
        if kind == "pil":
            if isinstance(x, bytes):
                return _decode(x, f"image bytes ({len(x)})")
            if isinstance(x, str):
                from PIL import Image

                return Image.fromarray(_read_path(x))
            if isinstance(x, np.ndarray):
                from PIL import Image

                return Image.fromarray(x)
            return x
        # "path" and "file": the model (or its loader) opens the file itself
        if not isinstance(x, str):
            loader = type(self.loader).__name__
            raise self._wrong(x, f"a path to an image file (its loader, {loader}, reads files by path)")
        if not os.path.isfile(x):
            raise InputError("path", f"file not found: {x!r}")
        if kind == "path":
            return x
        assert self.loader is not None
        try:
            return self.loader.load(WorkItem(None, x))
        except (OSError, ValueError) as e:
            raise InputError("path", str(e)) from None

    def _request(self, x: Any) -> Any:
        assert self.schema is not None
        if isinstance(x, self.schema):
            return x
        if isinstance(x, Mapping):
            return validate_request(self.schema, dict(x))
        raise self._wrong(x, f"a {self.schema.__name__} or a dict of its fields")

    def _wrong(self, x: Any, expected: str) -> InputError:
        return InputError("input", f"model {self.name!r} takes {expected}, got {describe(x)}")
