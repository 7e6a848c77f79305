#!/usr/bin/env python
"""The zoo's path vs each library's own loop, one model per source (issue #23).

For each source, on the same ``--n`` JPEG photographs (640x480, written
once from scikit-image's photos):

- ``ours``: ``load_zoo_model(name, pretrained=False)`` then
  ``dataset.apply_model(model, batch_size=B, num_workers=W)`` (decode and
  preprocessing in the loader workers, labels written to the database);
- ``theirs``: the library's own loop over the same files:
  timm: PIL decode + ``timm.data.create_transform`` + eager forward in
  batches; transformers: ``transformers.pipeline(task, ...)`` with its
  ``batch_size``; Ultralytics: ``YOLO.predict(paths, batch=B, stream=True)``.

Weights are random (``pretrained=False``; speed does not depend on their
values), so nothing is downloaded. Runs are interleaved (ours, theirs,
ours...) and the medians of ``--runs`` are reported as ms/image with the
ratio ours/theirs. ``theirs`` stores nothing, ``ours`` writes every label to
MongoDB, so the ratio includes the writes.

    .venv/bin/python benchmarks/bench_zoo_libs.py --n 300 --runs 3
    .venv/bin/python benchmarks/bench_zoo_libs.py --n 8 --runs 1 --sources timm   # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry")
MODELS = {
    "timm": "timm/resnet18.a1_in1k",
    "transformers": "hf/facebook/convnext-tiny-224",
    "ultralytics": "yolov8n-coco-torch",
}


def write_photos(root: str, n: int) -> List[str]:
    import numpy as np
    import skimage.data
    from PIL import Image

    os.makedirs(root, exist_ok=True)
    paths = []
    for i in range(n):
        path = os.path.join(root, f"photo_{i:04d}.jpg")
        if not os.path.exists(path):
            img = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
            if img.ndim == 2:
                img = np.stack([img] * 3, axis=-1)
            pil = Image.fromarray(img[..., :3]).convert("RGB").resize((640, 480))
            if i % 2:
                pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
            pil.save(path, quality=90)
        paths.append(path)
    return paths


def ours(name: str, paths: List[str], batch_size: int, workers: int, **kwargs: Any) -> Callable[[], None]:
    import modelzoo as mz

    model = mz.load_zoo_model(name, pretrained=False, device="cpu", **kwargs)
    ds = mz.Dataset(f"bench-zoo-libs-{name.replace('/', '-')}"[:60], overwrite=True)
    ds.add_images(paths)

    def run() -> None:
        ds.apply_model(model, label_field="p", batch_size=batch_size, num_workers=workers, progress=False)

    return run


def theirs_timm(paths: List[str], batch_size: int) -> Callable[[], None]:
    import timm
    import torch
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    torch.manual_seed(0)
    model = timm.create_model("resnet18.a1_in1k", pretrained=False).eval()
    transform = create_transform(**resolve_data_config({}, model=model))

    def run() -> None:
        with torch.inference_mode():
            for i in range(0, len(paths), batch_size):
                x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i:i + batch_size]])
                model(x).softmax(-1).argmax(-1)

    return run


def theirs_transformers(paths: List[str], batch_size: int) -> Callable[[], None]:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ConvNextConfig(num_labels=1000)
    model = transformers.ConvNextForImageClassification(config).eval()
    processor = transformers.ConvNextImageProcessor()
    pipe = transformers.pipeline("image-classification", model=model, image_processor=processor, device="cpu")

    def run() -> None:
        list(pipe(paths, batch_size=batch_size))

    return run


def theirs_ultralytics(paths: List[str], batch_size: int) -> Callable[[], None]:
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n.yaml")

    def run() -> None:
        for _ in model.predict(paths, batch=batch_size, stream=True, verbose=False, conf=0.25):
            pass

    return run


THEIRS = {"timm": theirs_timm, "transformers": theirs_transformers, "ultralytics": theirs_ultralytics}


def main() -> int:
    from modelzoo import db

    with db.temporary():  # a private server, stopped and removed at the end
        return _main()


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="photos")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sources", nargs="*", default=list(MODELS))
    parser.add_argument("--photos", default=os.path.join(tempfile.gettempdir(), "modelzoo-bench-zoo-libs"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    paths = write_photos(args.photos, args.n)
    rows: List[Dict[str, Any]] = []
    for source in args.sources:
        try:
            kwargs: Dict[str, Any] = {"confidence_thresh": 0.25} if source == "ultralytics" else {}
            if source == "transformers":
                import transformers

                kwargs["hf_config"] = transformers.ConvNextConfig(num_labels=1000)
                kwargs["task"] = "image-classification"
            fns = {"ours": ours(MODELS[source], paths, args.batch, args.workers, **kwargs),
                   "theirs": THEIRS[source](paths, args.batch)}
        except ImportError as e:
            print(f"{source}: skipped ({e})")
            continue
        for fn in fns.values():  # warm-up (threads, allocators, caches)
            fn()
        times: Dict[str, List[float]] = {"ours": [], "theirs": []}
        for _ in range(args.runs):
            for key, fn in fns.items():
                t = time.perf_counter()
                fn()
                times[key].append((time.perf_counter() - t) / len(paths) * 1000)
        o, t = statistics.median(times["ours"]), statistics.median(times["theirs"])
        rows.append({"source": source, "model": MODELS[source], "ours": o, "theirs": t, "ratio": o / t})
    print(f"\n{args.n} photos 640x480, batch {args.batch}, {args.workers} workers, {args.runs} interleaved runs, "
          f"{os.cpu_count()} CPUs\n")
    print("| source | model | ours ms/img | theirs ms/img | ours/theirs |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['source']} | {r['model']} | {r['ours']:.1f} | {r['theirs']:.1f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
