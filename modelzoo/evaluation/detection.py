"""Object detection evaluation, COCO style.

Two things are computed from one pass over the stored labels:

* **the COCO metrics**, exactly as ``pycocotools.cocoeval.COCOeval`` computes
  them (``tests/test_evaluation_detection.py`` compares all 12 summary
  numbers): per image and category, detections sorted by score and capped at
  100, greedy matching at IoU ``.50:.05:.95`` that prefers unignored ground
  truth, crowd regions matched any number of times by intersection over the
  detection's area, the area ranges (all, small < 32², medium, large > 96²),
  101-point interpolated precision;
* **per-object results at one IoU** (``iou``, default 0.5): each prediction is
  ``tp`` or ``fp``, each ground-truth object ``tp`` or ``fn``, with the
  matched object's id and the IoU (in the label's ``attributes`` under
  ``eval_key``, ``eval_key + "_id"``, ``eval_key + "_iou"``), and each sample
  gets ``eval_key_tp`` / ``_fp`` / ``_fn`` counts. A prediction matching a
  crowd region is a ``tp`` that consumes nothing (the region records its
  best-scored match); unmatched crowd regions are not ``fn``.

Boxes are compared in pixels (they are stored relative), masks pixel by
pixel where two of them overlap (``use_masks``: when both sides have masks).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from bson import ObjectId

from ..errors import EvaluationError
from ..labels import stored_array
from ..masks import box_pixels
from .reading import check_fields, image_size, iter_docs

__all__ = [
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "AREA_RANGES",
    "MAX_DETS",
    "DetectionMatch",
    "evaluate_detections_docs",
    "match_detections",
    "box_iou",
]

#: the COCO IoU thresholds .50:.05:.95 (as pycocotools builds them)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: the 101 recall points of the interpolated precision
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
#: name -> [min, max] object area in pixels
AREA_RANGES = {"all": (0.0, 1e5**2), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}
MAX_DETS = (1, 10, 100)
_CROWD = "iscrowd"


def box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of pixel boxes ``[x, y, w, h]``: ``dt (D, 4)`` x ``gt (G, 4)`` -> ``(D, G)``.
    For a crowd ground truth, the intersection over the detection's area."""
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[None, :, i] for i in range(4))
    w = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
    h = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    da, ga = dw * dh, gw * gh
    union = np.where(crowd[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _placed_mask(mask: np.ndarray, box: Sequence[float], width: int, height: int) -> Tuple[int, int, np.ndarray, int]:
    """``(row, column, mask, pixel count)``: a box-sized mask where
    :func:`~modelzoo.masks.full_mask` puts it, clipped to the image."""
    c0, r0, _, _ = box_pixels(box, width, height)
    m = np.asarray(mask) != 0
    m = m[: max(height - r0, 0), : max(width - c0, 0)]
    return r0, c0, m, int(np.count_nonzero(m))


def _placed_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of placed masks ``dt (D,)`` x ``gt (G,)`` -> ``(D, G)`` (see
    :func:`_placed_mask`), counting pixels only where two masks' rectangles
    overlap: the same integers as image-sized masks give, without making
    them. For a crowd ground truth, the intersection over the detection's area."""
    if not len(dt) or not len(gt):
        return np.zeros((len(dt), len(gt)))

    def rects(items: np.ndarray) -> np.ndarray:
        return np.array([(r, c, r + m.shape[0], c + m.shape[1], a) for r, c, m, a in items], dtype=np.int64)

    d, g = rects(dt), rects(gt)
    r0 = np.maximum(d[:, None, 0], g[None, :, 0])
    r1 = np.minimum(d[:, None, 2], g[None, :, 2])
    c0 = np.maximum(d[:, None, 1], g[None, :, 1])
    c1 = np.minimum(d[:, None, 3], g[None, :, 3])
    inter = np.zeros((len(dt), len(gt)))
    for i, j in zip(*np.nonzero((r1 > r0) & (c1 > c0))):
        dr, dc, dm, _ = dt[i]
        gr, gc, gm, _ = gt[j]
        a0, a1, b0, b1 = r0[i, j], r1[i, j], c0[i, j], c1[i, j]
        inter[i, j] = np.count_nonzero(dm[a0 - dr : a1 - dr, b0 - dc : b1 - dc] & gm[a0 - gr : a1 - gr, b0 - gc : b1 - gc])
    da, ga = d[:, 4][:, None].astype(np.float64), g[:, 4][None, :].astype(np.float64)
    union = np.where(crowd[None, :], da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _greedy(ious: List[List[float]], gt_ignore: List[bool], crowd: List[bool], thr: float) -> List[int]:
    """COCO's matching at one threshold: detections in score order, each to
    the unmatched (or crowd) ground truth of highest IoU, unignored ones
    first (ground truth sorted unignored first). Returns the gt index per
    detection, or -1."""
    matched = [False] * len(gt_ignore)
    out = [-1] * len(ious)
    limit = min(thr, 1 - 1e-10)
    for d, row in enumerate(ious):
        best, m = limit, -1
        for g, value in enumerate(row):
            if matched[g] and not crowd[g]:
                continue
            if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                break
            if value < best:
                continue
            best, m = value, g
        if m > -1:
            out[d] = m
            matched[m] = True
    return out


@dataclass
class _Entry:
    scores: np.ndarray  # (D,) sorted descending
    matched: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    npig: int


@dataclass
class DetectionMatch:
    """What the matching found, before it is written: per-object results and metrics.

    Attributes:
        classes: the class names, sorted (the COCO category order).
        precision: ``(T, R, K, A, M)`` as ``COCOeval.eval["precision"]`` (-1: no ground truth).
        recall: ``(T, K, A, M)``.
        stats: the 12 ``COCOeval.stats``, or None without ``compute_mAP``.
        pairs: ``(gt label or None, pred label or None, iou)`` per match / miss at ``iou``.
        pred_results / gt_results: per sample index, per object: ``(kind, other id, iou)``.
    """

    classes: List[str]
    precision: Optional[np.ndarray]
    recall: Optional[np.ndarray]
    stats: Optional[List[float]]
    pairs: List[Tuple[Optional[str], Optional[str], float]] = field(default_factory=list)
    pred_results: List[List[Tuple[str, Optional[str], Optional[float]]]] = field(default_factory=list)
    gt_results: List[List[Optional[Tuple[str, Optional[str], Optional[float]]]]] = field(default_factory=list)


def _objects(label: Any, width: int, height: int, with_masks: bool, is_pred: bool) -> Dict[str, Any]:
    dets = (label or {}).get("detections") or []
    n = len(dets)
    boxes = np.zeros((n, 4))
    for i, d in enumerate(dets):
        b = d.get("bounding_box") or (0.0, 0.0, 0.0, 0.0)
        boxes[i] = (b[0] * width, b[1] * height, b[2] * width, b[3] * height)
    attrs = [d.get("attributes") or {} for d in dets]
    crowd = np.array([bool(a.get(_CROWD, 0)) for a in attrs], dtype=bool) if not is_pred else np.zeros(n, bool)
    masks = None
    if with_masks:
        if any(d.get("mask") is None and not d.get("mask_path") for d in dets):
            raise EvaluationError(
                f"use_masks=True, but a {'prediction' if is_pred else 'ground-truth object'} has no mask"
                " (pass use_masks=None to compare masks only when every object has one)"
            )
        masks = np.empty(n, dtype=object)
        for i, d in enumerate(dets):
            mask = stored_array(d)  # in the label, or its PNG (apply_model(output_dir=...))
            assert mask is not None  # checked above
            masks[i] = _placed_mask(mask, d.get("bounding_box"), width, height)
    # a prediction's area is its box's, as pycocotools' loadRes computes it for
    # results with a bbox; ground truth: the annotation's area, else the mask's
    if masks is not None and not is_pred:
        area = np.array([float(m[3]) for m in masks])
    else:
        area = boxes[:, 2] * boxes[:, 3]
    if not is_pred:  # COCO's ground-truth area is the annotation's own
        area = np.array([float(a["area"]) if a.get("area") is not None else area[i] for i, a in enumerate(attrs)])
    scores = np.array([d.get("confidence") if d.get("confidence") is not None else 1.0 for d in dets], dtype=np.float64)
    return {
        "labels": [d.get("label") for d in dets], "boxes": boxes, "crowd": crowd, "masks": masks,
        "area": area, "scores": scores, "ids": [d.get("_id") for d in dets],
    }


def _has_masks(label: Any) -> bool:
    dets = (label or {}).get("detections") or []
    return bool(dets) and all(d.get("mask") is not None or d.get("mask_path") for d in dets)


def evaluate_detections_docs(
    docs: Sequence[Dict[str, Any]],
    pred_field: str,
    gt_field: str,
    iou: float = 0.5,
    classwise: bool = True,
    compute_mAP: bool = True,
    use_masks: Optional[bool] = None,
    classes: Optional[Sequence[str]] = None,
) -> DetectionMatch:
    """Matches the stored documents' predictions with their ground truth.

    Args:
        docs: stored sample documents holding ``pred_field`` and ``gt_field``
            (Detections documents), ``metadata`` (or ``filepath``).
        iou: the IoU of the per-object results.
        classwise: per-object matches only between objects of one class (the
            COCO metrics are always per class).
        compute_mAP: compute the COCO metrics (else only per-object results).
        use_masks: compare instance masks; None: when every object has one.
        classes: the classes to report (default: every label seen, sorted).
    """
    if use_masks is None:
        gts = [d.get(gt_field) for d in docs]
        preds = [d.get(pred_field) for d in docs]
        use_masks = any(g and g.get("detections") for g in gts) and all(
            _has_masks(x) for x in gts + preds if x and x.get("detections")
        )
    names = set(classes or ())
    for doc in docs:
        for f in (pred_field, gt_field):
            names.update(d.get("label") for d in (doc.get(f) or {}).get("detections") or [])
    names.discard(None)
    class_list = sorted(names)
    index = {c: k for k, c in enumerate(class_list)}
    T, K, A = len(IOU_THRESHOLDS), len(class_list), len(AREA_RANGES)
    entries: Dict[Tuple[int, int], List[_Entry]] = {}
    match = DetectionMatch(classes=class_list, precision=None, recall=None, stats=None)
    areas = list(AREA_RANGES.values())

    for doc in docs:
        width, height = image_size(doc)
        gt = _objects(doc.get(gt_field), width, height, use_masks, False)
        dt = _objects(doc.get(pred_field), width, height, use_masks, True)
        iou_fn = _placed_iou if use_masks else box_iou
        key = "masks" if use_masks else "boxes"
        g_lab = [index.get(x, -1) for x in gt["labels"]]
        d_lab = [index.get(x, -1) for x in dt["labels"]]
        image_ious = iou_fn(dt[key], gt[key], gt["crowd"])  # (D, G), once per image
        if compute_mAP:
            g_by: Dict[int, List[int]] = {}
            d_by: Dict[int, List[int]] = {}
            for i, c in enumerate(g_lab):
                g_by.setdefault(c, []).append(i)
            for i, c in enumerate(d_lab):
                d_by.setdefault(c, []).append(i)
            for k in set(g_by) | set(d_by):
                if k < 0:
                    continue
                gi, di = g_by.get(k, []), d_by.get(k, [])
                order = np.argsort(-dt["scores"][di], kind="mergesort")[: MAX_DETS[-1]]
                di = [di[i] for i in order]
                ious = image_ious[np.ix_(di, gi)]
                g_area, d_area = gt["area"][gi], dt["area"][di]
                g_crowd = gt["crowd"][gi]
                d_scores = dt["scores"][di]
                # matching depends on which ground truth is ignored: once per distinct pattern
                cache: Dict[Tuple[bool, ...], Tuple[np.ndarray, np.ndarray, int]] = {}
                for a, (lo, hi) in enumerate(areas):
                    ig = g_crowd | (g_area < lo) | (g_area > hi)
                    sig = tuple(ig.tolist())
                    if sig not in cache:
                        gorder = np.argsort(ig, kind="mergesort")
                        ig_sorted = ig[gorder].tolist()
                        rows = ious[:, gorder].tolist()
                        cr = g_crowd[gorder].tolist()
                        m = np.array([_greedy(rows, ig_sorted, cr, float(thr)) for thr in IOU_THRESHOLDS], dtype=np.int64).reshape(T, len(di))
                        lookup = np.asarray(ig_sorted + [False], dtype=bool)
                        cache[sig] = (m > -1, lookup[m], len(ig_sorted) - sum(ig_sorted))  # index -1: the False sentinel
                    matched, ignored, npig = cache[sig]
                    outside = (d_area < lo) | (d_area > hi)
                    if outside.any():
                        ignored = ignored | (~matched & outside[None, :])
                    entries.setdefault((k, a), []).append(_Entry(d_scores, matched, ignored, int(npig)))
        _per_object(match, gt, dt, g_lab, d_lab, image_ious, iou, classwise)

    if compute_mAP:
        M = len(MAX_DETS)
        R = len(RECALL_THRESHOLDS)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        for (k, a), es in entries.items():
            npig = sum(e.npig for e in es)
            if npig == 0:
                continue
            # one concatenation per (class, area); each detection's rank in its image caps maxDets
            scores_all = np.concatenate([e.scores for e in es])
            rank_all = np.concatenate([np.arange(len(e.scores)) for e in es])
            matched_all = np.concatenate([e.matched for e in es], axis=1)
            ignored_all = np.concatenate([e.ignored for e in es], axis=1)
            for mi, max_det in enumerate(MAX_DETS):
                keep = rank_all < max_det
                scores = scores_all[keep]
                inds = np.argsort(-scores, kind="mergesort")
                dtm = matched_all[:, keep][:, inds]
                dtig = ignored_all[:, keep][:, inds]
                tps = np.logical_and(dtm, np.logical_not(dtig))
                fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
                tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
                nd = tp_sum.shape[1]
                if nd == 0:
                    recall[:, k, a, mi] = 0
                    precision[:, :, k, a, mi] = 0
                    continue
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[:, k, a, mi] = rc[:, -1]
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made monotone
                for t in range(T):
                    idx = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                    q = np.zeros(R)
                    ok = idx < nd
                    q[ok] = pr[t, idx[ok]]
                    precision[t, :, k, a, mi] = q
        match.precision, match.recall = precision, recall
        match.stats = _summarize(precision, recall)
    return match


def _per_object(
    match: DetectionMatch, gt: Dict[str, Any], dt: Dict[str, Any], g_lab: List[int], d_lab: List[int],
    ious: np.ndarray, iou: float, classwise: bool,
) -> None:
    order = np.argsort(-dt["scores"], kind="mergesort")
    pred_out: List[Tuple[str, Optional[str], Optional[float]]] = [("fp", None, None)] * len(d_lab)
    gt_out: List[Optional[Tuple[str, Optional[str], Optional[float]]]] = [
        None if c else ("fn", None, None) for c in gt["crowd"]
    ]
    groups = sorted(set(g_lab) | set(d_lab)) if classwise else [None]
    for k in groups:
        gi = [i for i, c in enumerate(g_lab) if k is None or c == k]
        di = [i for i in order if k is None or d_lab[i] == k]
        if not di:
            continue
        crowd = gt["crowd"][gi]
        gorder = np.argsort(crowd, kind="mergesort")
        gi = [gi[i] for i in gorder]
        rows = ious[np.ix_(di, gi)].tolist() if gi else [[] for _ in di]
        cr = gt["crowd"][gi].tolist() if gi else []
        for d_pos, m in enumerate(_greedy(rows, cr, cr, iou)):
            if m < 0:
                continue
            d, g = di[d_pos], gi[m]
            value = float(rows[d_pos][m])
            pred_out[d] = ("tp", str(gt["ids"][g]) if gt["ids"][g] is not None else None, value)
            if not cr[m] or gt_out[g] is None:  # a crowd region records its first (best-scored) match
                gt_out[g] = ("tp", str(dt["ids"][d]) if dt["ids"][d] is not None else None, value)
            if not cr[m]:
                match.pairs.append((gt["labels"][g], dt["labels"][d], value))
    for i, r in enumerate(pred_out):
        if r[0] == "fp":
            match.pairs.append((None, dt["labels"][i], 0.0))
    for i, g_result in enumerate(gt_out):
        if g_result is not None and g_result[0] == "fn":
            match.pairs.append((gt["labels"][i], None, 0.0))
    match.pred_results.append(pred_out)
    match.gt_results.append(gt_out)


def _summarize(precision: np.ndarray, recall: np.ndarray) -> List[float]:
    """The 12 numbers of ``COCOeval.summarize()``."""
    area_index = {name: i for i, name in enumerate(AREA_RANGES)}

    def one(ap: bool, thr: Optional[float] = None, area: str = "all", max_dets: int = 100) -> float:
        a, m = area_index[area], MAX_DETS.index(max_dets)
        s = precision[:, :, :, a, m] if ap else recall[:, :, a, m]
        if thr is not None:
            s = s[np.where(np.isclose(thr, IOU_THRESHOLDS))[0]]
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else -1.0

    return [
        one(True), one(True, 0.5), one(True, 0.75),
        one(True, area="small"), one(True, area="medium"), one(True, area="large"),
        one(False, max_dets=1), one(False, max_dets=10), one(False),
        one(False, area="small"), one(False, area="medium"), one(False, area="large"),
    ]


def match_detections(
    samples: Any,
    pred_field: str,
    gt_field: str,
    iou: float = 0.5,
    classwise: bool = True,
    compute_mAP: bool = True,
    use_masks: Optional[bool] = None,
    classes: Optional[Sequence[str]] = None,
) -> Tuple[DetectionMatch, List[Dict[str, Any]]]:
    """Checks the fields, reads the labels and matches them; see :func:`evaluate_detections_docs`.

    Returns:
        ``(match, docs)``: the docs are the stored documents read (ids and labels).
    """
    if not 0 < iou <= 1:
        raise EvaluationError(f"evaluate_detections: iou={iou!r} must be in (0, 1]")
    check_fields(samples, {"pred_field": pred_field, "gt_field": gt_field}, ["Detections"], "evaluate_detections")
    docs = list(iter_docs(samples, [pred_field, gt_field]))
    for doc in docs:  # objects stored before labels had ids get one now (written back with the results)
        for f in (pred_field, gt_field):
            for det in (doc.get(f) or {}).get("detections") or []:
                det.setdefault("_id", ObjectId())
    return evaluate_detections_docs(docs, pred_field, gt_field, iou, classwise, compute_mAP, use_masks, classes), docs


def object_updates(
    match: DetectionMatch, docs: Sequence[Dict[str, Any]], pred_field: str, gt_field: str, eval_key: str
) -> Dict[Any, Dict[str, Any]]:
    """``{sample id: {field: value}}`` writing the per-object results into the
    labels' attributes and the per-sample counts (see the module docstring)."""
    updates: Dict[Any, Dict[str, Any]] = {}
    for doc, preds, gts in zip(docs, match.pred_results, match.gt_results):
        fields: Dict[str, Any] = {}
        counts = {"tp": 0, "fp": 0, "fn": 0}
        for f, results in ((pred_field, preds), (gt_field, gts)):
            label = doc.get(f)
            if not label or not label.get("detections"):
                continue
            for det, r in zip(label["detections"], results):
                det.setdefault("_id", ObjectId())
                attrs = det.setdefault("attributes", {})
                for suffix in ("", "_id", "_iou"):
                    attrs.pop(eval_key + suffix, None)
                if r is None:
                    continue
                kind, other, value = r
                attrs[eval_key] = kind
                if other is not None:
                    attrs[eval_key + "_id"] = other
                    attrs[eval_key + "_iou"] = value
                if f == pred_field or kind == "fn":
                    counts[kind] += 1
            fields[f] = label
        for kind, n in counts.items():
            fields[f"{eval_key}_{kind}"] = n
        updates[doc["_id"]] = fields
    return updates

