#!/usr/bin/env python
"""The CUDA path end to end: ``apply_model`` against the forward pass alone.

resnet50 (seeded weights, as in bench_apply.py), fp16, batch 64, 224x224,
over ``--images`` 640x480 JPEGs made from scikit-image's photographs:

(a) forward only: the optimized model's forward on batches already on the
    GPU (preloaded, normalized), synchronized per batch: the device's limit;
(b) ``apply_model`` with TorchImageModel (decode in loader workers, pinned
    uint8 batches, non-blocking copies, normalization on the device, the
    label write), default workers.

Interleaved runs; prints medians and b/a (how far the input pipeline keeps
the GPU fed; 1.0 is the forward's limit). Without a CUDA device it says so
and exits 0, so the command can sit in scripts.

Usage (one command on a GPU machine, with the GPU tests)::

    .venv/bin/python -m pytest -m gpu tests/test_gpu.py && .venv/bin/python benchmarks/bench_gpu.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any, Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import bench_apply as B  # noqa: E402


def _config(net: Any, batch: int) -> Dict[str, Any]:
    return {
        "entrypoint_fcn": B._Prebuilt(net),
        "output_processor_cls": "ClassifierOutputProcessor",
        "classes": B.CLASSES,
        "image_size": 224,
        "image_mean": list(B.MEAN),
        "image_std": list(B.STD),
        "device": "cuda",
        "use_half_precision": True,
        "cudnn_benchmark": True,
        "optimize": "auto",
        "optimize_min_samples": 0,
    }


def forward_only(model: Any, batches: Sequence[Any]) -> float:
    import torch

    torch.cuda.synchronize()
    t = time.perf_counter()
    with model:
        for x in batches:
            model.predict_all(x)  # an ImageBatch on the device: no decode, no copy
    torch.cuda.synchronize()
    return time.perf_counter() - t


def main(argv: Sequence[str] = ()) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args(argv or None)
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing to measure")
        return 0
    import modelzoo as mz
    from modelzoo import db
    from modelzoo.torch_image import TorchImageModel

    paths = B.list_photos(B.photo_dir(args.images))
    net = B.build_net("resnet50")
    model = TorchImageModel(_config(net, args.batch))
    model.prepare(len(paths))
    loader = model.build_input_loader()
    collate = model.collate_fn
    batches = []
    for i in range(0, len(paths), args.batch):
        batch = collate([loader(p) for p in paths[i:i + args.batch]])
        batch.tensors = batch.tensors.to("cuda")
        batches.append(batch)
    print(f"# bench_gpu: {torch.cuda.get_device_name()}, torch {torch.__version__}, resnet50 fp16, "
          f"batch {args.batch}, {len(paths)} images, optimization={model.optimization}")
    with db.temporary():
        ds = mz.Dataset.from_images(paths, name=f"bench-gpu-{os.getpid()}")
        times: Dict[str, List[float]] = {"forward only": [], "apply_model": []}
        forward_only(model, batches[:2])  # warm-up (cudnn autotuning)
        for r in range(args.runs):
            for k in (("forward only", "apply_model") if r % 2 == 0 else ("apply_model", "forward only")):
                if k == "forward only":
                    times[k].append(forward_only(model, batches))
                else:
                    t = time.perf_counter()
                    report = ds.apply_model(model, "gpu", batch_size=args.batch, progress=False)
                    times[k].append(time.perf_counter() - t)
                    assert report.ok, report
        for k, v in times.items():
            print(f"  {k:14s} median {statistics.median(v):7.2f} s  {len(paths) / statistics.median(v):8.1f} img/s")
        a, b = statistics.median(times["forward only"]), statistics.median(times["apply_model"])
        print(f"  apply_model / forward only = {b / a:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
