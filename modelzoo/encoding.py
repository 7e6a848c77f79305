"""Compact, pickle-free binary encoding of numpy arrays for MongoDB.

Arrays (masks, logits, embeddings) are stored as BSON binary: the ``.npy``
bytes written by ``np.save(allow_pickle=False)``, zlib-compressed when that
saves space (masks compress well, float embeddings do not). Decoding never
unpickles anything.
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

import numpy as np
from bson.binary import Binary
from mongoengine.base import BaseField

__all__ = ["ARRAY_SUBTYPE", "encode_array", "decode_array", "NumpyArrayField"]

_NPY_MAGIC = b"\x93NUMPY"
#: BSON binary subtype (user-defined range) that marks an encoded array, so a
#: sample field holding one reads back as a numpy array.
ARRAY_SUBTYPE = 0x80
_COMPRESS_MIN_BYTES = 1024


def encode_array(array: Any) -> Binary:
    """Encodes an array as BSON binary (``.npy`` bytes, zlib'd when smaller)."""
    arr = np.asarray(array)
    if arr.dtype == object:
        raise TypeError("Cannot encode an array of Python objects; convert it to a numeric dtype first.")
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    raw = buf.getvalue()
    if len(raw) >= _COMPRESS_MIN_BYTES:
        packed = zlib.compress(raw, 1)
        if len(packed) < 0.9 * len(raw):
            return Binary(packed, ARRAY_SUBTYPE)
    return Binary(raw, ARRAY_SUBTYPE)


#: the header ``np.save`` writes (format 1.0): ``{'descr': ..., 'fortran_order': ..., 'shape': (...), }``
_HEADER = re.compile(
    rb"\{'descr': '([<>|=][a-zA-Z]\d+)', 'fortran_order': (True|False), 'shape': \(((?:\d+, ?)*\d*)\), \}"
)


def decode_array(data: bytes) -> np.ndarray:
    """Decodes what :func:`encode_array` wrote.

    The plain ``.npy`` header ``np.save`` writes is read directly (``np.load``
    parses it with ``ast.literal_eval``: ~10x slower for the small masks that
    evaluations read by the thousand); anything else goes through ``np.load``.
    """
    data = bytes(data)
    if not data.startswith(_NPY_MAGIC):
        data = zlib.decompress(data)
    if data[6:8] == b"\x01\x00":  # format 1.0: a 2-byte header length
        size = int.from_bytes(data[8:10], "little")
        match = _HEADER.match(data[10 : 10 + size])
        if match is not None:
            dtype = np.dtype(match.group(1).decode())
            shape = tuple(int(v) for v in match.group(3).split(b",") if v.strip())
            flat = np.frombuffer(data, dtype=dtype, offset=10 + size, count=int(np.prod(shape, dtype=np.int64)))
            if match.group(2) == b"True":
                return flat.reshape(shape, order="F").copy()
            return flat.reshape(shape).copy()
    return np.load(io.BytesIO(data), allow_pickle=False)


class NumpyArrayField(BaseField):
    """A mongoengine field that stores a numpy array as compact binary."""

    def to_mongo(self, value: Any) -> Any:
        if value is None:
            return None
        return encode_array(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, (bytes, Binary)):
            return decode_array(value)
        return value

    def validate(self, value: Any) -> None:
        if value is not None and not isinstance(value, np.ndarray):
            self.error(f"expected a numpy array, got {type(value).__name__}")

    def __set__(self, instance: Any, value: Any) -> None:
        if value is not None and not isinstance(value, np.ndarray):
            value = self.to_python(value)
            if not isinstance(value, np.ndarray):
                value = np.asarray(value)
        super().__set__(instance, value)
