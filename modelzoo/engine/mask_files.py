"""Masks and maps written as PNG files instead of into the database
(``apply_model(output_dir=..., rel_dir=...)``, FiftyOne's options).

The label sink calls :meth:`MaskWriter.externalize` on each output in its
writer thread (never the main one): every ``Segmentation`` mask, instance
``Detection`` mask and ``Heatmap`` map is written as a PNG and the label keeps
its path (``mask_path`` / ``map_path``) instead of the pixels, so sample
documents stay small. Reading ``label.mask`` / ``label.map`` loads the file.

Names are unique and stable: ``<output_dir>/<input path relative to rel_dir,
without extension>/<field>[-f<frame>][-<label id>].png`` (without ``rel_dir``:
``<file name without extension>-<sample id>/...``, as two inputs may share a
name). Integer masks are stored as they are (8 or 16 bits); boolean instance
masks as 0/255; float heatmaps as 16 bits over their ``range`` (reading gives
the 16-bit values: ``range`` maps them back).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import numpy as np

from ..errors import ConfigError, LabelError
from ..labels import Detection, Detections, Heatmap, Label, Segmentation

__all__ = ["MaskWriter", "write_png"]


def write_png(path: str, array: np.ndarray) -> None:
    """Writes a 2-D array as a grayscale PNG (8 or 16 bits), creating its directory."""
    from PIL import Image

    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise LabelError(f"Cannot write {path!r}: values {arr.min()}..{arr.max()} do not fit 16 bits")
        arr = arr.astype(np.uint16)
    if arr.ndim != 2:
        raise LabelError(f"Cannot write {path!r}: expected a 2-D mask, got shape {arr.shape}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    Image.fromarray(arr).save(tmp, format="PNG")
    os.replace(tmp, path)  # a reader never sees half a file


class MaskWriter:
    """Writes the masks and maps of outputs under ``output_dir``. Picklable.

    Args:
        output_dir: where the PNGs go (created when needed).
        rel_dir: a directory the input paths are under: their path relative
            to it is kept under ``output_dir``.
    """

    def __init__(self, output_dir: str, rel_dir: Optional[str] = None):
        if not output_dir:
            raise ConfigError("output_dir must be a directory path")
        self.output_dir = os.path.abspath(os.fspath(output_dir))
        self.rel_dir = os.path.abspath(os.fspath(rel_dir)) if rel_dir else None

    def _base(self, filepath: Optional[str], sample_id: Any) -> str:
        path = os.path.abspath(filepath or str(sample_id))
        if self.rel_dir is not None:
            rel = os.path.relpath(path, self.rel_dir)
            if rel.startswith(os.pardir + os.sep) or rel == os.pardir:
                raise ConfigError(f"rel_dir={self.rel_dir!r}: input {path!r} is not under it")
            return os.path.join(self.output_dir, os.path.splitext(rel)[0])
        stem = os.path.splitext(os.path.basename(path))[0]
        return os.path.join(self.output_dir, f"{stem}-{sample_id}")

    def externalize(self, output: Any, sample_id: Any, filepath: Optional[str], field: str,
                    frame: Optional[int] = None) -> Any:
        """``output`` with its masks and maps written to files (labels are changed in place)."""
        if isinstance(output, Label):
            self._label(output, self._base(filepath, sample_id), field, frame)
        elif isinstance(output, Mapping):
            frames = bool(output) and all(isinstance(k, int) and not isinstance(k, bool) for k in output)
            for key, value in output.items():
                if frames:
                    self.externalize(value, sample_id, filepath, field, int(key))
                else:
                    self.externalize(value, sample_id, filepath, f"{field}_{key}", frame)
        return output

    def _label(self, label: Label, base: str, field: str, frame: Optional[int]) -> None:
        name = field + (f"-f{frame}" if frame is not None else "")
        if isinstance(label, Segmentation) and label._data.get("mask") is not None:
            path = os.path.join(base, name + ".png")
            write_png(path, label._data["mask"])
            label.mask, label.mask_path = None, path
        elif isinstance(label, Heatmap) and label._data.get("map") is not None:
            path = os.path.join(base, name + ".png")
            arr = np.asarray(label._data["map"])
            if arr.dtype.kind == "f":
                lo, hi = (label.range or [float(np.nanmin(arr)), float(np.nanmax(arr))])[:2]
                scale = 65535.0 / (hi - lo) if hi > lo else 0.0
                arr = np.clip(np.round((np.nan_to_num(arr, nan=lo) - lo) * scale), 0, 65535).astype(np.uint16)
                label.range = [lo, hi]
            write_png(path, arr)
            label.map, label.map_path = None, path
        elif isinstance(label, Detections):
            for det in label.detections:
                self._label(det, base, field, frame)
        elif isinstance(label, Detection) and label._data.get("mask") is not None:
            path = os.path.join(base, f"{name}-{label.id}.png")
            write_png(path, label._data["mask"])
            label.mask, label.mask_path = None, path
