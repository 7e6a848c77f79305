#!/usr/bin/env python
"""The viewer (modelzoo.app): the first grid page of a large dataset, and thumbnail throughput.

1. **Grid pages** of a ``--samples`` (100,000) sample dataset, each sample
   with a 5-box ``Detections`` (its file one of ``--photos`` real 640x480
   JPEGs). The server (``modelzoo app``, its own process) is started and warmed (one pass over what is timed,
   the first page's thumbnails made). Then, over real HTTP on loopback, the
   requests the page makes for its first screen: ``/api/samples`` (60
   samples) and the 60 thumbnails (fetched 6 at a time, as a browser does), timed
   together as "first page ready"; and apart: a page 90% of the way down
   (keyset cursor: no ``skip``), a filtered first page (one class,
   confidence >= 0.5), a page sorted by a float field, and ``/api/facets``
   (the sidebar's counts: one aggregation per label field over every sample).
   ``--runs`` rounds, interleaved; medians.

2. **Thumbnail throughput**: ``--thumbs`` distinct 640x480 JPEGs made into
   320-pixel thumbnails A) by :class:`modelzoo.app.thumbnails.ThumbnailCache`
   (its worker processes, started before timing; EXIF orientation applied)
   into an empty cache, B) by plain PIL in one process (``Image.open``,
   ``thumbnail((320, 320))``, ``save`` as JPEG quality 85: what a script would
   do). A and B alternate; medians of images per second and the ratio A / B.

The embedded mongod runs in a temporary directory and is removed at the end.

Usage::

    .venv/bin/python benchmarks/bench_app.py            # 100,000 samples, 5 runs
    .venv/bin/python benchmarks/bench_app.py --quick    # 20,000 samples, 3 runs
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install
sys.path.insert(0, HERE)


def _median_ms(values: List[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms (min {min(values) * 1000:.0f}, max {max(values) * 1000:.0f})"


def build(n: int, photos: List[str]) -> Any:
    """A dataset of ``n`` samples over ``photos``, each with 5 boxes and a float ``score``;
    inserted with bulk writes (setup, not timed)."""
    import numpy as np

    import modelzoo as mz
    from modelzoo import db
    from modelzoo.labels import Detection, Detections

    dataset = mz.Dataset(name="bench-app", overwrite=True)
    coll = db.get_db()[dataset.collection_name]
    rng = np.random.default_rng(0)
    classes = ["cat", "dog", "bird", "car", "person", "cup"]
    batch: List[Dict[str, Any]] = []
    for i in range(n):
        boxes = rng.uniform(0, 0.5, size=(5, 4))
        dets = Detections(detections=[
            Detection(label=classes[int(rng.integers(len(classes)))], bounding_box=list(b), confidence=float(rng.random()))
            for b in boxes
        ])
        batch.append({
            "filepath": photos[i % len(photos)], "media_type": "image",
            "metadata": {"width": 640, "height": 480, "mime_type": "image/jpeg"},
            "predictions": dets.to_dict(), "score": float(rng.random()),
        })
        if len(batch) == 5000:
            coll.insert_many(batch)
            batch = []
    if batch:
        coll.insert_many(batch)
    return dataset


def grid(args: argparse.Namespace, photos: List[str], tmp: str) -> None:
    import httpx

    t0 = time.perf_counter()
    dataset = build(args.samples, photos)
    print(f"dataset: {args.samples} samples with 5 boxes each, inserted in {time.perf_counter() - t0:.1f} s")
    ids = dataset.ids()
    # the server in its own process (`modelzoo app`), as a user runs it: the client's
    # Python here does not share its GIL
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.dirname(HERE), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "modelzoo", "app", dataset.name, "--cache-dir",
                             os.path.join(tmp, "grid-thumbs")], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        base = url.split("/?")[0]
        client = httpx.Client(cookies=httpx.get(url, timeout=60).cookies, timeout=120,
                              limits=httpx.Limits(max_connections=6))
        deep_cursor = json.dumps({"$oid": ids[int(len(ids) * 0.9)]})
        state_filtered = json.dumps({"filters": {"predictions": {"classes": ["cat"], "confidence": [0.5, 1.0]}}})
        state_sorted = json.dumps({"sort": {"field": "score", "reverse": True}})

        def first_page() -> None:
            page = client.get(base + "/api/samples").json()["samples"]
            with cf.ThreadPoolExecutor(6) as pool:  # a browser fetches 6 at a time from one host
                codes = list(pool.map(lambda s: client.get(base + f"/media/{s['id']}/thumb").status_code, page))
            assert codes == [200] * len(page), codes

        def get(path: str, **params: str) -> Callable[[], None]:
            def run() -> None:
                r = client.get(base + path, params=params)
                assert r.status_code == 200, r.text

            return run

        cases = {
            "first page ready (samples + 60 thumbnails)": first_page,
            "/api/samples, first page": get("/api/samples"),
            "/api/samples, a page 90% down (keyset)": get("/api/samples", after=f"[{deep_cursor}]"),
            "/api/samples, filtered (cat, conf >= 0.5)": get("/api/samples", state=state_filtered),
            "/api/samples, sorted by a float": get("/api/samples", state=state_sorted),
            "/api/facets (class counts, 500k boxes)": get("/api/facets"),
        }
        for run in cases.values():  # warm: thumbnails made, caches filled
            run()
        times: Dict[str, List[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, run in cases.items():
                t = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - t)
        for name, values in times.items():
            print(f"  {name:<46} {_median_ms(values)}")
        client.close()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        dataset.delete()


def thumbnails(args: argparse.Namespace, photos: List[str], tmp: str) -> None:
    from PIL import Image

    from modelzoo.app.thumbnails import THUMB_SIZE, ThumbnailCache

    def plain(out: str) -> float:
        os.makedirs(out, exist_ok=True)
        t = time.perf_counter()
        for i, path in enumerate(photos):
            with Image.open(path) as img:
                img.thumbnail((THUMB_SIZE, THUMB_SIZE))
                img.convert("RGB").save(os.path.join(out, f"{i}.jpg"), quality=85)
        return len(photos) / (time.perf_counter() - t)

    def cached(out: str) -> float:
        cache = ThumbnailCache(out, workers=args.workers)
        try:
            warm = os.path.join(tmp, "warm.jpg")
            Image.open(photos[0]).save(warm)
            warmups = []
            for i in range(args.workers):  # start every worker before timing (a new mtime: a new job)
                os.utime(warm, ns=(i * 10**9, i * 10**9))
                warmups.append(cache.submit(warm))
            for job in warmups:
                job.result()
            t = time.perf_counter()
            jobs = [cache.submit(p) for p in photos]
            for job in jobs:
                job.result()
            return len(photos) / (time.perf_counter() - t)
        finally:
            cache.close()

    rates: Dict[str, List[float]] = {"cache": [], "plain": []}
    for r in range(args.runs):
        order = [("cache", cached), ("plain", plain)] if r % 2 == 0 else [("plain", plain), ("cache", cached)]
        for name, fn in order:
            rates[name].append(fn(os.path.join(tmp, f"thumbs-{name}-{r}")))
    a, b = statistics.median(rates["cache"]), statistics.median(rates["plain"])
    print(f"thumbnails of {len(photos)} 640x480 JPEGs ({args.workers} workers, {os.cpu_count()} CPUs):")
    print(f"  ThumbnailCache  {a:7.1f} images/s (runs: {', '.join(f'{v:.0f}' for v in rates['cache'])})")
    print(f"  plain PIL       {b:7.1f} images/s (runs: {', '.join(f'{v:.0f}' for v in rates['plain'])})")
    print(f"  ratio cache / plain PIL: {a / b:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--photos", type=int, default=200, help="distinct files the samples point to")
    parser.add_argument("--thumbs", type=int, default=200, help="files for the thumbnail throughput")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="thumbnail worker processes")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 samples, 3 runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["grid", "thumbnails"])
    args = parser.parse_args()
    if args.quick:
        args.samples, args.runs, args.thumbs = 20_000, 3, 100
    from bench_apply import photo_dir

    from modelzoo import db

    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        with db.temporary(parent=tmp):
            if "grid" not in args.skip:
                root = photo_dir(args.photos)
                grid(args, sorted(os.path.join(root, f) for f in os.listdir(root)), tmp)
            if "thumbnails" not in args.skip:
                root = photo_dir(args.thumbs)
                thumbnails(args, sorted(os.path.join(root, f) for f in os.listdir(root)), tmp)


if __name__ == "__main__":
    main()
