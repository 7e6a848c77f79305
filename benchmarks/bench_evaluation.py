#!/usr/bin/env python
"""evaluate_detections against pycocotools' COCOeval on the same data.

A generated COCO set (``tests/coco_data.generate``: ``--images`` images with
about ``--objects`` objects each over 20 classes, crowd regions, tiny to large
objects; predictions perturbing the ground truth with misses, duplicates,
wrong classes and spurious boxes) is imported once with ``Dataset.from_coco``
and the predictions stored in the dataset. Then, interleaved, ``--runs``
times each:

* **modelzoo**: ``dataset.evaluate_detections("predictions", "ground_truth")``
  (reading the labels from MongoDB included, no eval_key: nothing written);
* **pycocotools**: ``COCO()`` from the in-memory dict, ``loadRes``,
  ``evaluate()``, ``accumulate()`` (the JSON already parsed);

and prints both medians and their ratio, and checks the 12 numbers agree.

Usage::

    .venv/bin/python benchmarks/bench_evaluation.py              # 5,000 images x 20 objects
    .venv/bin/python benchmarks/bench_evaluation.py --quick      # 500 images
    .venv/bin/python benchmarks/bench_evaluation.py --quick --masks   # mask IoU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import modelzoo as mz  # noqa: E402
from modelzoo import db  # noqa: E402
from tests.coco_data import generate, predictions  # noqa: E402


def _pycocotools(data, iou_type):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {k: data[k] for k in ("images", "annotations", "categories")}
        gt.createIndex()
        dt = gt.loadRes([dict(r) for r in data["results"]])
        e = COCOeval(gt, dt, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--objects", type=int, default=20, help="about this many objects per image")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 images, 2 runs")
    parser.add_argument("--masks", action="store_true", help="instance masks (RLE), mask IoU ('segm'), 96-200 px images")
    args = parser.parse_args()
    if args.quick:
        args.images, args.runs = 500, 2
    iou_type = "segm" if args.masks else "bbox"
    data = generate(n_images=args.images, n_classes=20, seed=0, max_objects=2 * args.objects, masks=args.masks,
                    size_range=(96, 200) if args.masks else (160, 400))
    n_gt, n_dt = len(data["annotations"]), len(data["results"])
    print(f"{args.images} images, {n_gt} ground-truth objects, {n_dt} predictions, 20 classes, {iou_type}")
    with tempfile.TemporaryDirectory() as tmp, db.temporary(parent=tmp):
        path = os.path.join(tmp, "gt.json")
        with open(path, "w") as f:
            json.dump({k: data[k] for k in ("images", "annotations", "categories")}, f)
        t = time.perf_counter()
        ds = mz.Dataset.from_coco(path, tmp, name="bench-eval", label_types=["segmentations" if args.masks else "detections"])
        preds = predictions(data)
        ds.set_values("predictions", {s: preds[c] for s, c in zip(ds.ids(), ds.values("coco_id"))})
        print(f"import + predictions stored: {time.perf_counter() - t:.1f} s")
        ours, theirs = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            results = ds.evaluate_detections("predictions", "ground_truth")
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            stats = _pycocotools(data, iou_type)
            theirs.append(time.perf_counter() - t)
        diff = float(np.max(np.abs(np.asarray(results.stats()) - stats)))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"modelzoo evaluate_detections: median {a:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in ours)})")
        print(f"pycocotools COCOeval:         median {b:.2f} s  (runs: {', '.join(f'{x:.2f}' for x in theirs)})")
        print(f"ratio modelzoo / pycocotools: {a / b:.2f}x; max |difference| of the 12 numbers: {diff:.2e}")
        ds.delete()
    return 0


if __name__ == "__main__":
    sys.exit(main())
