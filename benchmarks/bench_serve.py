#!/usr/bin/env python
"""What the batcher and ``modelzoo serve`` cost, and what batching buys.

(1) Throughput: ``--requests`` images sent by 32 concurrent callers (threads,
    each calling ``batcher(x)`` one image at a time) through a ``Batcher``
    (``max_batch_size=32``, ``max_wait_ms=5``), against ``predict_all`` on
    batches of 32 of the same images, one call after another. The model is
    bench_apply's seeded torchvision ``mobilenet_v3_small`` as a
    ``TorchImageModel`` (224x224, eager), the images bench_apply's cached
    640x480 photographs, decoded beforehand for both sides. Target: batcher
    >= 0.8x predict_all. Also one caller at a time, the batcher against
    ``predict`` (what batching buys over serial calls).
(2) Latency added by ``max_wait_ms``: one caller, requests one after another
    (so a batch never fills and each waits the whole window), the tiny
    seeded classifier of ``modelzoo.testing``: p50 / p99 of ``batcher(x)``
    against ``model.predict(x)``, for ``max_wait_ms`` in 0, 1, 5, 10.
(3) ``modelzoo serve`` over loopback: the tiny classifier served by a
    ``modelzoo serve`` process; 32 client threads (httpx) post the JPEG files'
    bytes; requests/s, against the same model behind an in-process batcher
    fed the same bytes by 32 threads.

Runs alternate (A B, A B, ...) ``--runs`` times; the script prints medians
and the median of the pairwise ratios.

Usage::

    .venv/bin/python benchmarks/bench_serve.py            # ~3 min on 2 busy cores
    .venv/bin/python benchmarks/bench_serve.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import bench_apply as ba  # noqa: E402  (photos, the seeded nets)

from modelzoo.serving import Batcher  # noqa: E402
from modelzoo.testing import TASKS  # noqa: E402
from modelzoo.torch_image import TorchImageModel  # noqa: E402

CALLERS = 32


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _in_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` run in a fresh thread, as the batcher's worker runs the model.

    On the shared 2-core host of the numbers in benchmarks/README.md, torch's
    2-thread OpenMP team driven from the main thread ran the tiny classifier
    30-50x slower (60-100 ms vs 2 ms per image) than the same call from a
    fresh thread; so every side of a comparison calls torch from a fresh
    thread, never from the main one."""
    out: List[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


def _concurrent(fn: Callable[[Any], Any], inputs: Sequence[Any], callers: int = CALLERS) -> float:
    """Seconds for ``callers`` threads to send every input, each one at a time (closed loop)."""
    shares = [inputs[i::callers] for i in range(callers)]
    start = threading.Barrier(callers + 1)

    def caller(share: Sequence[Any]) -> None:
        start.wait()
        for x in share:
            fn(x)

    threads = [threading.Thread(target=caller, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def bench_throughput(n: int, runs: int) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    paths = ba.list_photos(ba.photo_dir(64))
    images = [_decode(p) for p in paths]
    inputs = [images[i % len(images)] for i in range(n)]
    model = TorchImageModel({**ba.torch_image_config("mobilenet_v3_small"), "optimize": False})
    batches = [inputs[i:i + CALLERS] for i in range(0, n, CALLERS)]
    _in_thread(lambda: model.predict_all(batches[0]))  # warm-up, untimed

    def direct() -> float:
        t0 = time.perf_counter()
        for b in batches:
            model.predict_all(b)
        return time.perf_counter() - t0

    batcher = Batcher(model, max_batch_size=CALLERS, max_wait_ms=5, name="mobilenet_v3_small")
    try:
        def batched() -> float:
            return _concurrent(batcher, inputs)

        def serial_predict() -> float:
            t0 = time.perf_counter()
            for x in inputs[:CALLERS]:
                model.predict(x)
            return (time.perf_counter() - t0) * n / CALLERS

        times: Dict[str, List[float]] = {"predict_all": [], "batcher": [], "predict (serial)": []}
        for _ in range(runs):
            times["predict_all"].append(_in_thread(direct))
            times["batcher"].append(batched())
            times["predict (serial)"].append(_in_thread(serial_predict))
        sizes = batcher.stats.batch_sizes
    finally:
        batcher.close()
    print(f"\n(1) throughput, {n} images 640x480, mobilenet_v3_small 224, {CALLERS} callers, {runs} interleaved runs")
    for name, ts in times.items():
        print(f"  {name:<18} median {med(ts):7.3f} s  {n / med(ts):7.1f} images/s   runs: "
              + ", ".join(f"{t:.3f}" for t in ts))
    ratios = [a / b for a, b in zip(times["predict_all"], times["batcher"])]
    print(f"  batcher / predict_all throughput: {med(ratios):.3f} (pairwise: {', '.join(f'{r:.3f}' for r in ratios)})"
          "  target >= 0.8")
    serial = [s / b for s, b in zip(times["predict (serial)"], times["batcher"])]
    print(f"  batcher / serial predict throughput: {med(serial):.2f}x")
    print(f"  batch sizes seen: {dict(sorted(sizes.items()))}")


def _decode(path: str) -> np.ndarray:
    from modelzoo.image_io import read_image

    return read_image(path)


def _percentiles(xs: Sequence[float]) -> str:
    a = np.asarray(xs) * 1000
    return f"p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms"


def bench_latency(n: int, runs: int) -> None:
    model = TorchImageModel({**TASKS["classification"], "device": "cpu", "optimize": False})
    image = _decode(ba.list_photos(ba.photo_dir(64))[0])
    _in_thread(lambda: model.predict(image))

    def latencies(fn: Callable[[Any], Any]) -> List[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn(image)
            out.append(time.perf_counter() - t0)
        return out

    print(f"\n(2) latency added by max_wait_ms: one caller, {n} requests one after another, tiny classifier, "
          f"{runs} interleaved runs (medians of the runs' percentiles)")
    for wait in (0, 1, 5, 10):
        base: List[List[float]] = []
        via: List[List[float]] = []
        with Batcher(model, max_batch_size=CALLERS, max_wait_ms=wait) as batcher:
            for _ in range(runs):
                base.append(_in_thread(lambda: latencies(model.predict)))
                via.append(_in_thread(lambda: latencies(batcher)))
        p = {k: med([float(np.percentile(r, q)) * 1000 for r in rs]) for k, rs, q in
             (("b50", base, 50), ("b99", base, 99), ("v50", via, 50), ("v99", via, 99))}
        print(f"  max_wait_ms={wait:<3} predict p50 {p['b50']:6.2f} ms p99 {p['b99']:6.2f} ms | batcher p50 "
              f"{p['v50']:6.2f} ms p99 {p['v99']:6.2f} ms | added p50 {p['v50'] - p['b50']:+6.2f} ms "
              f"p99 {p['v99'] - p['b99']:+6.2f} ms")


def _serve_process(manifest: str, home: str, root: str = REPO) -> Any:
    env = dict(os.environ, MODELZOO_MANIFEST_PATHS=manifest, MODELZOO_HOME=home,
               PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelzoo", "serve", "bench-tiny", "--port", "0", "--max-batch-size", str(CALLERS),
         "--max-wait-ms", "5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"modelzoo serve exited with {proc.wait()}")


def _tiny_manifest(tmp: str) -> str:
    config = {**TASKS["classification"], "device": "cpu", "optimize": False}
    entry = {"name": "bench-tiny", "version": "1.0", "description": "tiny classifier", "source": "-",
             "license": "-", "size_bytes": 0, "tags": ["classification"], "weights": None,
             "requirements": {"packages": ["torch"], "cpu": True, "gpu": True},
             "model": {"type": "modelzoo.torch_image.TorchImageModel", "config": config},
             "date_added": "2026-01-01", "training_data": "none"}
    manifest = os.path.join(tmp, "manifest.json")
    with open(manifest, "w") as f:
        json.dump({"manifest_version": 1, "models": [entry]}, f)
    return manifest


def _wait_ready(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server never got ready")
        time.sleep(0.05)


def bench_keepalive(n: int, runs: int, baseline: str) -> None:
    """(4) One client posting one image after another on one keep-alive
    connection: the per-request latency of a ``modelzoo serve`` from this tree
    against one from ``baseline`` (another checkout's root, e.g. before a
    change), both running at once and alternating (A B, A B...)."""
    import httpx

    blob = open(ba.list_photos(ba.photo_dir(64))[0], "rb").read()
    tmp = tempfile.mkdtemp(prefix="bench-keepalive-")
    manifest = _tiny_manifest(tmp)
    servers = {"this tree": _serve_process(manifest, os.path.join(tmp, "home-a")),
               f"baseline ({baseline})": _serve_process(manifest, os.path.join(tmp, "home-b"), root=baseline)}
    lat: Dict[str, List[float]] = {k: [] for k in servers}
    try:
        for _, url in servers.values():
            _wait_ready(url)
        clients = {k: httpx.Client(timeout=60) for k in servers}
        for k, (_, url) in servers.items():
            for _ in range(10):  # warm-up
                clients[k].post(url + "/predict", content=blob, headers={"Content-Type": "image/jpeg"}).raise_for_status()
        for _ in range(runs):
            for k, (_, url) in servers.items():
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    clients[k].post(url + "/predict", content=blob, headers={"Content-Type": "image/jpeg"}).raise_for_status()
                    times.append(time.perf_counter() - t0)
                lat[k].append(med(times))
        for c in clients.values():
            c.close()
    finally:
        for proc, _ in servers.values():
            proc.send_signal(2)
            proc.wait(60)
    print(f"\n(4) one keep-alive client, {n} sequential posts per run, {runs} interleaved runs (median per-request latency)")
    for k, xs in lat.items():
        print(f"  {k:<40} median {med(xs) * 1e3:7.2f} ms   runs: " + ", ".join(f"{x * 1e3:.2f}" for x in xs))
    a, b = list(lat.values())
    print(f"  this tree / baseline: {med([x / y for x, y in zip(a, b)]):.3f}")


def bench_serve(n: int, runs: int) -> None:
    import httpx

    paths = ba.list_photos(ba.photo_dir(64))
    blobs = [open(paths[i % len(paths)], "rb").read() for i in range(n)]
    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    config = {**TASKS["classification"], "device": "cpu", "optimize": False}
    manifest = _tiny_manifest(tmp)
    proc, url = _serve_process(manifest, os.path.join(tmp, "home"))
    local = TorchImageModel(config)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server never got ready")
            time.sleep(0.05)
        limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
        with httpx.Client(timeout=120, limits=limits) as http, Batcher(local, max_batch_size=CALLERS, max_wait_ms=5) as batcher:
            def post(blob: bytes) -> None:
                r = http.post(url + "/predict", content=blob, headers={"Content-Type": "image/jpeg"})
                r.raise_for_status()

            for blob in blobs[:CALLERS]:  # warm-up: connections, first batches
                post(blob)
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(post, blobs[:CALLERS]))
            times: Dict[str, List[float]] = {"serve (HTTP)": [], "in-process batcher": []}
            for _ in range(runs):
                times["serve (HTTP)"].append(_concurrent(post, blobs))
                times["in-process batcher"].append(_concurrent(batcher, blobs))
        stats = httpx.get(url + "/info", timeout=10).json()["stats"]
    finally:
        proc.send_signal(2)  # SIGINT: the graceful stop
        proc.wait(60)
    print(f"\n(3) modelzoo serve over loopback: {n} JPEG posts (640x480, ~{len(blobs[0]) // 1024} KB), tiny classifier, "
          f"{CALLERS} client threads, {runs} interleaved runs")
    for name, ts in times.items():
        print(f"  {name:<20} median {n / med(ts):7.1f} requests/s   runs: " + ", ".join(f"{n / t:.1f}" for t in ts))
    ratios = [b / a for a, b in zip(times["serve (HTTP)"], times["in-process batcher"])]
    print(f"  serve / in-process throughput: {med(ratios):.3f} (pairwise: {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"  server's batch sizes: {stats['batch_sizes']}")


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer requests and runs (a smoke run)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--requests", type=int, default=512, help="images per throughput pass (default: 512)")
    p.add_argument("--latency-requests", type=int, default=200)
    p.add_argument("--serve-requests", type=int, default=512)
    p.add_argument("--skip", nargs="*", default=(), choices=("throughput", "latency", "serve"))
    p.add_argument("--keepalive-baseline", metavar="DIR",
                   help="(4) only: sequential keep-alive latency of this tree's server against the one in DIR "
                        "(another checkout's root, e.g. `git archive <commit> modelzoo | tar -x -C DIR`)")
    args = p.parse_args(list(argv) or None)
    if args.quick:
        args.runs, args.requests, args.latency_requests, args.serve_requests = 2, 128, 50, 128
    print(f"bench_serve: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (a shared, noisy machine)")
    if args.keepalive_baseline:
        bench_keepalive(args.latency_requests, args.runs, os.path.abspath(args.keepalive_baseline))
        return
    if "throughput" not in args.skip:
        bench_throughput(args.requests, args.runs)
    if "latency" not in args.skip:
        bench_latency(args.latency_requests, args.runs)
    if "serve" not in args.skip:
        bench_serve(args.serve_requests, args.runs)


if __name__ == "__main__":
    main(sys.argv[1:])
