#!/usr/bin/env python
"""Where ``optimize="auto"`` should switch to the optimized graph: its build
cost against its per-sample gain, for small and large models.

For each torchvision classifier (seeded weights, BatchNorm statistics from
one calibration pass, as in bench_apply.py) and input case (224x224 fixed,
where the fused oneDNN graph applies; 640x480 photographs at full size, as
the FiftyOne-named zoo entries run them, where the plain frozen graph
applies), on real photographs:

- ``build``: ``TorchImageModel.prepare(n)`` on a freshly built eager model
  (copy to channels_last, trace, freeze, first calls, verification against
  eager on two example batches): what a run pays before its first batch;
- ``eager`` and ``optimized``: seconds per sample of the forward pass on a
  preloaded batch of 16, interleaved, medians over ``--runs``;
- ``break-even``: build / (eager - optimized), the run length from which the
  build has paid for itself.

Usage::

    .venv/bin/python benchmarks/bench_optimize.py            # ~5 min on 2 cores
    .venv/bin/python benchmarks/bench_optimize.py --archs mobilenet_v3_small --runs 3
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

CASES = {
    "224": {"image_size": 224},
    "640x480": {"image_min_dim": 224, "image_max_dim": 2048},
}


def _config(arch: str, net: Any, case: str) -> Dict[str, Any]:
    return {
        "entrypoint_fcn": B._Prebuilt(net),
        "output_processor_cls": "ClassifierOutputProcessor",
        "classes": B.CLASSES,
        "image_mean": list(B.MEAN),
        "image_std": list(B.STD),
        "device": "cpu",
        "optimize": "auto",
        "optimize_min_samples": 1,
        **CASES[case],
    }


def _per_sample(fn, batch: Any, n: int) -> float:
    t = time.perf_counter()
    fn(batch)
    return (time.perf_counter() - t) / n


def bench(arch: str, case: str, runs: int, paths: Sequence[str]) -> Dict[str, float]:
    import torch

    from modelzoo.image_io import read_image
    from modelzoo.torch_image import TorchImageModel

    net = B.build_net(arch)
    builds: List[float] = []
    model = None
    for _ in range(runs):
        m = TorchImageModel(_config(arch, net, case))
        t = time.perf_counter()
        m.prepare(10_000)
        builds.append(time.perf_counter() - t)
        model = m
    assert model is not None
    images = [read_image(p) for p in paths]
    with model:
        batch = model.collate_fn([model.transforms(im) for im in images])
        x = batch.tensors
        eager_fn = lambda x: model._net(x)  # noqa: E731  # the eager module, as before prepare
        opt_fn = lambda x: model._forward(x)  # noqa: E731
        times: Dict[str, List[float]] = {"eager": [], "optimized": []}
        with torch.inference_mode():
            eager_fn(x), opt_fn(x)  # warm-up
            for r in range(runs):
                order = ("eager", "optimized") if r % 2 == 0 else ("optimized", "eager")
                for k in order:
                    times[k].append(_per_sample(eager_fn if k == "eager" else opt_fn, x, len(images)))
    e, o, b = statistics.median(times["eager"]), statistics.median(times["optimized"]), statistics.median(builds)
    gain = e - o
    return {
        "build_s": b, "eager_ms": e * 1e3, "opt_ms": o * 1e3, "kind": model.optimization,
        "break_even": (b / gain) if gain > 0 else float("inf"),
    }


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", nargs="*", default=["mobilenet_v3_small", "mobilenet_v2", "resnet50"])
    p.add_argument("--cases", nargs="*", default=list(CASES))
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv or None)
    import torch

    paths = B.list_photos(B.photo_dir(16))
    print(f"# bench_optimize: cpus={len(os.sched_getaffinity(0))}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), runs={args.runs}, batch {len(paths)} real photographs")
    print(f"{'model':20s} {'input':8s} {'graph':14s} {'build s':>8s} {'eager ms':>9s} {'opt ms':>7s} {'break-even':>11s}")
    worst = 0.0
    for arch in args.archs:
        for case in args.cases:
            r = bench(arch, case, args.runs, paths)
            worst = max(worst, r["break_even"])
            print(f"{arch:20s} {case:8s} {r['kind']:14s} {r['build_s']:8.2f} {r['eager_ms']:9.1f} "
                  f"{r['opt_ms']:7.1f} {r['break_even']:11.0f}", flush=True)
    print(f"\nlargest break-even: {worst:.0f} samples (forward only; decoding adds to both sides equally)")


if __name__ == "__main__":
    main(sys.argv[1:])
