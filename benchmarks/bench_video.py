#!/usr/bin/env python
"""Image models on video frames, and a video model's memory, on a real video.

Over a ``--frames`` (1,000) frame 640x480 H.264 video made with PyAV from a
pan and zoom over one of scikit-image's photographs, with torchvision's
``mobilenet_v3_small`` (random init, seeded, batch 32, 224x224 input):

(a) decode alone: PyAV decodes every frame to an RGB array, nothing else;
(b) the floor: a plain loop in one process that decodes each frame with
    PyAV, resizes and normalizes it (torchvision, as the engine does) and
    runs the eager model under ``torch.inference_mode`` per batch of 32;
(c) the optimized forward alone: :class:`~modelzoo.torch_image.TorchImageModel`
    (``optimize=True``) over the same frames, already decoded and transformed;
(d) ``apply_model`` with that TorchImageModel on the video sample (frames
    decoded in a loader worker, batched, written as frame labels).

Runs repeat ``--runs`` times, interleaved (a b c d, d c b a, ...), and the
script prints frames/s, medians and the ratios d/b (target <= 0.6) and d /
max(a, c) (target <= 1.3).

Then the peak RSS of ``apply_model`` with a video model (mean brightness per
frame, returning a frame-keyed dict) over a ``--rss-frames`` (3,000) frame
video against a 300-frame one, each in a fresh process (flat: target <= 1.2).

``--exif`` times the libjpeg decode path of ``TorchImageModel``'s loader
(:class:`~modelzoo.transforms.ImageFileLoader`, decode + resize to 224) over
200 640x480 JPEGs without EXIF, with ``exif_orientation`` on (the default:
the header is checked for an orientation) against off, interleaved (target:
on / off <= 1.02), and on JPEGs with orientation 6 (decoded upright by the
same op) for reference.

Videos are cached in ``$MODELZOO_BENCH_CACHE`` (default
``~/.cache/modelzoo-bench``); the embedded mongod runs in a temporary
directory and is stopped at the end. The machine's load moves these numbers:
compare ratios measured in one run, never absolute times across runs.

Usage::

    .venv/bin/python benchmarks/bench_video.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_video.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

import modelzoo as mz  # noqa: E402

SIZE = (640, 480)
BATCH = 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CLASSES = [f"class_{i}" for i in range(1000)]


def _cache_root() -> str:
    return os.environ.get("MODELZOO_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modelzoo-bench")


def make_video(n: int, size=SIZE, photo: str = "astronaut") -> str:
    """An ``n``-frame H.264 mp4 (30 fps) panning and zooming over ``photo``; cached."""
    import av
    import skimage.data

    root = os.path.join(_cache_root(), "videos")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{photo}_{n}_{size[0]}x{size[1]}.mp4")
    if os.path.exists(path):
        return path
    img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
    w, h = img.size
    tmp = path + ".part.mp4"
    with av.open(tmp, "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast"}
        for i in range(n):
            t = i / max(1, n - 1)
            scale = 1.0 - 0.5 * t
            cw, ch = int(w * scale), int(h * scale * size[1] / size[0] * w / h)
            ch = min(ch, h)
            x0, y0 = int((w - cw) * t), int((h - ch) * (1 - t))
            frame = np.asarray(img.crop((x0, y0, x0 + cw, y0 + ch)).resize(size, Image.BILINEAR))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def build_net():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(weights=None).eval()


def torch_image_model(net) -> Any:
    from modelzoo.torch_image import TorchImageModel

    return TorchImageModel({
        "entrypoint_fcn": lambda: net,
        "output_processor_cls": "ClassifierOutputProcessor",
        "classes": CLASSES,
        "image_size": 224,
        "image_mean": list(MEAN),
        "image_std": list(STD),
        "device": "cpu",
        "optimize": True,
    })


# -- the passes ----------------------------------------------------------------------------


def decode_alone(path: str) -> float:
    import av

    t = time.perf_counter()
    with av.open(path) as container:
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
    return time.perf_counter() - t


def floor_loop(path: str, net) -> float:
    """Decode, transform, eager forward per batch: one process, nothing written."""
    import av
    import torch
    import torchvision.transforms.v2.functional as TF

    t = time.perf_counter()
    batch: List[Any] = []

    def forward() -> None:
        with torch.inference_mode():
            net(torch.stack(batch))
        batch.clear()

    with av.open(path) as container:
        for frame in container.decode(video=0):
            x = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            x = TF.resize(x, [224, 224], antialias=True)
            batch.append(TF.normalize(x.float() / 255, MEAN, STD))
            if len(batch) == BATCH:
                forward()
    if batch:
        forward()
    return time.perf_counter() - t


def forward_alone(model, batches: Sequence[Any]) -> float:
    t = time.perf_counter()
    for b in batches:
        model.predict_all(b)
    return time.perf_counter() - t


def prepared_batches(model, path: str) -> List[Any]:
    """The video's frames, decoded and transformed as the engine's loader does, in batches."""
    loader = model.build_loader()
    collate = loader.collate
    frames = [loader.load_frame(None, f) for f in mz.VideoReader(path)]
    return [collate(frames[i:i + BATCH]) for i in range(0, len(frames), BATCH)]


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def bench_frames(n_frames: int, runs: int) -> None:
    import torch

    path = make_video(n_frames)
    print(f"## mobilenet_v3_small over the frames of a {n_frames}-frame {SIZE[0]}x{SIZE[1]} H.264 video "
          f"(batch {BATCH}, {os.cpu_count()} CPUs, torch {torch.__version__})")
    net = build_net()
    model = torch_image_model(net)
    model.prepare(n_frames)
    batches = prepared_batches(model, path)
    model.preprocess = False
    dataset = mz.Dataset.from_videos([path], name=f"bench-video-{os.getpid()}")
    engine_threads = torch.get_num_threads()

    def with_threads(fn: Callable[[], float], n: int) -> Callable[[], float]:
        def run() -> float:
            torch.set_num_threads(n)
            try:
                return fn()
            finally:
                torch.set_num_threads(engine_threads)

        return run

    def apply() -> float:
        t = time.perf_counter()
        report = mz.apply_model(dataset, model, "mnv3", batch_size=BATCH, progress=False)
        dt = time.perf_counter() - t
        assert report.frames_processed == n_frames, report
        return dt

    cores = os.cpu_count() or 1
    # a 2-thread forward beside anything else on 2 cores stalls (see engine/tuning.py): 1 there
    thread_counts = [1] if cores <= 2 else sorted({1, cores // 2, cores})
    passes: Dict[str, Callable[[], float]] = {"(a) decode alone": lambda: decode_alone(path)}
    for n in thread_counts:
        passes[f"(b) floor, {n} thread(s)"] = with_threads(lambda: floor_loop(path, net), n)
    for n in thread_counts:
        passes[f"(c) optimized forward alone, {n} thread(s)"] = with_threads(lambda: forward_alone(model, batches), n)
    passes["(d) apply_model (engine's counts)"] = apply
    times: Dict[str, List[float]] = {k: [] for k in passes}
    names = list(passes)
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(passes[name]())
    for name in names:
        xs = times[name]
        print(f"  {name:44s} median {med(xs):6.2f} s  {n_frames / med(xs):7.1f} frames/s  "
              f"(runs: {', '.join(f'{x:.2f}' for x in xs)})")
    a = med(times["(a) decode alone"])
    b = min(med(times[k]) for k in names if k.startswith("(b)"))
    c = min(med(times[k]) for k in names if k.startswith("(c)"))
    d = med(times["(d) apply_model (engine's counts)"])
    print(f"  floor = best (b) {b:.2f} s, optimized forward = best (c) {c:.2f} s")
    print(f"  apply_model / floor = {d / b:.3f} (target <= 0.6)")
    print(f"  apply_model / max(decode alone, optimized forward alone) = {d / max(a, c):.3f} (target <= 1.3)")
    mz.delete_dataset(dataset.name)


# -- peak RSS of a video model ---------------------------------------------------------------


class MeanBrightness(mz.Model):
    """Mean pixel of every frame, keyed by frame number (a plain dict, as FiftyOne's contract)."""

    @property
    def media_type(self) -> str:
        return "video"

    def predict(self, reader):
        labels = {}
        for frame in reader:
            labels[reader.frame_number] = mz.Classification(label="mean", confidence=float(frame.mean()) / 255)
        return labels


def _peak_rss_kib() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(path: str) -> None:
    """In a subprocess: the video model over one video; prints peak RSS (KiB) as JSON."""
    import av  # noqa: F401  (so that "after imports" counts them: the engine imports torch)
    import torch  # noqa: F401

    from modelzoo import db

    with db.temporary():
        ds = mz.Dataset.from_videos([path])
        base = _peak_rss_kib()
        t = time.perf_counter()
        report = mz.apply_model(ds, MeanBrightness(), "mean", progress=False)
        dt = time.perf_counter() - t
        print(json.dumps({"frames": report.frames_processed, "seconds": dt, "rss_before_kib": base,
                          "maxrss_kib": _peak_rss_kib()}))


def bench_rss(sizes: Sequence[int]) -> None:
    print("\n## peak RSS of apply_model with a video model (mean brightness per frame), each in a fresh process")
    results = {}
    for n in sizes:
        path = make_video(n)
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", path],
                             check=True, capture_output=True, text=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[n] = r
        print(f"  {n:6d} frames: peak RSS {r['maxrss_kib'] / 1024:7.1f} MiB (after imports "
              f"{r['rss_before_kib'] / 1024:.1f}), {r['frames'] / r['seconds']:.0f} frames/s")
    lo, hi = min(sizes), max(sizes)
    frame_mib = SIZE[0] * SIZE[1] * 3 / 2**20
    print(f"  peak RSS {hi} / {lo} frames = {results[hi]['maxrss_kib'] / results[lo]['maxrss_kib']:.3f} "
          f"(target <= 1.2; holding the {hi} frames would take {hi * frame_mib:.0f} MiB)")


def bench_exif(runs: int) -> None:
    import skimage.data

    from modelzoo.transforms import ImageFileLoader, ImageTransform

    root = os.path.join(_cache_root(), "exif")
    os.makedirs(root, exist_ok=True)
    plain, rotated = [], []
    names = ("astronaut", "chelsea", "coffee", "rocket")
    for i in range(200):
        img = Image.fromarray(getattr(skimage.data, names[i % 4])()).convert("RGB").resize(SIZE)
        p, r = os.path.join(root, f"plain_{i}.jpg"), os.path.join(root, f"rot6_{i}.jpg")
        if not os.path.exists(p):
            img.save(p, quality=90)
        if not os.path.exists(r):
            exif = Image.Exif()
            exif[0x0112] = 6
            img.save(r, quality=90, exif=exif)
        plain.append(p)
        rotated.append(r)
    transform = ImageTransform(image_size=(224, 224))
    on = ImageFileLoader(transform, defer_normalize=True)
    off = ImageFileLoader(transform, defer_normalize=True, exif_orientation=False)

    def timed(loader: Any, paths: Sequence[str]) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            for path in paths:
                loader(path)
            return time.perf_counter() - t

        return run

    passes = {
        "no EXIF, exif_orientation=True": timed(on, plain),
        "no EXIF, exif_orientation=False": timed(off, plain),
        "orientation 6, exif_orientation=True": timed(on, rotated),
    }
    times: Dict[str, List[float]] = {k: [] for k in passes}
    keys = list(passes)
    for r in range(runs):
        for k in keys if r % 2 == 0 else keys[::-1]:
            times[k].append(passes[k]())
    print("\n## ImageFileLoader (libjpeg op) over 200 640x480 JPEGs, decode + resize to 224")
    for k in keys:
        print(f"  {k:40s} median {med(times[k]) * 1e3 / len(plain):6.2f} ms/image")
    ratio = med(times[keys[0]]) / med(times[keys[1]])
    print(f"  no EXIF: orientation check on / off = {ratio:.3f} (target <= 1.02)")


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rss-frames", type=int, default=3000)
    p.add_argument("--quick", action="store_true", help="100 frames, 1 run, RSS over 300 vs 600 frames")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--exif", action="store_true", help="also time the EXIF orientation check on JPEG decoding")
    p.add_argument("--exif-only", action="store_true")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    if args.quick:
        args.frames, args.runs, args.rss_frames = 100, 1, 600
    if args.exif or args.exif_only:
        bench_exif(max(5, args.runs))
        if args.exif_only:
            return
    from modelzoo import db

    with db.temporary():
        bench_frames(args.frames, args.runs)
    if not args.skip_rss:
        bench_rss([300, args.rss_frames])


if __name__ == "__main__":
    main()
