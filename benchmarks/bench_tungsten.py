#!/usr/bin/env python
"""What the Tungsten-style adapter costs, and what option-pure batching buys.

(1) Per-input overhead: a trivial ``@define_model`` class (``y = len(prompt)``,
    two ``Option(choices=...)``, ``batch_size=4``) on 256 inputs with mixed
    options in shuffled order, through ``model.predict_all`` (validation,
    grouping, output checks) against calling the class's own ``predict``
    directly on the same batches, grouped by hand beforehand. Median over
    ``--rounds`` interleaved rounds, microseconds per input.
(2) Batching: a seeded conv "generator" (64x64 noise -> image, as in
    tests/test_tungsten.py but heavier) on 64 mixed-option inputs through
    ``predict_all`` with ``batch_size=16`` against ``batch_size=1``:
    medians of interleaved runs and their ratio.
(3) With ``--apply``: ``apply_model`` over ``--images`` photographs
    (bench_apply's 640x480 JPEGs) with a seeded ``mobilenet_v3_small``
    wrapped as a Tungsten model (``Input(image: Image)``, ``Output(label,
    score)`` stored as a Classification, ``batch_size=16``) against the same
    net as a ``TorchImageModel``; medians of interleaved runs, ratio.

Usage::

    .venv/bin/python benchmarks/bench_tungsten.py                  # (1) and (2), ~1 min
    .venv/bin/python benchmarks/bench_tungsten.py --apply --images 128
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Any, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modelzoo.tungsten import BaseIO, Image, Option, define_model  # noqa: E402


class TextIn(BaseIO):
    prompt: str
    width: int = Option(64, choices=[64, 96])
    height: int = Option(64, choices=[64, 96])


class LenOut(BaseIO):
    y: int


@define_model(input=TextIn, output=LenOut, batch_size=4)
class Lengths:
    def predict(self, inputs: List[TextIn]) -> List[LenOut]:
        return [LenOut(y=len(inp.prompt)) for inp in inputs]


class ImageOut(BaseIO):
    image: Image


def _mixed(n: int, seed: int = 0) -> List[TextIn]:
    rng = random.Random(seed)
    out = [TextIn(prompt="p" * (i % 7), width=rng.choice([64, 96]), height=rng.choice([64, 96])) for i in range(n)]
    rng.shuffle(out)
    return out


def bench_overhead(rounds: int) -> None:
    inputs = _mixed(256)
    model = Lengths()
    groups: dict = {}
    for inp in inputs:
        groups.setdefault((inp.width, inp.height), []).append(inp)
    batches = [g[i:i + 4] for g in groups.values() for i in range(0, len(g), 4)]
    raw = model.instance
    assert [o.y for o in model.predict_all(inputs)] == [len(i.prompt) for i in inputs]
    adapter, direct = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for b in batches:
            raw.predict(b)
        direct.append((time.perf_counter() - t) / len(inputs) * 1e6)
        t = time.perf_counter()
        model.predict_all(inputs)
        adapter.append((time.perf_counter() - t) / len(inputs) * 1e6)
    d, a = statistics.median(direct), statistics.median(adapter)
    print(f"## (1) per-input overhead, 256 mixed-option inputs, batch_size=4 ({rounds} rounds, median)")
    print(f"  class's predict on hand-grouped batches   {d:7.2f} us/input")
    print(f"  model.predict_all (validate, group, check) {a:7.2f} us/input  (+{a - d:.2f} us)")


def bench_batching(runs: int) -> None:
    import numpy as np
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 3, 3, padding=1), torch.nn.Sigmoid(),
    ).eval()

    def generate(inputs: List[TextIn]) -> List[ImageOut]:
        o = inputs[0]
        noise = torch.stack([
            torch.from_numpy(np.random.default_rng(len(i.prompt)).random((3, o.height, o.width), dtype=np.float32))
            for i in inputs
        ])
        with torch.inference_mode():
            out = (net(noise) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [ImageOut(image=Image.from_numpy(a)) for a in out]

    models = {}
    for bs in (1, 16):
        cls = type(f"Gen{bs}", (), {"predict": lambda self, inputs: generate(inputs)})
        models[bs] = define_model(input=TextIn, output=ImageOut, batch_size=bs)(cls)()
    inputs = _mixed(64, seed=1)
    a = models[1].predict_all(inputs)
    b = models[16].predict_all(inputs)
    assert all(np.abs(x.image.to_numpy().astype(int) - y.image.to_numpy().astype(int)).max() <= 1 for x, y in zip(a, b))
    times: dict = {1: [], 16: []}
    for _ in range(runs):
        for bs in (1, 16):
            t = time.perf_counter()
            models[bs].predict_all(inputs)
            times[bs].append(time.perf_counter() - t)
    t1, t16 = statistics.median(times[1]), statistics.median(times[16])
    print(f"## (2) 64 mixed-option inputs through a conv generator ({runs} interleaved runs, median)")
    print(f"  batch_size=1   {t1 * 1000:8.1f} ms")
    print(f"  batch_size=16  {t16 * 1000:8.1f} ms   speed-up x{t1 / t16:.2f} (option-pure batches of up to 16)")


def bench_apply(n_images: int, runs: int) -> None:
    import bench_apply as ba
    import torch

    import modelzoo as mz
    from modelzoo import db
    from modelzoo.torch_image import TorchImageModel

    class PhotoIn(BaseIO):
        image: Image

    class ClassOut(BaseIO):
        label: str
        score: float

    net = ba.build_net("mobilenet_v3_small")
    pre = ba.Preprocess()

    class Classifier:
        def predict(self, inputs: List[Any]) -> List[ClassOut]:
            batch = torch.stack([pre(inp.image.to_numpy()) for inp in inputs])
            with torch.inference_mode():
                probs = torch.softmax(net(batch), 1)
            scores, idx = probs.max(1)
            return [ClassOut(label=ba.CLASSES[int(i)], score=float(s)) for i, s in zip(idx, scores)]

    tungsten = define_model(input=PhotoIn, output=ClassOut, batch_size=16)(Classifier)()
    torch_image = TorchImageModel(ba.torch_image_config("mobilenet_v3_small", net))
    with db.temporary():
        paths = ba.list_photos(ba.photo_dir(n_images))
        dataset = mz.Dataset.from_images(paths, name="bench-tungsten", overwrite=True)
        times: dict = {"tungsten": [], "torch_image": []}
        for _ in range(runs):
            for name, model in (("tungsten", tungsten), ("torch_image", torch_image)):
                t = time.perf_counter()
                report = dataset.apply_model(model, label_field=name, batch_size=16, progress=False)
                times[name].append(time.perf_counter() - t)
                assert report.processed == n_images
        t_t, t_i = statistics.median(times["tungsten"]), statistics.median(times["torch_image"])
        print(f"## (3) apply_model, {n_images} photographs, mobilenet_v3_small, batch 16 ({runs} interleaved runs, median)")
        print(f"  Tungsten model    {t_t:7.2f} s  ({n_images / t_t:6.1f} img/s)")
        print(f"  TorchImageModel   {t_i:7.2f} s  ({n_images / t_i:6.1f} img/s)   ratio tungsten/torch_image {t_t / t_i:.2f}")
        print("  (the Tungsten model preprocesses in its predict, in this process; TorchImageModel in the loader workers)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=21)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--apply", action="store_true", help="also time apply_model against a TorchImageModel")
    p.add_argument("--images", type=int, default=128)
    args = p.parse_args()
    bench_overhead(args.rounds)
    bench_batching(args.runs)
    if args.apply:
        bench_apply(args.images, max(3, args.runs // 2))


if __name__ == "__main__":
    main()
