"""Drawing labels onto images, where people can look at them.

* :func:`draw_image` draws a dict of labels onto one image array (the
  building block: one image, or one video frame);
* :func:`draw_labels` writes a PNG per sample with its labels drawn;
* :func:`contact_sheet` tiles samples with their labels into one PNG.

Every label type is drawn: boxes with label and confidence, instance masks
(tinted), keypoints with skeleton edges, semantic masks (colour overlay),
classifications (captions). Ground truth (``gt_fields``) is drawn dashed,
predictions solid; with an ``eval_key``, objects are coloured by their result:
tp green, fp red, fn orange.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .errors import DatasetError
from .image_io import read_image
from .labels import Classification, Classifications, Detection, Detections, Keypoint, Keypoints, Label, Segmentation
from .masks import box_pixels, full_mask
from .video.strip import strip_frames

#: frames drawn for a video sample, spread evenly over the video
STRIP_FRAMES = 6

__all__ = ["EVAL_COLORS", "STRIP_FRAMES", "class_color", "draw_image", "draw_video_strip", "draw_labels", "contact_sheet"]

RGB = Tuple[int, int, int]
#: the colours of evaluation results
EVAL_COLORS: Dict[str, RGB] = {"tp": (40, 200, 60), "fp": (235, 40, 40), "fn": (255, 160, 0)}
_PALETTE: List[RGB] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (255, 215, 0), (0, 128, 128),
]
_MASK_ALPHA = 0.45


def class_color(name: Any) -> RGB:
    """A stable colour for a class name or index (the same in every image and run)."""
    return _PALETTE[zlib.crc32(str(name).encode()) % len(_PALETTE)]


def _as_rgb(image: Union[np.ndarray, Image.Image]) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DatasetError(f"draw_image: expected an (H, W), (H, W, 3) or (H, W, 4) image array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(arr[:, :, :3], "RGB")


def _tint(img: Image.Image, mask: np.ndarray, color: RGB, alpha: float = _MASK_ALPHA) -> Image.Image:
    arr = np.asarray(img).astype(np.float32)
    arr[mask] = (1 - alpha) * arr[mask] + alpha * np.asarray(color, dtype=np.float32)
    return Image.fromarray(arr.round().astype(np.uint8), "RGB")


def _dashed_rect(draw: ImageDraw.ImageDraw, box: Tuple[int, int, int, int], color: RGB, width: int) -> None:
    x0, y0, x1, y1 = box
    dash = max(4, 3 * width)
    for a, b, horizontal, at in ((x0, x1, True, y0), (x0, x1, True, y1), (y0, y1, False, x0), (y0, y1, False, x1)):
        pos = a
        while pos < b:
            end = min(pos + dash, b)
            draw.line([(pos, at), (end, at)] if horizontal else [(at, pos), (at, end)], fill=color, width=width)
            pos += 2 * dash


def _caption(draw: ImageDraw.ImageDraw, xy: Tuple[float, float], text: str, color: RGB) -> None:
    left, top, right, bottom = draw.textbbox(xy, text)
    draw.rectangle([left - 1, top - 1, right + 1, bottom + 1], fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text(xy, text, fill=(0, 0, 0) if luminance > 150 else (255, 255, 255))


def _object_color(label: Label, eval_key: Optional[str]) -> RGB:
    result = (getattr(label, "attributes", None) or {}).get(eval_key) if eval_key else None
    if result in EVAL_COLORS:
        return EVAL_COLORS[str(result)]
    return class_color(getattr(label, "label", None))


def _text(label: Any, field: Optional[str] = None) -> str:
    text = "" if label.label is None else str(label.label)
    confidence = getattr(label, "confidence", None)
    if isinstance(confidence, (int, float)):
        text += f" {confidence:.2f}"
    return f"{field}: {text}" if field else text


def _edges(skeleton: Any, label: Optional[str]) -> List[List[int]]:
    if skeleton is None:
        return []
    if isinstance(skeleton, Mapping) and "edges" in skeleton:
        return [list(e) for e in skeleton["edges"]]
    if isinstance(skeleton, Mapping):  # per class
        return _edges(skeleton.get(label), None)
    return [list(e) for e in skeleton]


def draw_image(
    image: Union[np.ndarray, Image.Image],
    labels: Mapping[str, Optional[Label]],
    gt_fields: Iterable[str] = (),
    eval_key: Optional[str] = None,
    skeleton: Any = None,
    line_width: Optional[int] = None,
) -> Image.Image:
    """Draws labels onto a copy of one image.

    Args:
        image: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array (or a PIL image).
        labels: ``{field name: label}``; any label type, None is skipped.
        gt_fields: the fields that are ground truth (drawn dashed).
        eval_key: colour objects by the result stored under this key (tp/fp/fn).
        skeleton: keypoint edges: ``{"edges": [[i, j], ...]}`` (one for all),
            ``{class: {"edges": ...}}``, or a list of edges.
        line_width: box outline width (default: from the image size).

    Returns:
        the drawn RGB image.
    """
    img = _as_rgb(image).copy()
    width, height = img.size
    lw = line_width or max(2, round(max(width, height) / 250))
    gts = set(gt_fields)
    # overlays first (semantic masks, instance masks), outlines and text on top
    for label in labels.values():
        if isinstance(label, Segmentation) and label.mask is not None:
            mask = np.asarray(label.mask)
            if mask.shape != (height, width):
                mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize((width, height), Image.Resampling.NEAREST))
            for value in np.unique(mask):
                if value != 0:
                    img = _tint(img, mask == value, class_color((label.mask_targets or {}).get(str(value), int(value))))
        for det in _detections(label):
            if det.mask is not None and det.bounding_box:
                img = _tint(img, _instance_mask(det, width, height), _object_color(det, eval_key))
    draw = ImageDraw.Draw(img)
    captions: List[Tuple[str, RGB]] = []
    for field, label in labels.items():
        gt = field in gts
        if isinstance(label, Classification):
            captions.append((_text(label, field), class_color(label.label)))
        elif isinstance(label, Classifications):
            captions += [(_text(c, field), class_color(c.label)) for c in label.classifications]
        for det in _detections(label):
            if not det.bounding_box:
                continue
            x, y, w, h = det.bounding_box
            # boxes may extend past the image: drawn clipped to it
            box = (
                min(max(int(round(x * width)), 0), width - 1), min(max(int(round(y * height)), 0), height - 1),
                min(max(int(round((x + w) * width)), 0), width - 1), min(max(int(round((y + h) * height)), 0), height - 1),
            )
            color = _object_color(det, eval_key)
            if gt:
                _dashed_rect(draw, box, color, max(1, lw - 1))
            else:
                draw.rectangle(box, outline=color, width=lw)
            _caption(draw, (box[0] + lw, max(box[1] - 12, 0) if not gt else box[1] + lw), _text(det), color)
        for kp in _keypoints(label):
            color = _object_color(kp, eval_key)
            pts = [(p[0] * width, p[1] * height) if p[0] == p[0] and p[1] == p[1] else None for p in kp.points]
            for edge in _edges(skeleton, kp.label):
                for a, b in zip(edge, edge[1:]):
                    pa = pts[a] if a < len(pts) else None
                    pb = pts[b] if b < len(pts) else None
                    if pa is not None and pb is not None:
                        draw.line([pa, pb], fill=color, width=max(1, lw - 1))
            r = lw + 1
            for p in pts:
                if p is not None:
                    draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=color, outline=(255, 255, 255))
    y = 2
    for text, color in captions:
        _caption(draw, (3, y), text, color)
        y += 14
    return img


def _instance_mask(det: Detection, width: int, height: int) -> np.ndarray:
    """The image-sized mask of ``det``, its mask resized to its box when the
    image is drawn at another size than the one the mask was made at."""
    c0, r0, c1, r1 = box_pixels(det.bounding_box, width, height)
    m = np.asarray(det.mask) != 0
    if m.shape != (r1 - r0, c1 - c0) and m.size:
        resized = Image.fromarray(m.astype(np.uint8) * 255).resize((c1 - c0, r1 - r0), Image.Resampling.NEAREST)
        m = np.asarray(resized) > 127
    return full_mask(m, det.bounding_box, width, height)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled so that its longer side is ``size`` (labels are
    relative, so they are drawn at the tile's resolution, text readable)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if abs(scale - 1) < 1e-3:
        return image
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(new, resample))


def _detections(label: Any) -> List[Detection]:
    if isinstance(label, Detections):
        return list(label.detections)
    if isinstance(label, Detection):
        return [label]
    return []


def _keypoints(label: Any) -> List[Keypoint]:
    if isinstance(label, Keypoints):
        return list(label.keypoints)
    if isinstance(label, Keypoint):
        return [label]
    return []


def _fields(label_fields: Union[str, Sequence[str]]) -> List[str]:
    return [label_fields] if isinstance(label_fields, str) else list(label_fields)


def _skeleton_of(samples: Any, skeleton: Any) -> Any:
    if skeleton is not None:
        return skeleton
    dataset = getattr(samples, "dataset", None)
    info = getattr(dataset, "info", None) or {}
    per_class = {
        c["name"]: {"edges": [[a - 1, b - 1] for a, b in c["skeleton"]]}  # COCO numbers points from 1
        for c in info.get("coco_categories", []) if c.get("skeleton")
    }
    return per_class or info.get("skeleton")


def _drawn(
    samples: Any, label_fields: Sequence[str], gt_fields: Iterable[str], eval_key: Optional[str], skeleton: Any,
    limit: Optional[int] = None, fit: Optional[int] = None,
) -> Iterator[Tuple[Any, Image.Image]]:
    gts = list(gt_fields)
    skeleton = _skeleton_of(samples, skeleton)
    for i, sample in enumerate(samples):
        if limit is not None and i >= limit:
            return
        if getattr(sample, "media_type", "image") == "video":
            yield sample, draw_video_strip(sample, label_fields, gts, eval_key, skeleton, fit=fit)
            continue
        labels = {f: getattr(sample, f, None) for f in label_fields}
        image = read_image(sample.filepath)
        yield sample, draw_image(image if fit is None else _fit(image, fit), labels, gts, eval_key, skeleton)


def draw_video_strip(
    sample: Any,
    label_fields: Union[str, Sequence[str]],
    gt_fields: Iterable[str] = (),
    eval_key: Optional[str] = None,
    skeleton: Any = None,
    count: int = STRIP_FRAMES,
    fit: Optional[int] = None,
) -> Image.Image:
    """A video sample as one strip: ``count`` evenly spaced frames side by
    side, each drawn by :func:`draw_image` with its frame labels (the frame
    fields ``label_fields``) and captioned with its frame number.

    Args:
        fit: scale the strip so that its longer side is at most this.
    """
    fields = _fields(label_fields)
    gts = list(gt_fields)
    frames = strip_frames(sample, count=count, fields=fields)
    if not frames:
        raise DatasetError(f"Sample {sample.id} ({sample.filepath}): no frame could be decoded to draw")
    drawn = []
    for frame in frames:
        img = draw_image(frame.image, {f: frame.labels.get(f) for f in fields}, gts, eval_key, skeleton)
        _caption(ImageDraw.Draw(img), (2, img.height - 14), f"frame {frame.frame_number}", (32, 32, 32))
        drawn.append(img)
    height = max(img.height for img in drawn)
    strip = Image.new("RGB", (sum(img.width for img in drawn), height), (32, 32, 32))
    x = 0
    for img in drawn:
        strip.paste(img, (x, 0))
        x += img.width
    if fit is not None and max(strip.size) > fit:
        scale = fit / max(strip.size)
        strip = strip.resize((max(1, round(strip.width * scale)), max(1, round(strip.height * scale))),
                             Image.Resampling.BILINEAR)
    return strip


def draw_labels(
    samples: Any,
    output_dir: str,
    label_fields: Union[str, Sequence[str]],
    gt_fields: Iterable[str] = (),
    eval_key: Optional[str] = None,
    skeleton: Any = None,
) -> List[str]:
    """Writes one PNG per sample, its labels drawn on a copy of its image.

    Args:
        samples: a dataset, a view, or an iterable of samples.
        output_dir: where the PNGs go (``<image name>-<sample id>.png``).
        label_fields: the fields to draw.
        gt_fields: which of them are ground truth (drawn dashed).
        eval_key: colour objects by their result under this key.
        skeleton: keypoint edges (default: the COCO categories' skeletons of
            the dataset, when it was imported from COCO).

    Returns:
        the paths written, in sample order.
    """
    os.makedirs(output_dir, exist_ok=True)
    paths = []
    for sample, img in _drawn(samples, _fields(label_fields), gt_fields, eval_key, skeleton):
        stem = os.path.splitext(os.path.basename(sample.filepath))[0]
        path = os.path.join(output_dir, f"{stem}-{sample.id}.png")
        img.save(path)
        paths.append(path)
    return paths


def contact_sheet(
    samples: Any,
    path: str,
    label_fields: Union[str, Sequence[str]],
    n: int = 32,
    tile: int = 256,
    columns: Optional[int] = None,
    gt_fields: Iterable[str] = (),
    eval_key: Optional[str] = None,
    skeleton: Any = None,
) -> str:
    """Tiles the first ``n`` samples, labels drawn, into one PNG.

    Args:
        tile: each image is scaled to fit a ``tile x tile`` square, then its
            labels are drawn (so small images get readable captions).
        columns: tiles per row (default: up to 8).

    Returns:
        ``path``.
    """
    tiles = []
    for _, img in _drawn(samples, _fields(label_fields), gt_fields, eval_key, skeleton, limit=n, fit=tile):
        tiles.append(ImageOps.pad(img, (tile, tile), color=(32, 32, 32)))
    cols = columns or max(1, min(8, len(tiles)))
    rows = max(1, (len(tiles) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * tile, rows * tile), (255, 255, 255))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * tile, (i // cols) * tile))
    if os.path.dirname(os.fspath(path)):
        os.makedirs(os.path.dirname(os.fspath(path)), exist_ok=True)
    sheet.save(path)
    return os.fspath(path)
