#!/usr/bin/env python
"""FiftyOne parity costs (#21): patch embeddings and frame aggregations.

(a) ``compute_patch_embeddings`` on ``--photos`` (1,000) 640x480 JPEGs x 5
    boxes with the zoo's mobilenet_v2 (``embeddings_layer="<classifier.1"``,
    offline) against ``compute_embeddings`` on the same 5,000 crops saved
    beforehand as PNGs (lossless: the same pixels). Runs alternate (A B, B A,
    ...) ``--runs`` times; prints the medians and their ratio (target <= 1.3)
    and the largest difference between the two arrays (target <= 1e-5).

(b) ``count_values("frames.dets.detections.label")`` and ``distinct`` over
    ``--videos`` (200) videos x ``--frames`` (300) frame documents (5 boxes
    each, written directly) against the raw pymongo aggregation (``$unwind``,
    ``$group``) on the frames collection, alternating; prints medians and the
    ratio (target <= 2); tests/test_aggregations.py checks that one call is
    one aggregate command.

The embedded mongod runs in a temporary directory and is stopped at the
end. Compare ratios measured in one run, never absolute times across runs.

Usage::

    .venv/bin/python benchmarks/bench_fiftyone.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_fiftyone.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import modelzoo as mz  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "horse", "moon")


def _photos(root: str, n: int) -> List[str]:
    import skimage.data

    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.fromarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        scale = rng.uniform(1.0, 1.6)
        img = img.resize((int(640 * scale), int(480 * scale)))
        x, y = int(rng.integers(0, img.width - 640 + 1)), int(rng.integers(0, img.height - 480 + 1))
        img = img.crop((x, y, x + 640, y + 480))
        if i % 2:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        path = os.path.join(root, f"p{i:05d}.jpg")
        img.save(path, quality=90)
        paths.append(path)
    return paths


def _boxes(rng: Any, k: int) -> List[List[float]]:
    out = []
    for _ in range(k):
        w, h = rng.uniform(0.1, 0.5, 2)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        out.append([float(x), float(y), float(w), float(h)])
    return out


def _median_pairs(a: Callable[[], Any], b: Callable[[], Any], runs: int) -> Dict[str, Any]:
    ta: List[float] = []
    tb: List[float] = []
    for r in range(runs):
        for name in ("ab" if r % 2 == 0 else "ba"):
            fn, times = (a, ta) if name == "a" else (b, tb)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return {"a": statistics.median(ta), "b": statistics.median(tb), "ratio": statistics.median(ta) / statistics.median(tb)}


def bench_patches(n_photos: int, runs: int) -> None:
    from modelzoo.engine.patches import crop_box

    model = mz.load_zoo_model("mobilenet-v2-imagenet-torch")
    tmp = tempfile.mkdtemp(prefix="bench-patches-")
    paths = _photos(os.path.join(tmp, "photos"), n_photos)
    rng = np.random.default_rng(1)
    boxes = [_boxes(rng, 5) for _ in paths]
    crops_dir = os.path.join(tmp, "crops")
    os.makedirs(crops_dir)
    crop_paths = []
    for path, bs in zip(paths, boxes):
        image = np.asarray(Image.open(path).convert("RGB"))
        for j, b in enumerate(bs):
            c0, r0, c1, r1 = crop_box(image.shape[1], image.shape[0], b)
            crop_path = os.path.join(crops_dir, f"{os.path.basename(path)}-{j}.png")
            Image.fromarray(image[r0:r1, c0:c1]).save(crop_path)
            crop_paths.append(crop_path)
    whole = mz.Dataset("bench-patches", overwrite=True)
    whole.add_samples(
        mz.Sample(filepath=p, gt=mz.Detections(detections=[mz.Detection(label="x", bounding_box=b) for b in bs]))
        for p, bs in zip(paths, boxes)
    )
    crops = mz.Dataset("bench-crops", overwrite=True)
    crops.add_samples(mz.Sample(filepath=p) for p in crop_paths)
    got: Dict[str, Any] = {}

    def a() -> None:
        got["a"] = whole.compute_patch_embeddings(model, "gt", batch_size=32, progress=False)

    def b() -> None:
        got["b"] = crops.compute_embeddings(model, batch_size=32, progress=False)

    res = _median_pairs(a, b, runs)
    patches = np.concatenate([got["a"][sid] for sid in whole.values("id")])
    diff = float(np.abs(patches - got["b"]).max())
    print(f"patches: compute_patch_embeddings {res['a']:.2f} s, compute_embeddings on pre-cut crops {res['b']:.2f} s "
          f"({len(crop_paths)} patches): ratio {res['ratio']:.3f} (target <= 1.3); max |diff| {diff:.2e} (target <= 1e-5)")
    whole.delete()
    crops.delete()


def bench_frames(n_videos: int, n_frames: int, runs: int) -> None:
    from modelzoo import db
    from modelzoo.storage import FRAME_ID, FRAME_NUMBER

    ds = mz.Dataset("bench-frames", overwrite=True)
    from bson import ObjectId

    ids = [ObjectId(i) for i in ds.add_samples(mz.Sample(filepath=f"/v/{i}.mp4") for i in range(n_videos))]
    frames = db.get_db()[ds.frames_collection_name]
    rng = np.random.default_rng(2)
    labels = [f"class{i}" for i in range(20)]
    batch = []
    for sid in ids:
        for n in range(1, n_frames + 1):
            dets = [{"_cls": "Detection", "label": labels[int(k)], "bounding_box": [0.1, 0.1, 0.2, 0.2]}
                    for k in rng.integers(0, 20, 5)]
            batch.append({FRAME_ID: sid, FRAME_NUMBER: n, "dets": {"_cls": "Detections", "detections": dets}})
            if len(batch) == 5000:
                frames.insert_many(batch)
                batch = []
    if batch:
        frames.insert_many(batch)
    raw_pipeline = [{"$unwind": "$dets.detections"}, {"$group": {"_id": "$dets.detections.label", "n": {"$sum": 1}}}]
    out: Dict[str, Any] = {}

    def a() -> None:
        out["a"] = ds.count_values("frames.dets.detections.label")

    def b() -> None:
        out["b"] = {d["_id"]: d["n"] for d in frames.aggregate(raw_pipeline, allowDiskUse=True)}

    res = _median_pairs(a, b, runs)
    assert out["a"] == out["b"], "count_values differs from the raw aggregation"

    print(f"frames: count_values {res['a'] * 1e3:.0f} ms, raw pymongo {res['b'] * 1e3:.0f} ms over "
          f"{n_videos * n_frames} frames: ratio {res['ratio']:.3f} (target <= 2)")
    res = _median_pairs(lambda: ds.distinct("frames.dets.detections.label"), b, runs)
    print(f"frames: distinct {res['a'] * 1e3:.0f} ms: ratio to the raw count aggregation {res['ratio']:.3f}")
    ds.delete()


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run (small sizes)")
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["patches", "frames"])
    args = parser.parse_args(argv)
    if args.quick:
        args.photos, args.videos, args.frames, args.runs = 24, 20, 50, 3
    from modelzoo import db

    os.environ.setdefault("MODELZOO_OFFLINE", "1")  # the zoo weights found on this machine by checksum
    with db.temporary():
        if "frames" not in args.skip:
            bench_frames(args.videos, args.frames, args.runs)
        if "patches" not in args.skip:
            bench_patches(args.photos, args.runs)


if __name__ == "__main__":
    main()
