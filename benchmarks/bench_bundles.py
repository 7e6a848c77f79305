#!/usr/bin/env python
"""What a model bundle costs over the code it wraps.

(1) Per-call overhead: a callable bundle with request and response schemas
    (the Launch docs' ``x * 2 + len(y)`` bundle; pydantic v1-style schemas,
    then v2 ones) called through ``BundleModel.predict`` against calling its
    ``predict_fn`` directly. Median over ``--rounds`` rounds of ``--calls``
    calls, in microseconds per call.
(2) ``apply_model`` over ``--images`` 640x480 photographs (bench_apply's,
    cached) with a torchvision ``mobilenet_v3_small`` (seeded, random init):
    as a bundle whose ``predict_fn`` takes the uint8 array (one image per
    call, as Launch bundles take requests), against the same net as a
    ``TorchImageModel`` at batch size 1 (the same forward work) and at its
    default batch size. Medians over ``--runs`` interleaved runs; prints the
    ratios. A bundle predicts one input per call, so the batch-1 ratio is the
    adapter's cost and the default-batch ratio is what batching buys.

Usage::

    .venv/bin/python benchmarks/bench_bundles.py            # ~5 min on 2 busy cores
    .venv/bin/python benchmarks/bench_bundles.py --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, List

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_apply as ba  # noqa: E402  (photos, nets, TorchImageModel config)

import modelzoo as mz  # noqa: E402
from modelzoo import db  # noqa: E402
from modelzoo.bundles import ModelBundle  # noqa: E402


def _median_us(fn: Callable[[], Any], calls: int, rounds: int) -> float:
    per_round = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        per_round.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(per_round)


def bench_overhead(calls: int, rounds: int) -> None:
    import pydantic
    from pydantic import v1

    def load_model_fn():
        return lambda x: x * 2

    def load_predict_fn(model):
        def predict(x: int, y: str) -> int:
            return model(x) + len(y)

        return predict

    class ReqV1(v1.BaseModel):
        x: int
        y: str

    class RespV1(v1.BaseModel):
        __root__: int

    class ReqV2(pydantic.BaseModel):
        x: int
        y: str

    RespV2 = pydantic.RootModel[int]
    predict_fn = load_predict_fn(load_model_fn())
    request = {"x": 3, "y": "ab"}
    direct = _median_us(lambda: predict_fn(**request), calls, rounds)
    print(f"## per-call overhead ({calls} calls x {rounds} rounds, median)")
    print(f"  predict_fn(**request) directly          {direct:8.2f} us/call")
    for label, req, resp in (("no schemas", None, None), ("pydantic.v1 schemas", ReqV1, RespV1),
                             ("pydantic v2 schemas", ReqV2, RespV2)):
        bundle = ModelBundle(f"bench-{label.split()[0]}".replace(".", ""), load_model_fn=load_model_fn,
                             load_predict_fn=load_predict_fn, request_schema=req, response_schema=resp,
                             input="request")
        model = bundle.to_model()
        with model:
            assert model.predict(request) == 8
            t = _median_us(lambda model=model: model.predict(request), calls, rounds)
        print(f"  bundle.predict, {label:22s}  {t:8.2f} us/call  (+{t - direct:.2f} us)")


class _ArrayClassifier:
    """The bundle's predict_fn: one uint8 array in, a Classification out."""

    def __init__(self, net: Any):
        self.net = net
        self.pre = ba.Preprocess()

    def __call__(self, image: np.ndarray) -> mz.Classification:
        import torch

        with torch.inference_mode():
            logits = self.net(self.pre(image)[None])[0]
        i = int(logits.argmax())
        return mz.Classification(label=ba.CLASSES[i], confidence=float(torch.softmax(logits, 0)[i]))


def bench_apply(n_images: int, runs: int) -> None:
    from modelzoo.torch_image import TorchImageModel

    paths = ba.list_photos(ba.photo_dir(n_images))
    dataset = mz.Dataset.from_images(paths, name="bench-bundles", overwrite=True)
    net = ba.build_net("mobilenet_v3_small")
    bundle = ModelBundle("bench-classifier", model=net, load_predict_fn=_ArrayClassifier, input="array")

    def run_bundle() -> float:
        t = time.perf_counter()
        report = dataset.apply_model(bundle.to_model(), label_field="bundle", batch_size=16)
        assert report.processed == n_images, report
        return time.perf_counter() - t

    def run_torch(batch_size: Any) -> Callable[[], float]:
        def run() -> float:
            t = time.perf_counter()
            model = TorchImageModel(ba.torch_image_config("mobilenet_v3_small", net))
            report = dataset.apply_model(model, label_field="torch", batch_size=batch_size)
            assert report.processed == n_images, report
            return time.perf_counter() - t
        return run

    variants = {"bundle (1 image per predict_fn call)": run_bundle,
                "TorchImageModel batch 1": run_torch(1),
                "TorchImageModel default batch": run_torch(None)}
    times: dict = {k: [] for k in variants}
    for _ in range(runs):
        for k, fn in variants.items():
            times[k].append(fn())
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n## apply_model over {n_images} photographs, mobilenet_v3_small (median of {runs})")
    for k, v in med.items():
        print(f"  {k:38s} {v:7.2f} s  ({v / n_images * 1e3:.2f} ms/image; runs {[round(x, 2) for x in times[k]]})")
    b, t1, td = (med[k] for k in variants)
    print(f"  bundle / TorchImageModel batch 1       = {b / t1:.3f}")
    print(f"  bundle / TorchImageModel default batch = {b / td:.3f}")
    agree = sum(a.label == c.label for a, c in zip(dataset.values("bundle"), dataset.values("torch")))
    print(f"  top-1 agreement bundle vs TorchImageModel: {agree}/{n_images}")
    mz.delete_dataset("bench-bundles")


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--overhead-only", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.runs, args.calls, args.rounds = 64, 1, 2000, 3
    tmp = tempfile.mkdtemp(prefix="modelzoo-bench-bundles-")
    os.environ["MODELZOO_DATABASE_DIR"] = tmp
    os.environ["MODELZOO_HOME"] = os.path.join(tmp, "home")
    os.environ.pop("MODELZOO_DATABASE_URI", None)
    db.reset()
    db.connect()
    try:
        bench_overhead(args.calls, args.rounds)
        if not args.overhead_only:
            bench_apply(args.images, args.runs)
    finally:
        db.stop()


if __name__ == "__main__":
    main()
