#!/usr/bin/env python
"""What ``preprocessing="pil"`` costs against the default tensor resize.

Per image, in one process, interleaved: decode (the libjpeg op, as the
loaders do) plus :class:`modelzoo.transforms.ImageTransform` with
``preprocessing="tensor"`` and ``"pil"``, on ``--images`` 640x480 JPEGs made
from scikit-image's photographs, for a downscale (max side 320, the usual
case for a classifier with a size cap), an upscale (min side 800) and no
resize (inside [224, 2048], FiftyOne's classifier entries: the two are then
identical). Prints medians of ``--runs`` passes and the ratio pil / tensor.

Usage::

    .venv/bin/python benchmarks/bench_preprocessing.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import bench_apply as B  # noqa: E402

CASES = {"downscale to 320": {"min_dim": 224, "max_dim": 320},
         "upscale to 800": {"min_dim": 800},
         "no resize": {"min_dim": 224, "max_dim": 2048}}


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv or None)
    import torch

    from modelzoo.transforms import ImageFileLoader, ImageTransform

    torch.set_num_threads(1)  # as in a loader worker
    paths = B.list_photos(B.photo_dir(args.images))
    print(f"# bench_preprocessing: {len(paths)} JPEGs 640x480, 1 thread (a loader worker), runs={args.runs}")
    for case, kw in CASES.items():
        loaders = {mode: ImageFileLoader(ImageTransform(mean=list(B.MEAN), std=list(B.STD), preprocessing=mode, **kw))
                   for mode in ("tensor", "pil")}
        times: Dict[str, List[float]] = {m: [] for m in loaders}
        for r in range(args.runs):
            for mode in (("tensor", "pil") if r % 2 == 0 else ("pil", "tensor")):
                t = time.perf_counter()
                for path in paths:
                    loaders[mode](path)
                times[mode].append((time.perf_counter() - t) / len(paths) * 1e3)
        a, b = statistics.median(times["tensor"]), statistics.median(times["pil"])
        print(f"  {case:18s} tensor {a:6.2f} ms/img   pil {b:6.2f} ms/img   pil/tensor {b / a:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
