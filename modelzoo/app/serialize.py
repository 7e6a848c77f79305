"""Stored documents to the JSON the page draws from.

Labels keep their stored shape (``_cls``, relative boxes, points); arrays,
in the label or in the PNG file its ``mask_path`` / ``map_path`` names,
become what a browser can use: an instance mask or a semantic mask is a PNG
(data URL, one byte per pixel: 255 inside, or the class index), a heatmap a
PNG of its values scaled to 0-255 over its ``range``; logits and other
arrays are summarised (``{"_array": shape, "dtype": ...}``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import math
from typing import Any, Dict, Mapping, Optional

import numpy as np
from bson import ObjectId
from bson.binary import Binary
from PIL import Image

from ..encoding import ARRAY_SUBTYPE, decode_array
from ..errors import LabelError
from ..labels import stored_array

__all__ = ["to_json", "png_data_url"]

_LIST_KEYS = ("detections", "classifications", "keypoints")


def png_data_url(array: np.ndarray) -> str:
    """A ``data:image/png`` URL of a 2-D uint8 array (grayscale)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "L").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fit(array: np.ndarray, max_size: Optional[int]) -> np.ndarray:
    if max_size is None or max(array.shape[:2]) <= max_size:
        return array
    h, w = array.shape[:2]
    scale = max_size / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.NEAREST))


def _mask(arr: np.ndarray, kind: str, label: Mapping[str, Any], max_size: Optional[int]) -> Any:
    if arr.ndim != 2:
        return {"_array": list(arr.shape), "dtype": str(arr.dtype)}
    if kind == "Detection":  # instance mask: inside (255) / outside (0)
        return {"png": png_data_url(_fit((arr != 0).astype(np.uint8) * 255, max_size)), "shape": list(arr.shape)}
    if kind == "Heatmap":
        lo, hi = label.get("range") or (float(np.nanmin(arr)), float(np.nanmax(arr)))
        scaled = np.clip((arr.astype(np.float64) - lo) / ((hi - lo) or 1.0) * 255.0, 0, 255)
        return {"png": png_data_url(_fit(np.nan_to_num(scaled).round().astype(np.uint8), max_size)), "shape": list(arr.shape)}
    values = np.unique(arr)
    if arr.dtype.kind in "iub" and (values.size == 0 or (values.min() >= 0 and values.max() < 256)):
        return {"png": png_data_url(_fit(arr.astype(np.uint8), max_size)), "shape": list(arr.shape),
                "values": [int(v) for v in values]}
    return {"_array": list(arr.shape), "dtype": str(arr.dtype)}


def _label(d: Mapping[str, Any], max_mask: Optional[int]) -> Dict[str, Any]:
    cls = d.get("_cls", "")
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if k in _LIST_KEYS and isinstance(v, list):
            out[k] = [_label(x, max_mask) for x in v if isinstance(x, Mapping)]
        elif k in ("mask", "map", "mask_path", "map_path", "logits"):
            continue
        else:
            out["id" if k == "_id" else k] = to_json(v)
    key = "map" if cls == "Heatmap" else "mask"
    if d.get(key) is not None or d.get(key + "_path"):  # in the label, or in the PNG file it names
        try:
            arr = stored_array(dict(d), key, key + "_path")
        except (OSError, ValueError, LabelError) as e:  # a missing or unreadable file: say so, draw the rest
            out[key] = {"error": f"{type(e).__name__}: {e}"}
        else:
            if arr is not None:
                out[key] = _mask(np.asarray(arr), cls, d, max_mask)
    return out


def to_json(value: Any, max_mask: Optional[int] = None) -> Any:
    """A stored value (a document, a label, a list, a scalar) as JSON-ready data.

    Args:
        max_mask: semantic masks and heatmaps larger than this are scaled
            down (nearest) to it, for thumbnails.
    """
    if isinstance(value, Mapping):
        if "_cls" in value:
            return _label(value, max_mask)
        return {("id" if k == "_id" else str(k)): to_json(v, max_mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, max_mask) for v in value]
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, Binary) and value.subtype == ARRAY_SUBTYPE:
        arr = decode_array(value)
        return {"_array": list(arr.shape), "dtype": str(arr.dtype)}
    if isinstance(value, bytes):
        return {"_bytes": len(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer, np.floating)):
        return to_json(value.item())
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)
