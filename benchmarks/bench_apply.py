#!/usr/bin/env python
"""The engine's overhead over the fastest plain loop, on real photographs.

For each model (torchvision ``mobilenet_v3_small`` and ``resnet18``, random
init, eval mode, batch 32) over ``--images`` 640x480 JPEGs made from
scikit-image's photographs:

(a) the eager floor: a plain DataLoader loop that decodes and transforms in
    worker processes and runs the eager forward under
    ``torch.inference_mode``, writing nothing; swept over worker/thread
    counts, the fastest setting is the floor;
(b) ``apply_model`` writing a Classification per image, with the same eager
    model wrapped as a minimal TorchModelMixin + EmbeddingsMixin
    :class:`EagerClassifier` (same decode and transforms), at the engine's
    default workers/threads (``num_workers=None``) and at the best hand-set
    choice;
(c) ``compute_embeddings`` with the same model (the pooled features before
    the classifier), returned as an array.

Runs repeat ``--runs`` times, interleaved, and the script prints the medians
and the ratios b/a, c/a (target <= 1.02) and default/best (target <= 1.05).

Then the peak RSS of ``apply_model`` with a tiny model over 1,000 and 20,000
samples (the files reused), each in its own subprocess (target <= 1.2x).

``--torch-image`` also times :class:`modelzoo.torch_image.TorchImageModel`
(default options) against the floor (targets <= 0.5x mobilenet_v3_small,
<= 0.7x resnet18) and checks that its top-1 matches the eager model's on
every image.

``--dense`` (or ``--dense-only``) times dense models on the same JPEGs, batch
8: torchvision ``fasterrcnn_mobilenet_v3_large_320_fpn`` (96 images, no
resize) and ``lraspp_mobilenet_v3_large`` (200 images, 320x320, ImageNet
mean/std), random init (seeded), each as (a) a plain DataLoader + eager loop
at each of (workers, threads) (1,1), (2,1), (1,2) every round (the floor is
the best median), writing nothing, and (b) TorchImageModel's load work after
its entrypoint returns the same prebuilt net (processor check, optimize) plus
``apply_model`` (DetectorOutputProcessor / SemanticSegmenterOutputProcessor,
default options, engine default counts); prints b/a (target <= 1.0).

``--zoo`` (or ``--zoo-only``) times the path most users take:
``load_zoo_model(name)`` then ``apply_model`` with no options, load
included, for ``mobilenet-v2-imagenet-torch`` (its real weights install
offline) on ``--images`` photos and a ``resnet50`` registered as a zoo model
with the manifest entry's settings and seeded weights (the real ones
download) on ``--zoo-resnet-images`` photos (default 256, the fewest for
which ``optimize="auto"`` builds the graph; at full 640x480 a resnet50
forward is ~0.85 s per image here; 0 skips it), against (a) the eager floor: the
same torchvision net with the same weights in a plain DataLoader loop at
(workers, threads) (1,2), which beat (1,1) and (2,1) in every round here, batch 16 (the
engine's default), decoding and normalizing as the entry preprocesses (the
photos fit the entries' [224, 2048] range, so neither resizes). Targets
<= 0.5x and <= 0.75x the floor.

The embedded mongod runs in a temporary directory and is stopped at the end.

Usage::

    .venv/bin/python benchmarks/bench_apply.py              # full (under ~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_apply.py --quick      # smoke run
    .venv/bin/python benchmarks/bench_apply.py --torch-image
    .venv/bin/python benchmarks/bench_apply.py --torch-image-only   # sweep + TorchImageModel vs floor
    .venv/bin/python benchmarks/bench_apply.py --dense-only   # ~5 min
    .venv/bin/python benchmarks/bench_apply.py --zoo-only     # ~10 min
    .venv/bin/python benchmarks/bench_apply.py --stability 10 # run-to-run spread, ~4 min

``--stability N`` runs TorchImageModel mobilenet_v3_small (build + apply,
batch 32) N times alternating with its eager loop at the best swept
setting, and prints the spread (max - min) / median of each (target: ours
within the eager loop's spread + 0.05) and the calibration's choices.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

# -- the images ----------------------------------------------------------------------------

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina", "cat")
SIZE = (640, 480)  # (width, height)


def _cache_root() -> str:
    return os.environ.get("MODELZOO_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "modelzoo-bench")


def photo_dir(n: int, size: Tuple[int, int] = SIZE) -> str:
    """A directory of ``n`` distinct ``size`` JPEGs cut from scikit-image's
    photographs (random scale, crop and flips, seeded); made once, cached."""
    root = os.path.join(_cache_root(), f"photos-{size[0]}x{size[1]}-n{n}")
    if os.path.isdir(root) and len(os.listdir(root)) == n:
        return root
    import skimage.data

    os.makedirs(_cache_root(), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="photos-", dir=_cache_root())
    sources = [Image.fromarray(getattr(skimage.data, name)()).convert("RGB") for name in PHOTOS]
    W, H = size
    for i in range(n):
        rng = np.random.default_rng(i)
        img = sources[i % len(sources)]
        scale = max(W / img.width, H / img.height) * rng.uniform(1.0, 1.6)
        img = img.resize((max(W, round(img.width * scale)), max(H, round(img.height * scale))), Image.BILINEAR)
        x, y = int(rng.integers(0, img.width - W + 1)), int(rng.integers(0, img.height - H + 1))
        img = img.crop((x, y, x + W, y + H))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.2:
            img = img.transpose(Image.FLIP_TOP_BOTTOM)
        img.save(os.path.join(tmp, f"photo_{i:05d}.jpg"), quality=90)
    if os.path.isdir(root):  # a partial cache from an interrupted run
        import shutil

        shutil.rmtree(root)
    os.replace(tmp, root)
    return root


def list_photos(root: str) -> List[str]:
    return sorted(os.path.join(root, f) for f in os.listdir(root) if f.endswith(".jpg"))


# -- the transforms and models (module level: picklable) -----------------------------------

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLASSES = [f"class_{i}" for i in range(1000)]


class Preprocess:
    """uint8 HWC RGB array -> normalized float (3, 224, 224): resize the
    shorter side to 224 (antialiased, on the uint8 tensor), center crop 224."""

    def __init__(self, size: int = 224):
        self.size = size

    def __call__(self, image: Any):
        import torch
        import torchvision.transforms.v2.functional as TF

        t = torch.from_numpy(np.array(image, copy=False)).permute(2, 0, 1)
        t = TF.resize(t, [self.size], antialias=True)
        t = TF.center_crop(t, [self.size, self.size])
        x = t.to(torch.float32).div_(255.0)
        return TF.normalize(x, list(MEAN), list(STD), inplace=True)


def build_net(arch: str):
    """The torchvision model, random init (seeded), eval mode.

    BatchNorm running statistics are set from one forward pass in train mode on
    a seeded noise batch: left at their init (mean 0, var 1), a random
    mobilenet_v3_small's activations vanish to ~1e-9 (denormal-slow, and every
    image gets the same near-tied logits), which is no model anyone runs.
    """
    import torch
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)(weights=None)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: the calibration batch's statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(1)))
    return net.eval()


def _split(net):
    """(body, head): body gives the pooled features the classifier takes."""
    import torch

    if hasattr(net, "fc"):  # resnet
        body = torch.nn.Sequential(*list(net.children())[:-1], torch.nn.Flatten(1))
        return body, net.fc
    return torch.nn.Sequential(net.features, net.avgpool, torch.nn.Flatten(1)), net.classifier


import modelzoo as mz  # noqa: E402


class EagerClassifier(mz.TorchModelMixin, mz.EmbeddingsMixin, mz.Model):
    """The eager torchvision model as a minimal modelzoo model: top-1
    Classification per image; embeddings = pooled features before the classifier."""

    def __init__(self, arch: str):
        super().__init__()
        self.arch = arch
        self.net = build_net(arch)
        self.body, self.head = _split(self.net)
        self._transforms = Preprocess()

    @property
    def ragged_batches(self) -> bool:
        return False  # default_collate stacks the (3, 224, 224) tensors

    @property
    def transforms(self) -> Preprocess:
        return self._transforms

    def _batch(self, args: Any):
        import torch

        if isinstance(args, torch.Tensor):
            return args
        return torch.stack([self._transforms(np.asarray(a)) for a in args])

    def predict_all(self, args: Any) -> List[mz.Classification]:
        import torch

        with torch.inference_mode():
            logits = self.net(self._batch(args))
            idx = logits.argmax(1)
            conf = logits.softmax(1).gather(1, idx[:, None])[:, 0]
        return [mz.Classification(label=CLASSES[i], confidence=c) for i, c in zip(idx.tolist(), conf.tolist())]

    def predict(self, arg: Any) -> mz.Classification:
        return self.predict_all([arg])[0]

    def embed_all(self, args: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.body(self._batch(args)).numpy()


class _TinyLoader:
    """filepath -> (3, 32, 32) float tensor; JPEGs decoded at 1/8 scale. Picklable."""

    def __call__(self, path: str):
        import torch
        import torch.nn.functional as F

        from modelzoo.image_io import read_image

        arr = read_image(path, draft_size=(80, 60))
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float().div_(255)
        return F.interpolate(t[None], size=(32, 32), mode="bilinear", align_corners=False)[0]


class TinyModel(mz.TorchModelMixin, mz.Model):
    """A tiny conv classifier, for the memory benchmark."""

    def __init__(self):
        super().__init__()
        import torch

        g = torch.Generator().manual_seed(0)
        self.conv = torch.randn(8, 3, 3, 3, generator=g)
        self.fc = torch.randn(4, 8, generator=g)

    @property
    def ragged_batches(self) -> bool:
        return False

    def build_input_loader(self) -> _TinyLoader:
        return _TinyLoader()

    def predict_all(self, args: Any) -> List[mz.Classification]:
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            probs = (F.conv2d(args, self.conv, padding=1).relu().mean((2, 3)) @ self.fc.T).softmax(1)
            conf, idx = probs.max(1)
        return [mz.Classification(label="abcd"[i], confidence=c) for i, c in zip(idx.tolist(), conf.tolist())]

    def predict(self, arg: Any) -> mz.Classification:
        return self.predict_all(_TinyLoader()(arg) if isinstance(arg, str) else arg[None])[0]


# -- (a) the eager floor -------------------------------------------------------------------


class _FileDataset:
    def __init__(self, paths: Sequence[str], load):
        self.paths = list(paths)
        self.load = load

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return self.load(self.paths[i])


class _DecodeTransform:
    """The same decode as the library's DecodeImage (PIL -> uint8 RGB array), then ``transform``."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, path: str):
        from modelzoo.image_io import read_image

        return self.transform(read_image(path))


def eager_loop(net, paths: Sequence[str], load, workers: int, threads: int, batch: int = 32, collect: bool = False):
    """The fastest plain loop: DataLoader workers decode + transform, eager forward. Returns (seconds, top1)."""
    import torch
    from torch.utils.data import DataLoader

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    top1: List[int] = []
    try:
        t = time.perf_counter()
        loader = DataLoader(_FileDataset(paths, load), batch_size=batch, num_workers=workers,
                            collate_fn=_collate_for(load), prefetch_factor=2 if workers else None)
        with torch.inference_mode():
            for x in loader:
                out = net(x)
                if collect:
                    top1.extend(out.argmax(1).tolist())
        return time.perf_counter() - t, top1
    finally:
        torch.set_num_threads(before)


def _collate_for(load):
    from torch.utils.data import default_collate

    if isinstance(load, _DecodeTransform):
        return default_collate
    return _StackTensors()


class _StackTensors:
    """Collates TorchImageModel's ImageInput items into one NCHW tensor."""

    def __call__(self, items):
        import torch

        return torch.stack([it.normalized() for it in items])


# -- helpers ---------------------------------------------------------------------------------


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def fmt(xs: Sequence[float]) -> str:
    return f"{med(xs):7.2f} s [min {min(xs):.2f}, max {max(xs):.2f}]"


def candidate_settings(cores: int) -> List[Tuple[int, int]]:
    """(num_workers, torch threads) pairs to sweep."""
    levels = sorted({1, max(1, cores // 2), cores})
    return [(w, t) for w in levels for t in levels]


def _tuning_defaults(model) -> Tuple[int, int]:
    from modelzoo.engine.tuning import default_threads, default_workers

    w = default_workers(model)
    return w, default_threads(model, w)


# -- the benchmark of one model --------------------------------------------------------------


def bench_model(
    arch: str, dataset, paths: Sequence[str], runs: int, batch: int, sweep_runs: int, only: bool = False,
    sweep_images: int = 0,
) -> Dict[str, Any]:

    model = EagerClassifier(arch)
    net = model.net
    load = _DecodeTransform(Preprocess())
    cores = len(os.sched_getaffinity(0))
    dflt = _tuning_defaults(model)
    print(f"\n## {arch}: {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M params, {len(paths)} images, "
          f"batch {batch}; static rules: num_workers={dflt[0]}, threads={dflt[1]} (apply_model calibrates "
          "on the first batch when no counts are given; its choice is in the log at INFO)")

    eager_loop(net, paths[:batch], load, 0, 1)  # warm-up (allocator, kernels)

    # sweep the floor's settings on a subset to find the best hand-set choice
    settings = candidate_settings(cores) if sweep_runs else [dflt]
    sweep_runs = max(1, sweep_runs)
    if dflt not in settings:
        settings.append(dflt)
    sweep: Dict[Tuple[int, int], List[float]] = {s: [] for s in settings}
    sweep_paths = paths[:sweep_images] if sweep_images else paths
    for r in range(sweep_runs):
        for s in (settings if r % 2 == 0 else settings[::-1]):
            sweep[s].append(eager_loop(net, sweep_paths, load, *s)[0])
    sweep_times = {s: med(v) for s, v in sweep.items()}
    best = min(sweep_times, key=sweep_times.get)
    print(f"  floor sweep on {len(sweep_paths)} images (workers, threads) -> median s of {sweep_runs}: " + ", ".join(
        f"{k}: {v:.2f}" for k, v in sorted(sweep_times.items(), key=lambda kv: kv[1])))

    if only:
        return {"arch": arch, "default": dflt, "best": best, "sweep": sweep}
    field = f"pred_{arch}"
    passes: Dict[str, Any] = {
        "floor(best)": lambda: eager_loop(net, paths, load, *best)[0],
        "apply(default)": lambda: _timed(lambda: mz.apply_model(dataset, model, field, batch_size=batch, progress=False)),
        "embed(default)": lambda: _timed(lambda: mz.compute_embeddings(dataset, model, batch_size=batch, progress=False)),
    }
    if best != dflt:
        passes["floor(default)"] = lambda: eager_loop(net, paths, load, *dflt)[0]
    # always timed: apply(default) calibrates its own counts, so it need not equal dflt
    passes["apply(best)"] = lambda: _timed(lambda: mz.apply_model(
        dataset, model, field, batch_size=batch, progress=False, num_workers=best[0], num_threads=best[1]))
    times = interleaved(passes, runs, len(paths), width=15)

    # the stored labels are the eager model's top-1
    _, top1 = eager_loop(net, paths, load, *best, collect=True)
    stored = dict(zip(dataset.values("filepath"), dataset.values(field)))
    mismatches = sum(stored[p].label != CLASSES[i] for p, i in zip(paths, top1))

    floor = times["floor(best)"]
    res = {"arch": arch, "default": dflt, "best": best, "times": times, "mismatches": mismatches}
    floor_med = min(med(floor), med(times.get("floor(default)", floor)))
    res["b/a"] = med(times["apply(default)"]) / floor_med
    res["c/a"] = med(times["embed(default)"]) / floor_med
    best_apply = min(med(times["apply(default)"]), med(times.get("apply(best)", times["apply(default)"])))
    res["default/best"] = med(times["apply(default)"]) / best_apply
    # pairwise ratios (same run index) as a check against drift
    res["b/a pairs"] = [b / a for a, b in zip(floor, times["apply(default)"])]
    res["c/a pairs"] = [c / a for a, c in zip(floor, times["embed(default)"])]
    print(f"  b/a apply/floor   = {res['b/a']:.3f} (pairwise {', '.join(f'{x:.3f}' for x in res['b/a pairs'])}) target <= 1.02")
    print(f"  c/a embed/floor   = {res['c/a']:.3f} (pairwise {', '.join(f'{x:.3f}' for x in res['c/a pairs'])}) target <= 1.02")
    print(f"  default/best apply = {res['default/best']:.3f} (calibrated default vs best hand-set {best}) target <= 1.05")
    print(f"  stored labels == eager top-1 on {len(paths) - mismatches}/{len(paths)} images")
    return res


def _timed(fn) -> float:
    t = time.perf_counter()
    report = fn()
    dt = time.perf_counter() - t
    if isinstance(report, mz.ApplyReport) and not report.ok:
        raise RuntimeError(f"run failed: {report}")
    return dt


def interleaved(passes: Dict[str, Any], runs: int, n_images: int, width: int = 22) -> Dict[str, List[float]]:
    """Runs every pass once per round, in order then reversed (A B, B A, ...),
    so host drift hits each alike; prints each one's times. Returns them."""
    times: Dict[str, List[float]] = {k: [] for k in passes}
    names = list(passes)
    for r in range(runs):
        for name in (names if r % 2 == 0 else names[::-1]):
            times[name].append(passes[name]())
    for name in names:
        print(f"  {name:{width}s} {fmt(times[name])} {n_images / med(times[name]):6.1f} img/s")
    return times


# -- TorchImageModel (optional) --------------------------------------------------------------


class _Prebuilt:
    """An entrypoint that returns a net built beforehand: the floor's net is
    built outside its timed region, so TorchImageModel's is too. What
    TorchImageModel does once the entrypoint returns (the processor check at
    load, optimize: copy, trace, freeze, verify) stays timed."""

    def __init__(self, net):
        self.net = net

    def __call__(self):
        return self.net


def torch_image_config(arch: str, net=None) -> Dict[str, Any]:
    """TorchImageModel's settings for ``arch``: default options otherwise."""
    return {
        # same seeded weights as the eager model
        "entrypoint_fcn": functools.partial(build_net, arch) if net is None else _Prebuilt(net),
        "output_processor_cls": "ClassifierOutputProcessor",
        "classes": CLASSES,
        "image_size": 224,
        "image_mean": list(MEAN),
        "image_std": list(STD),
        "device": "cpu",
    }


class _Counts(logging.Handler):
    """Collects the (workers, threads) the engine's calibration chose, per run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.chosen: List[Tuple[int, int]] = []
        self.demand: List[float] = []  # cores * load / (load + predict on one core): what the choice follows

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Measured"):
            args = record.args
            self.chosen.append(tuple(args[-2:]))  # type: ignore[index]
            load_ms, predict_ms, provisional_threads = float(args[0]), float(args[1]), int(args[3])  # type: ignore[index]
            one_core = predict_ms * provisional_threads
            self.demand.append(len(os.sched_getaffinity(0)) * load_ms / max(load_ms + one_core, 1e-9))


def bench_torch_image(arch: str, dataset, paths: Sequence[str], runs: int, batch: int, floor: Dict[str, Any],
                      stability: bool = False) -> None:
    """TorchImageModel (build included) against the eager floor at its best
    setting, interleaved in this run (A B, B A, ...): the host's speed drifts
    between the classifier passes above and these."""
    from modelzoo.torch_image import TorchImageModel

    t = time.perf_counter()
    model = TorchImageModel(torch_image_config(arch))
    print(f"\n## TorchImageModel {arch}: built in {time.perf_counter() - t:.1f} s, "
          f"optimization={getattr(model, 'optimization', '?')} {getattr(model, 'optimization_notes', '')}")
    field = f"ti_{arch}"
    net = build_net(arch)
    load = _DecodeTransform(Preprocess())
    best = floor["best"]

    def build_and_apply() -> None:  # the optimize warm-up (copy, trace, freeze, verify) counts
        m = TorchImageModel(torch_image_config(arch, net))
        return mz.apply_model(dataset, m, field, batch_size=batch, progress=False)

    passes = {
        f"floor{best}": lambda: eager_loop(net, paths, load, *best)[0],
        "build+apply(TorchImageModel)": lambda: _timed(build_and_apply),
    }
    counts = _Counts()
    engine_log = logging.getLogger("modelzoo.engine")
    engine_log.addHandler(counts)
    level = engine_log.level
    engine_log.setLevel(logging.INFO)
    try:
        times = interleaved(passes, runs, len(paths), width=30)
    finally:
        engine_log.removeHandler(counts)
        engine_log.setLevel(level)
    spread = lambda xs: (max(xs) - min(xs)) / med(xs)  # noqa: E731
    ours, eager = spread(times["build+apply(TorchImageModel)"]), spread(times[f"floor{best}"])
    print(f"  calibration chose (workers, threads) {counts.chosen}; "
          f"spread (max-min)/median: TorchImageModel {ours:.3f}, floor {eager:.3f}")
    if stability:
        verdict = "met" if ours <= eager + 0.05 else "NOT met"
        print(f"  stability over {runs} identical runs: TorchImageModel spread {ours:.3f} vs the eager loop's "
              f"{eager:.3f} + 0.05 = {eager + 0.05:.3f}: {verdict}; distinct calibration choices "
              f"{sorted(set(counts.chosen))}; measured decoding demand (cores) per run "
              f"{', '.join(f'{d:.2f}' for d in counts.demand)}")
    a, b = times[f"floor{best}"], times["build+apply(TorchImageModel)"]
    target = {"mobilenet_v3_small": 0.5, "resnet18": 0.7}.get(arch)
    pairs = ", ".join(f"{y / x:.3f}" for x, y in zip(a, b))
    print(f"  TorchImageModel/floor = {med(b) / med(a):.3f} (pairwise {pairs}) target <= {target}")
    # top-1 against the eager model fed TorchImageModel's own preprocessing
    _, top1 = eager_loop(net, paths, model.build_input_loader(), *best, collect=True)
    stored = dict(zip(dataset.values("filepath"), dataset.values(field)))
    same = sum(stored[p].label == CLASSES[i] for p, i in zip(paths, top1))
    print(f"  top-1 identical to eager on {same}/{len(paths)} images")


# -- peak RSS ---------------------------------------------------------------------------------


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB: ``VmHWM`` where /proc has it, else
    ``ru_maxrss``. (On Linux ``ru_maxrss`` survives exec, so a child spawned by
    a big parent reports at least the parent's size at the fork.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_child(dataset_name: str) -> None:
    """Runs in a subprocess: apply_model with TinyModel, prints peak RSS (KiB) as JSON."""
    import torch  # noqa: F401  (so that "after imports" counts it)

    ds = mz.load_dataset(dataset_name)
    base = _peak_rss_kib()
    t = time.perf_counter()
    report = mz.apply_model(ds, TinyModel(), "tiny", batch_size=32, progress=False)
    dt = time.perf_counter() - t
    print(json.dumps({
        "samples": report.processed, "seconds": dt, "rss_before_kib": base,
        "maxrss_kib": _peak_rss_kib(),
        "children_maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }))


def bench_rss(paths: Sequence[str], sizes: Sequence[int]) -> None:
    print("\n## peak RSS of apply_model (TinyModel, batch 32, default workers), each in a fresh process")
    results = {}
    for n in sizes:
        reps = -(-n // len(paths))
        ds = mz.Dataset(f"bench-rss-{n}-{os.getpid()}")
        ds.add_samples((list(paths) * reps)[:n])
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--rss-child", ds.name],
                             check=True, capture_output=True, text=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[n] = r
        print(f"  {n:6d} samples: peak RSS main {r['maxrss_kib'] / 1024:7.1f} MiB (after imports "
              f"{r['rss_before_kib'] / 1024:.1f}), workers {r['children_maxrss_kib'] / 1024:.1f} MiB, "
              f"{r['samples'] / r['seconds']:.0f} samples/s")
        ds.delete()
    lo, hi = min(sizes), max(sizes)
    print(f"  peak RSS {hi} / {lo} samples = {results[hi]['maxrss_kib'] / results[lo]['maxrss_kib']:.3f} (target <= 1.2)")


# -- dense models (--dense) -------------------------------------------------------------------

DENSE_SEG_SIZE = 320
DETECTOR_CLASSES = ["__background__"] + [f"class_{i}" for i in range(1, 91)]
SEG_CLASSES = [f"class_{i}" for i in range(21)]


def build_dense_net(arch: str):
    """A torchvision detector/segmenter, random init (seeded), eval mode.

    As for the classifiers, BatchNorm running statistics come from one forward
    pass in train mode on a seeded noise batch (the backbone only for the
    detector, whose train mode needs targets), so that activations do not
    vanish into denormals.
    """
    import torch
    import torchvision

    torch.manual_seed(0)
    if arch == "fasterrcnn_mobilenet_v3_large_320_fpn":
        net = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None)
        calib = net.backbone
    else:
        net = getattr(torchvision.models.segmentation, arch)(weights=None, weights_backbone=None)
        calib = net
    for m in calib.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    calib.train()
    with torch.no_grad():
        calib(torch.randn(4, 3, DENSE_SEG_SIZE, DENSE_SEG_SIZE, generator=torch.Generator().manual_seed(1)))
    return net.eval()


class _DetectorLoad:
    """filepath -> float (3, H, W) in [0, 1], no resize (the detector resizes internally)."""

    def __call__(self, path: str):
        import torch

        from modelzoo.image_io import read_image

        arr = read_image(path)
        if not arr.flags.writeable:
            arr = arr.copy()
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)


class _SegmenterLoad:
    """filepath -> normalized float (3, 320, 320): antialiased resize on the uint8 tensor, ImageNet mean/std."""

    def __init__(self, size: int = DENSE_SEG_SIZE):
        self.size = size

    def __call__(self, path: str):
        import torch
        import torchvision.transforms.v2.functional as TF

        from modelzoo.image_io import read_image

        arr = read_image(path)
        if not arr.flags.writeable:
            arr = arr.copy()
        t = torch.from_numpy(arr).permute(2, 0, 1)
        t = TF.resize(t, [self.size, self.size], antialias=True)
        x = t.to(torch.float32).div_(255.0).contiguous()
        return TF.normalize(x, list(MEAN), list(STD), inplace=True)


def _as_list(items):
    return list(items)


def _seg_forward(net, x):
    return net(x)["out"].argmax(1)


def dense_eager_loop(net, paths: Sequence[str], kind: str, workers: int, threads: int, batch: int) -> float:
    """The plain loop for a dense model: DataLoader workers decode (+ transform), eager forward, nothing written."""
    import torch
    from torch.utils.data import DataLoader, default_collate

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        if kind == "detection":
            load, collate = _DetectorLoad(), _as_list
        else:
            load, collate = _SegmenterLoad(), default_collate
        loader = DataLoader(_FileDataset(paths, load), batch_size=batch, num_workers=workers,
                            collate_fn=collate, prefetch_factor=2 if workers else None)
        with torch.inference_mode():
            for x in loader:
                if kind == "detection":
                    net(x)  # list of (3, H, W) tensors
                else:
                    _seg_forward(net, x)
        return time.perf_counter() - t
    finally:
        torch.set_num_threads(before)


def dense_config(kind: str, net=None) -> Dict[str, Any]:
    """TorchImageModel's settings for the dense benchmark: default options otherwise."""
    if kind == "detection":
        return {
            "entrypoint_fcn": _Prebuilt(net) if net is not None
            else functools.partial(build_dense_net, "fasterrcnn_mobilenet_v3_large_320_fpn"),
            "output_processor_cls": "DetectorOutputProcessor",
            "classes": DETECTOR_CLASSES,
            "device": "cpu",
        }
    return {
        "entrypoint_fcn": _Prebuilt(net) if net is not None else functools.partial(build_dense_net, "lraspp_mobilenet_v3_large"),
        "output_processor_cls": "SemanticSegmenterOutputProcessor",
        "classes": SEG_CLASSES,
        "image_size": (DENSE_SEG_SIZE, DENSE_SEG_SIZE),
        "image_mean": list(MEAN),
        "image_std": list(STD),
        "device": "cpu",
    }


DENSE_CASES = (
    # (kind, arch, images)
    ("detection", "fasterrcnn_mobilenet_v3_large_320_fpn", 96),
    ("segmentation", "lraspp_mobilenet_v3_large", 200),
)


def bench_dense(runs: int, batch: int, kinds: Sequence[str] = ("detection", "segmentation"),
                images: Optional[Dict[str, int]] = None) -> Dict[str, float]:
    """(a) the eager loop at its best of (1,1), (2,1), (1,2) vs (b) build + apply_model(TorchImageModel)."""
    from modelzoo.torch_image import TorchImageModel

    n_max = max(n for k, _, n in DENSE_CASES if k in kinds)
    n_max = max([n_max] + list((images or {}).values()))
    root = photo_dir(n_max)
    all_paths = list_photos(root)
    ratios: Dict[str, float] = {}
    for kind, arch, n in DENSE_CASES:
        if kind not in kinds:
            continue
        n = (images or {}).get(kind, n)
        paths = all_paths[:n]
        ds = mz.Dataset(f"bench-dense-{kind}-{os.getpid()}")
        ds.add_samples(paths)
        net = build_dense_net(arch)
        t = time.perf_counter()
        probe = TorchImageModel(dense_config(kind))
        build_s = time.perf_counter() - t
        dflt = _tuning_defaults(probe)
        print(f"\n## dense {kind}: {arch}, {sum(p.numel() for p in net.parameters()) / 1e6:.1f} M params, "
              f"{len(paths)} images, batch {batch}; TorchImageModel built in {build_s:.1f} s, "
              f"optimization={probe.optimization} {probe.optimization_notes}; static rules {dflt}")
        del probe

        dense_eager_loop(net, paths[:batch], kind, 0, 1, batch)  # warm-up
        field = f"dense_{kind}"

        def build_and_apply(kind=kind, net=net, ds=ds, field=field) -> None:  # the build (and its optimize verification) counts
            m = TorchImageModel(dense_config(kind, net))
            return mz.apply_model(ds, m, field, batch_size=batch, progress=False)

        # every floor setting runs in every round (a one-pass sweep on a few
        # images picked the wrong one on this noisy host); the floor is the
        # setting with the best median
        settings = ((1, 1), (2, 1), (1, 2))
        passes = {f"floor{s}": functools.partial(dense_eager_loop, net, paths, kind, *s, batch) for s in settings}
        passes["build+apply(default)"] = lambda: _timed(build_and_apply)
        times = interleaved(passes, runs, len(paths))
        names = list(passes)
        best_floor = min(names[:-1], key=lambda n: med(times[n]))
        a, b = times[best_floor], times[names[-1]]
        ratios[kind] = med(b) / med(a)
        pairs = ", ".join(f"{y / x:.3f}" for x, y in zip(a, b))
        print(f"  {kind} b/a TorchImageModel/{best_floor} = {ratios[kind]:.3f} (pairwise {pairs}) target <= 1.0")
        stored = [v for v in ds.values(field) if v is not None]
        print(f"  labels stored on {len(stored)}/{len(paths)} samples ({type(stored[0]).__name__ if stored else '-'})")
        ds.delete()
    return ratios


# -- the zoo path (--zoo) -----------------------------------------------------------------------

ZOO_BATCH = 16  # the engine's default batch size


class _FullSizeNormalize:
    """uint8 HWC RGB array -> float (3, H, W): scaled to [0, 1] and ImageNet-normalized, no resize."""

    def __call__(self, image: Any):
        import torch
        import torchvision.transforms.v2.functional as TF

        if not image.flags.writeable:
            image = image.copy()
        x = torch.from_numpy(image).permute(2, 0, 1).to(torch.float32).div_(255.0)
        return TF.normalize(x, list(MEAN), list(STD))


def _seeded_resnet50_entry(tmp: str) -> Tuple[str, Any]:
    """Registers ``bench-resnet50-seeded``: resnet50-imagenet-torch's settings, seeded weights."""
    import torch

    from modelzoo.checksum import sha256_file

    net = build_net("resnet50")
    path = os.path.join(tmp, "resnet50-seeded.pth")
    torch.save(net.state_dict(), path)
    config = dict(mz.get_zoo_model_info("resnet50-imagenet-torch").model.config)
    config.pop("labels_path", None)
    config.update(weights_path=path, weights_sha256=sha256_file(path), classes=CLASSES)
    mz.register_zoo_model("bench-resnet50-seeded", config, overwrite=True)
    return "bench-resnet50-seeded", net


def _mobilenet_v2_net():
    import torch
    import torchvision

    import modelzoo.zoo as zoo

    path = zoo.download_zoo_model("mobilenet-v2-imagenet-torch")
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def bench_zoo(runs: int, n_mobilenet: int, n_resnet: int) -> Dict[str, float]:
    """load_zoo_model(name) + apply_model (no options) vs the eager floor, interleaved."""
    import modelzoo.zoo as zoo

    ratios: Dict[str, float] = {}
    tmp = tempfile.mkdtemp(prefix="bench-zoo-")
    cases = [("mobilenet-v2-imagenet-torch", _mobilenet_v2_net, n_mobilenet, 0.5)]
    resnet_name = ""
    if n_resnet:
        resnet_name, resnet_net = _seeded_resnet50_entry(tmp)
        cases.append((resnet_name, lambda: resnet_net, n_resnet, 0.75))
    all_paths = list_photos(photo_dir(max(n_mobilenet, n_resnet)))
    load = _DecodeTransform(_FullSizeNormalize())
    for name, make_net, n, target in cases:
        paths = all_paths[:n]
        ds = mz.Dataset(f"bench-zoo-{os.getpid()}-{name}")
        ds.add_samples(paths)
        net = make_net()
        cfg = zoo.get_zoo_model_info(name).model.config
        print(f"\n## zoo {name}: {len(paths)} images, image_min_dim {cfg.get('image_min_dim')}, "
              f"image_max_dim {cfg.get('image_max_dim')}, floor batch {ZOO_BATCH}")
        eager_loop(net, paths[:ZOO_BATCH], load, 0, 1, ZOO_BATCH)  # warm-up

        def load_and_apply(name=name, ds=ds) -> Any:
            model = mz.load_zoo_model(name)
            return ds.apply_model(model, "zoo", progress=False)

        def floor(setting: Tuple[int, int], net=net, paths=paths) -> float:
            return eager_loop(net, paths, load, *setting, ZOO_BATCH)[0]

        settings = {f"floor{s}": s for s in ((1, 2),)}  # forward-bound: (1, 2) beat (1, 1) and (2, 1) here
        passes: Dict[str, Any] = {k: functools.partial(floor, s) for k, s in settings.items()}
        passes["load_zoo_model+apply"] = lambda load_and_apply=load_and_apply: _timed(load_and_apply)
        times = interleaved(passes, runs, len(paths), width=24)
        names = list(passes)
        best = min(names[:-1], key=lambda k: med(times[k]))
        a, b = times[best], times[names[-1]]
        ratios[name] = med(b) / med(a)
        pairs = ", ".join(f"{y / x:.3f}" for x, y in zip(a, b))
        model = mz.load_zoo_model(name)
        model.prepare(len(paths))
        print(f"  {name}: (load_zoo_model+apply)/{best} = {ratios[name]:.3f} (pairwise {pairs}) target <= {target}; "
              f"optimization chosen: {model.optimization}")
        _, top1 = eager_loop(net, paths, load, *settings[best], ZOO_BATCH, collect=True)
        stored = dict(zip(ds.values("filepath"), ds.values("zoo")))
        classes = model.classes
        same = sum(stored[p].label == classes[i] for p, i in zip(paths, top1))
        print(f"  top-1 identical to the eager floor on {same}/{len(paths)} images")
        ds.delete()
    if resnet_name:
        mz.unregister_zoo_model(resnet_name)
    return ratios


# -- main -------------------------------------------------------------------------------------


def _print_dense(ratios: Dict[str, float]) -> None:
    print("\n# dense summary (TorchImageModel build+apply / best eager loop, target <= 1.0)")
    for kind, r in ratios.items():
        print(f"  {kind:14s} b/a {r:.3f}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--models", nargs="*", default=["mobilenet_v3_small", "resnet18"],
                   help="classifiers to time (none: skip the classifier benchmark)")
    p.add_argument("--sweep-runs", type=int, default=2,
                   help="passes per (workers, threads) setting in the floor sweep; 0: no sweep, the defaults only")
    p.add_argument("--sweep-images", type=int, default=256,
                   help="images per sweep pass (the first N; 0: all); the best setting is then timed on all")
    p.add_argument("--sweep-only", action="store_true", help="only the floor sweep (for tuning work)")
    p.add_argument("--rss-sizes", type=int, nargs="*", default=[1000, 20000], help="empty: skip the RSS check")
    p.add_argument("--torch-image", action="store_true", help="also time modelzoo.torch_image.TorchImageModel")
    p.add_argument("--torch-image-only", action="store_true",
                   help="only the floor sweep and TorchImageModel against the floor (~3 min per model)")
    p.add_argument("--dense", action="store_true",
                   help="also time a torchvision detector and segmenter: eager loop vs TorchImageModel")
    p.add_argument("--dense-only", action="store_true", help="only the --dense benchmark")
    p.add_argument("--dense-batch", type=int, default=8, help="batch size for --dense (default 8)")
    p.add_argument("--dense-images", type=int, nargs=2, metavar=("DET", "SEG"), default=[96, 200],
                   help="images for the detector and the segmenter (default 96 200)")
    p.add_argument("--zoo", action="store_true", help="also time load_zoo_model + apply_model (no options)")
    p.add_argument("--zoo-only", action="store_true", help="only the --zoo benchmark")
    p.add_argument("--zoo-resnet-images", type=int, default=256,
                   help="images for the seeded resnet50 (default 256; 0: skip it)")
    p.add_argument("--stability", type=int, metavar="N", default=0,
                   help="only the run-to-run spread: N identical runs of TorchImageModel mobilenet_v3_small "
                        "alternating with its eager loop (after the floor sweep); (max - min) / median of each, "
                        "target: ours <= the eager loop's + 0.05")
    p.add_argument("--quick", action="store_true", help="smoke run: 128 images, 2 runs, RSS 500 vs 2,000")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child)
    if args.quick:
        args.images, args.runs, args.sweep_runs = 128, 2, min(args.sweep_runs, 1)
        args.rss_sizes = [500, 2000] if args.rss_sizes else []

    from modelzoo import db

    with db.temporary():  # a private server, stopped and removed at the end (even on Ctrl-C)
        _main(args)


def _main(args: argparse.Namespace) -> None:
    import torch

    if args.zoo_only:
        print(f"# bench_apply --zoo-only: cpus={len(os.sched_getaffinity(0))}, torch {torch.__version__}, runs={args.runs}")
        _print_zoo(bench_zoo(args.runs, args.images, args.zoo_resnet_images))
        return
    if args.dense_only:
        print(f"# bench_apply --dense-only: cpus={len(os.sched_getaffinity(0))}, torch {torch.__version__}, "
              f"runs={args.runs}, batch {args.dense_batch}")
        _print_dense(bench_dense(args.runs, args.dense_batch,
                                 images=dict(zip(("detection", "segmentation"), args.dense_images))))
        return
    root = photo_dir(args.images)
    paths = list_photos(root)
    dataset = mz.Dataset.from_images_dir(root, name=f"bench-apply-{os.getpid()}")
    if args.stability:
        arch = "mobilenet_v3_small"
        print(f"# bench_apply --stability {args.stability}: {len(paths)} JPEGs, {arch}, batch {args.batch}, "
              f"cpus={len(os.sched_getaffinity(0))}, load {os.getloadavg()[0]:.1f}")
        floor = bench_model(arch, dataset, paths, 1, args.batch, args.sweep_runs, True, args.sweep_images)
        bench_torch_image(arch, dataset, paths, args.stability, args.batch, floor, stability=True)
        print(f"# load after: {os.getloadavg()[0]:.1f}")
        return
    print(f"# bench_apply: {len(paths)} JPEGs {SIZE[0]}x{SIZE[1]} in {root}; "
          f"cpus={len(os.sched_getaffinity(0))}, torch {torch.__version__}, runs={args.runs}")
    results = {}
    for arch in args.models:
        results[arch] = bench_model(arch, dataset, paths, args.runs, args.batch, args.sweep_runs,
                                    args.sweep_only or args.torch_image_only, args.sweep_images)
        if args.torch_image_only:
            bench_torch_image(arch, dataset, paths, args.runs, args.batch, results[arch])
    if args.sweep_only or args.torch_image_only:
        return
    if args.torch_image:
        import importlib.util

        if importlib.util.find_spec("modelzoo.torch_image") is None:
            print("\n## --torch-image: modelzoo.torch_image is not importable; skipped")
        else:
            for arch in args.models:
                bench_torch_image(arch, dataset, paths, args.runs, args.batch, results[arch])
    dense: Dict[str, float] = {}
    if args.dense:
        dense = bench_dense(args.runs, args.dense_batch,
                            images=dict(zip(("detection", "segmentation"), args.dense_images)))
    zoo_ratios: Dict[str, float] = {}
    if args.zoo:
        zoo_ratios = bench_zoo(args.runs, args.images, args.zoo_resnet_images)
    if args.rss_sizes:
        bench_rss(paths, args.rss_sizes)
    print("\n# summary")
    for arch, r in results.items():
        print(f"  {arch:20s} b/a {r['b/a']:.3f}  c/a {r['c/a']:.3f}  default/best {r['default/best']:.3f} "
              f"(calibrated default vs best hand-set {r['best']}), label mismatches {r['mismatches']}")
    if dense:
        _print_dense(dense)
    if zoo_ratios:
        _print_zoo(zoo_ratios)


def _print_zoo(ratios: Dict[str, float]) -> None:
    print("\n# zoo summary (load_zoo_model + apply_model / eager floor; targets 0.5 mobilenet-v2, 0.75 resnet50)")
    for name, r in ratios.items():
        print(f"  {name:30s} {r:.3f}")


if __name__ == "__main__":
    main()
