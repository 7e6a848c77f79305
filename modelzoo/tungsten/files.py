"""File-valued input and output fields: :class:`File`, :class:`Image` and friends.

A file field of a ``BaseIO`` class takes what a caller has at hand: an
instance, a path (``str`` or ``pathlib.Path``), ``bytes``, a ``data:`` or
``file:`` URI, a bare base64 string, and for :class:`Image` also a PIL image
or a uint8 array. Nothing is read until it is needed; a decoded image is
kept, so ``to_numpy()`` after the engine's loader decoded the file costs
nothing. In JSON (``model_dump(mode="json")``, ``modelzoo serve``) a file is
a ``data:`` URI.

Example::

    img = Image.from_path("cat.jpg")        # or Image("cat.jpg"), Image(pil_image), Image(array)
    img.to_pil_image().size
    img.to_numpy().shape                    # (H, W, 3) uint8 RGB
    Image.from_pil_image(pil).to_uri()      # 'data:image/png;base64,...'
"""

from __future__ import annotations

import atexit
import base64
import binascii
import io
import mimetypes
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Type, TypeVar, Union
from urllib.parse import unquote, urlparse

import numpy as np

from .errors import FileInputError

__all__ = ["File", "Image", "Binary", "Audio", "Video"]

F = TypeVar("F", bound="File")

_BASE64_RE = re.compile(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")
_DATA_URI_RE = re.compile(r"^data:(?P<mime>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<data>.*)$", re.S)

_tmp_lock = threading.Lock()
_tmp_dir: Optional[str] = None


def _temp_dir() -> str:
    """One private directory per process for files made from bytes (``.path``), removed at exit."""
    global _tmp_dir
    with _tmp_lock:
        if _tmp_dir is None:
            _tmp_dir = tempfile.mkdtemp(prefix="modelzoo-tungsten-")
            atexit.register(shutil.rmtree, _tmp_dir, True)
        return _tmp_dir


def _decode_data_uri(uri: str) -> Tuple[bytes, str]:
    m = _DATA_URI_RE.match(uri)
    if m is None:
        raise FileInputError(f"Invalid data URI {uri[:60]!r}...: expected 'data:<mime>;base64,<data>'")
    mime = m.group("mime") or "application/octet-stream"
    data = m.group("data")
    if ";base64" in m.group("params"):
        try:
            return base64.b64decode(data, validate=True), mime
        except (binascii.Error, ValueError):
            raise FileInputError(f"Invalid data URI {uri[:60]!r}...: its data is not valid base64") from None
    return unquote(data).encode(), mime


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"),
)


def _sniff(data: bytes) -> Optional[str]:
    """The MIME type of common image formats, from their first bytes."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class File:
    """A file given by path, bytes, URI or base64 (Tungstenkit's ``File``).

    Construct with :meth:`from_path`, :meth:`from_bytes`, :meth:`from_url`,
    :meth:`from_buffer`, or ``File(value)`` with any of those values.
    """

    _default_mime = "application/octet-stream"

    def __init__(self, value: Any = None, *, _path: Optional[str] = None, _data: Optional[bytes] = None, _mime: Optional[str] = None):
        self._path: Optional[str] = _path
        self._data: Optional[bytes] = _data
        self._mime: Optional[str] = _mime
        self._lock = threading.Lock()
        if value is not None:
            other = type(self)._coerce(value)
            self._path, self._data, self._mime = other._path, other._data, other._mime
            self._copy_decoded(other)
        elif _path is None and _data is None and not self._has_decoded():
            raise FileInputError(f"{type(self).__name__}() needs a value: a path, bytes, a data URI or base64")

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_path(cls: Type[F], path: Union[str, Path]) -> F:
        """The file at ``path`` (checked to exist; read when needed)."""
        if not isinstance(path, (str, Path)):
            raise TypeError(f"expected str or pathlib.Path for path, not {type(path).__name__}")
        p = os.path.abspath(os.path.expanduser(str(path)))
        if not os.path.isfile(p):
            raise FileInputError(f"File not found: {path}")
        return cls(_path=p, _mime=mimetypes.guess_type(p, strict=False)[0])

    @classmethod
    def from_bytes(cls: Type[F], data: bytes, mime: Optional[str] = None) -> F:
        """A file holding ``data``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"expected bytes for data, not {type(data).__name__}")
        data = bytes(data)
        return cls(_data=data, _mime=mime if mime and mime != "application/octet-stream" else _sniff(data) or mime)

    @classmethod
    def from_base64(cls: Type[F], text: str, mime: Optional[str] = None) -> F:
        """A file from a bare base64 string."""
        try:
            return cls.from_bytes(base64.b64decode(text, validate=True), mime)
        except (binascii.Error, ValueError):
            raise FileInputError(f"Not valid base64: {text[:60]!r}...") from None

    @classmethod
    def from_url(cls: Type[F], url: str) -> F:
        """A ``data:`` or ``file:`` URI. ``http(s)`` URLs are refused: modelzoo
        reads no network inside a prediction (download the file and pass its path)."""
        if not isinstance(url, str):
            raise TypeError(f"expected str for url, not {type(url).__name__}")
        if url.startswith("data:"):
            data, mime = _decode_data_uri(url)
            return cls.from_bytes(data, mime)
        parsed = urlparse(url)
        if parsed.scheme == "file":
            if parsed.netloc not in ("", "localhost"):
                raise FileInputError(f"Remote file URIs are not supported: {url!r}")
            return cls.from_path(unquote(parsed.path))
        if parsed.scheme in ("http", "https"):
            raise FileInputError(
                f"{url!r}: URLs are not downloaded inside a prediction; download the file and pass its path or bytes"
            )
        raise FileInputError(f"Unsupported URI scheme {parsed.scheme!r} in {url[:80]!r}; use a path, data: or file: URI")

    @classmethod
    def from_buffer(cls: Type[F], buffer: Any) -> F:
        """A file from an open binary (or text) file object."""
        name = getattr(buffer, "name", None)
        if isinstance(name, str) and os.path.isfile(name):
            return cls.from_path(name)
        raw = buffer.read()
        return cls.from_bytes(raw.encode() if isinstance(raw, str) else raw)

    @classmethod
    def _coerce(cls: Type[F], value: Any) -> F:
        """``value`` as an instance of ``cls``; the one validator of file fields."""
        if isinstance(value, cls):
            return value
        if isinstance(value, File):  # another file type: same content
            out = cls(_path=value._path, _data=value._data, _mime=value._mime) if (value._path or value._data) else cls(value.read_bytes())
            out._copy_decoded(value)
            return out
        if isinstance(value, Path):
            return cls.from_path(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls.from_bytes(bytes(value))
        if isinstance(value, str):
            return cls._from_string(value)
        if hasattr(value, "read"):
            return cls.from_buffer(value)
        raise FileInputError(
            f"Cannot make a {cls.__name__} from {type(value).__name__}: give a path, bytes, a data: URI or base64"
            + (", a PIL image or a uint8 array" if issubclass(cls, Image) else "")
        )

    @classmethod
    def _from_string(cls: Type[F], value: str) -> F:
        if value.startswith(("data:", "file:", "http:", "https:")):
            return cls.from_url(value)
        expanded = os.path.expanduser(value)
        if len(value) < 4096 and os.path.isfile(expanded):
            return cls.from_path(expanded)
        compact = "".join(value.split())
        if len(compact) >= 8 and _BASE64_RE.match(compact):
            return cls.from_base64(compact)
        raise FileInputError(
            f"{value[:80]!r} is not a file that exists, a data: or file: URI, or base64 data "
            f"(a {cls.__name__} takes one of those)"
        )

    # -- decoded state (Image keeps its pixels) ---------------------------------------------
    def _has_decoded(self) -> bool:
        return False

    def _copy_decoded(self, other: "File") -> None:
        pass

    # -- reading -----------------------------------------------------------------------------
    @property
    def mime_type(self) -> str:
        """The file's MIME type (guessed from its name or bytes)."""
        return self._mime or self._default_mime

    def read_bytes(self) -> bytes:
        """The file's content."""
        if self._data is not None:
            return self._data
        if self._path is not None:
            try:
                with open(self._path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                raise FileInputError(f"File not found: {self._path}") from None
        return self._encode()

    def _encode(self) -> bytes:  # pragma: no cover - only decoded images have no bytes
        raise FileInputError(f"{type(self).__name__} holds no data")

    @property
    def path(self) -> Path:
        """A path to the file; content given as bytes is written to a private
        temporary file (once) that is removed when the process exits."""
        with self._lock:
            if self._path is None:
                data = self.read_bytes()
                ext = mimetypes.guess_extension(self.mime_type) or ""
                fd, p = tempfile.mkstemp(suffix=ext, dir=_temp_dir())
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self._path = p
            return Path(self._path)

    def to_uri(self) -> str:
        """The file as a ``data:`` URI (its JSON form)."""
        data = self.read_bytes()
        return f"data:{self.mime_type};base64," + base64.b64encode(data).decode("ascii")

    # -- python protocol -----------------------------------------------------------------------
    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, File):
            return NotImplemented
        if self is other:
            return True
        if self._path is not None and self._path == other._path:
            return True
        return self.read_bytes() == other.read_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._path is not None:
            return f"{type(self).__name__}({self._path!r})"
        if self._data is not None:
            return f"{type(self).__name__}(<{len(self._data)} bytes, {self.mime_type}>)"
        return f"{type(self).__name__}(<decoded>)"

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- pydantic ------------------------------------------------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def validate(value: Any) -> Any:
            try:
                return cls._coerce(value)
            except FileInputError as e:
                raise ValueError(str(e)) from None

        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.to_uri(), when_used="json"),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> Dict[str, Any]:
        return {
            "type": "string",
            "format": "uri",
            "description": f"{cls.__name__}: a data: URI, base64 data or a path on the server",
        }


class Image(File):
    """An image file, or decoded pixels (Tungstenkit's ``Image``, plus arrays).

    Also takes a PIL image or a uint8 ``(H, W)`` / ``(H, W, 3|4)`` array;
    :meth:`to_pil_image` and :meth:`to_numpy` decode once and keep the result.
    """

    _default_mime = "image/png"

    def __init__(self, value: Any = None, *, _pixels: Any = None, **kwargs: Any):
        self._pixels: Any = _pixels  # a PIL image or an RGB uint8 array, when decoded
        super().__init__(value, **kwargs)

    def _has_decoded(self) -> bool:
        return self._pixels is not None

    def _copy_decoded(self, other: File) -> None:
        if isinstance(other, Image) and other._pixels is not None:
            self._pixels = other._pixels

    @classmethod
    def from_pil_image(cls, pil_image: Any) -> "Image":
        """An image holding ``pil_image`` (encoded as PNG when bytes are needed)."""
        from PIL import Image as PILImage

        if not isinstance(pil_image, PILImage.Image):
            raise TypeError(f"expected a PIL image, not {type(pil_image).__name__}")
        return cls(_pixels=pil_image)

    @classmethod
    def from_numpy(cls, array: Any) -> "Image":
        """An image holding a uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` array."""
        arr = np.asarray(array)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise FileInputError(
                f"An Image array must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {arr.dtype} {arr.shape}"
            )
        return cls(_pixels=arr)

    @classmethod
    def _coerce(cls, value: Any) -> "Image":  # type: ignore[override]
        if isinstance(value, np.ndarray):
            return cls.from_numpy(value)
        try:
            from PIL import Image as PILImage

            if isinstance(value, PILImage.Image):
                return cls.from_pil_image(value)
        except ImportError:  # pragma: no cover - Pillow is a dependency
            pass
        return super()._coerce(value)

    def _open(self) -> Any:
        from PIL import Image as PILImage

        source = self._path if self._path is not None else io.BytesIO(self.read_bytes())
        where = self._path or "the image's bytes"
        try:
            img = PILImage.open(source)
            img.load()
        except FileNotFoundError:
            raise FileInputError(f"Image file not found: {self._path}") from None
        except Exception as e:
            raise FileInputError(f"Cannot decode {where}: {type(e).__name__}: {e}") from None
        return img

    def to_pil_image(self, mode: str = "RGB") -> Any:
        """The image as a PIL image in ``mode`` (any file mode is converted)."""
        from PIL import Image as PILImage

        from ..image_io import to_rgb

        pixels = self._pixels
        if pixels is None:
            img = self._open()
            if mode == "RGB":
                img = to_rgb(img)
                self._pixels = img
            return img if img.mode == mode else img.convert(mode)
        img = pixels if isinstance(pixels, PILImage.Image) else PILImage.fromarray(np.squeeze(pixels, -1) if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
        if mode == "RGB":
            img = to_rgb(img)
        return img if img.mode == mode else img.convert(mode)

    def to_numpy(self) -> np.ndarray:
        """The image as a uint8 ``(H, W, 3)`` RGB array."""
        pixels = self._pixels
        if isinstance(pixels, np.ndarray) and pixels.ndim == 3 and pixels.shape[2] == 3:
            return pixels
        arr = np.asarray(self.to_pil_image("RGB"))
        if self._pixels is None or not isinstance(self._pixels, np.ndarray):
            self._pixels = arr
        return arr

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)``; reads only the header of a file not yet decoded."""
        pixels = self._pixels
        if isinstance(pixels, np.ndarray):
            return int(pixels.shape[1]), int(pixels.shape[0])
        if pixels is not None:
            return tuple(pixels.size)  # type: ignore[return-value]
        from PIL import Image as PILImage

        source = self._path if self._path is not None else io.BytesIO(self.read_bytes())
        try:
            with PILImage.open(source) as img:
                return tuple(img.size)  # type: ignore[return-value]
        except Exception as e:
            raise FileInputError(f"Cannot read the size of {self._path or 'the image bytes'}: {e}") from None

    def _encode(self) -> bytes:
        buf = io.BytesIO()
        self.to_pil_image(self._pil_mode()).save(buf, format="PNG")
        self._mime = "image/png"
        return buf.getvalue()

    def _pil_mode(self) -> str:
        pixels = self._pixels
        if isinstance(pixels, np.ndarray):
            return "L" if pixels.ndim == 2 or pixels.shape[2] == 1 else ("RGBA" if pixels.shape[2] == 4 else "RGB")
        mode = getattr(pixels, "mode", "RGB")
        return mode if mode in ("L", "RGB", "RGBA") else "RGB"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, Image) and self._pixels is not None and other._pixels is not None:
            return bool(np.array_equal(np.asarray(self._pixels), np.asarray(other._pixels)))
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class Binary(File):
    """Any file (Tungstenkit's ``Binary``)."""


class Audio(File):
    """An audio file (kept as a file; modelzoo decodes no audio)."""


class Video(File):
    """A video file (kept as a file)."""
