"""Generated COCO detection sets for the evaluation tests and benchmark:
ground truth with crowd regions, tiny and large objects, and predictions
made by perturbing it (jitter, misses, duplicates, wrong classes, spurious
boxes), as COCO dicts that pycocotools reads as they are."""

from __future__ import annotations

import contextlib
import io
from typing import Any, Dict, List, Tuple

import numpy as np


def _ellipse(x: float, y: float, w: float, h: float, width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return (((xx + 0.5 - (x + w / 2)) / (w / 2)) ** 2 + ((yy + 0.5 - (y + h / 2)) / (h / 2)) ** 2 <= 1).astype(np.uint8)


def _rle(mask: np.ndarray) -> Tuple[Dict[str, Any], List[float], float]:
    import pycocotools.mask as mu

    rle = mu.encode(np.asfortranarray(mask))
    return {"size": list(mask.shape), "counts": rle["counts"].decode()}, mu.toBbox(rle).tolist(), float(mu.area(rle))


def generate(n_images: int = 300, n_classes: int = 12, seed: int = 0, masks: bool = False,
             max_objects: int = 8, size_range: Tuple[int, int] = (160, 400)) -> Dict[str, Any]:
    """``{"images", "annotations", "categories", "results"}``: a COCO ground
    truth and a COCO results list for it."""
    rng = np.random.default_rng(seed)
    images: List[Dict[str, Any]] = []
    anns: List[Dict[str, Any]] = []
    results: List[Dict[str, Any]] = []

    def add_result(image_id, cat, box, width, height):
        d = {"image_id": image_id, "category_id": cat, "bbox": [float(v) for v in box], "score": float(rng.random())}
        if masks:
            m = _ellipse(*box, width, height)
            if not m.any():
                return
            d["segmentation"], d["bbox"], _ = _rle(m)
        results.append(d)

    for i in range(1, n_images + 1):
        width, height = int(rng.integers(*size_range)), int(rng.integers(*size_range))
        images.append({"id": i, "file_name": f"{i:05d}.jpg", "width": width, "height": height})
        for _ in range(int(rng.integers(0, max_objects + 1))):
            cat = int(rng.integers(1, n_classes + 1))
            size = float(np.exp(rng.uniform(np.log(4), np.log(min(width, height) * 0.9))))  # tiny to large
            w, h = size * rng.uniform(0.6, 1.0), size * rng.uniform(0.6, 1.0)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            ann: Dict[str, Any] = {"id": len(anns) + 1, "image_id": i, "category_id": cat,
                                   "iscrowd": int(rng.random() < 0.05)}
            if masks:
                m = _ellipse(x, y, w, h, width, height)
                if not m.any():
                    continue
                ann["segmentation"], ann["bbox"], ann["area"] = _rle(m)
            else:
                ann["bbox"], ann["area"] = [x, y, w, h], w * h * float(rng.uniform(0.7, 1.0))
            anns.append(ann)
            if rng.random() < 0.15:
                continue  # a miss
            for _ in range(1 + int(rng.random() < 0.15)):  # sometimes a duplicate
                c = cat if rng.random() > 0.1 else int(rng.integers(1, n_classes + 1))  # sometimes a wrong class
                j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                bx, by = min(max(x + j[0], 0), width - 1), min(max(y + j[1], 0), height - 1)
                bw, bh = min(max(w + j[2], 1), width - bx), min(max(h + j[3], 1), height - by)
                add_result(i, c, (bx, by, bw, bh), width, height)
        for _ in range(int(rng.integers(0, 3))):  # spurious boxes
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            add_result(i, int(rng.integers(1, n_classes + 1)), (rng.uniform(0, width - w), rng.uniform(0, height - h), w, h),
                       width, height)
    categories = [{"id": c, "name": f"class{c:02d}", "supercategory": "thing"} for c in range(1, n_classes + 1)]
    return {"images": images, "annotations": anns, "categories": categories, "results": results}


def cocoeval(data: Dict[str, Any], iou_type: str) -> Any:
    """pycocotools' COCOeval run on ``data`` (evaluate, accumulate, summarize)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {k: data[k] for k in ("images", "annotations", "categories")}
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in data["results"]])
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def predictions(data: Dict[str, Any]) -> Dict[int, Any]:
    """The results as modelzoo Detections per COCO image id (relative boxes, masks cropped to their box)."""
    from modelzoo.formats import coco_mask
    from modelzoo.labels import Detection, Detections
    from modelzoo.masks import crop_to_box

    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    names = {c["id"]: c["name"] for c in data["categories"]}
    out: Dict[int, Any] = {i: Detections() for i in sizes}
    for r in data["results"]:
        width, height = sizes[r["image_id"]]
        x, y, w, h = r["bbox"]
        box = [x / width, y / height, min(w / width, 1 - x / width), min(h / height, 1 - y / height)]
        det = Detection(label=names[r["category_id"]], bounding_box=box, confidence=r["score"])
        if "segmentation" in r:
            det.mask = crop_to_box(coco_mask(r["segmentation"], width, height), box)[0]
        out[r["image_id"]].detections.append(det)
    return out
