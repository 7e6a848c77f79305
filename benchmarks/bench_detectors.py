#!/usr/bin/env python
"""A torchvision detector through modelzoo (default options) against its
plain eager loop, on real photographs, with the equivalence of the labels.

The detector: torchvision's Faster R-CNN configured as
``fasterrcnn_mobilenet_v3_large_320_fpn`` (FPN, 320 px, 150 proposals) on an
ImageNet MobileNetV2 body, trained (:mod:`modelzoo.testing_shapes`: seeded,
``--steps`` SGD steps, cached) to find rectangles, ellipses and triangles
pasted into photographs, because no trained torchvision detection weights can
be had offline and a random detector's near-tied scores make any comparison
meaningless. The photos:
``--images`` 640x480 JPEGs cut from scikit-image's photographs (as
bench_apply.py makes them), each with 1-4 shapes pasted in; the detector was
trained on other crops (48 backgrounds) and other shapes.

(a) the eager loop: a plain DataLoader (workers decode to float ``(3, H, W)``
    in [0, 1]) feeding the eager torchvision model lists of ``--batch``
    images under ``torch.inference_mode``, writing nothing; at (workers,
    threads) (1, 1), (2, 1) and (1, 2) every round, the best median is the floor;
(b) ``TorchImageModel`` built on the same net (its load work timed:
    processor check, and at ``apply_model``'s prepare the fast detector's
    build and verification) + ``apply_model`` writing Detections, default
    options.

Rounds are interleaved (A B C D, D C B A, ...); the script prints medians,
b / floor (target <= 0.7) and the equivalence of (b)'s stored labels with
the eager model's outputs on every photo, computed here, independently of
the library: the share of eager's boxes with score >= 0.3 found again with
the same label at IoU >= 0.95 (target >= 0.99), and COCO mAP@[.5:.95]
(pycocotools) of (b)'s detections scored against eager's boxes with score >=
0.3 as the ground truth (target >= 0.99). The markdown table goes into
docs/performance.md between ``<!-- BEGIN detectors -->`` and ``<!-- END
detectors -->`` (``--no-write`` to skip).

Usage::

    .venv/bin/python benchmarks/bench_detectors.py            # ~8 min on a quiet 2-core host (first run trains: +5 min)
    .venv/bin/python benchmarks/bench_detectors.py --images 32 --runs 1 --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import re
import sys
import tempfile
import time
from typing import Any, Dict, List, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the repository, for a run without an install
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from bench_apply import (  # noqa: E402
    _as_list,
    _cache_root,
    _DetectorLoad,
    _FileDataset,
    _Prebuilt,
    _timed,
    fmt,
    list_photos,
    med,
    photo_dir,
)
from PIL import Image  # noqa: E402

import modelzoo as mz  # noqa: E402

TRAIN_BACKGROUNDS = 48
SCORE, IOU = 0.3, 0.95
DOC = os.path.join(os.path.dirname(HERE), "docs", "performance.md")


def scene_dir(n: int) -> Tuple[str, List[str]]:
    """``n`` photos with shapes pasted in (cached JPEGs), and the training backgrounds' paths."""
    from modelzoo.testing_shapes import shapes_scene

    photos = list_photos(photo_dir(TRAIN_BACKGROUNDS + n))
    train, rest = photos[:TRAIN_BACKGROUNDS], photos[TRAIN_BACKGROUNDS:]
    root = os.path.join(_cache_root(), f"shapes-scenes-640x480-n{n}")
    if not (os.path.isdir(root) and len(os.listdir(root)) == n):
        tmp = tempfile.mkdtemp(prefix="scenes-", dir=_cache_root())
        for i, path in enumerate(rest):
            image, _, _ = shapes_scene(np.asarray(Image.open(path).convert("RGB")), 10_000 + i)
            Image.fromarray(image).save(os.path.join(tmp, f"scene_{i:05d}.jpg"), quality=90)
        if os.path.isdir(root):
            import shutil

            shutil.rmtree(root)
        os.replace(tmp, root)
    return root, train


def build_detector(train_paths: Sequence[str], steps: int):
    from modelzoo.testing_shapes import shapes_detector

    backgrounds = [np.asarray(Image.open(p).convert("RGB")) for p in train_paths]
    t = time.perf_counter()
    net = shapes_detector(
        backgrounds, os.path.join(_cache_root(), "detectors"), steps=steps,
        log=lambda s, loss: print(f"  training step {s}: loss {loss:.3f} ({time.perf_counter() - t:.0f} s)", flush=True),
    )
    return net


def eager_loop(net, paths: Sequence[str], workers: int, threads: int, batch: int, collect: bool = False):
    """DataLoader workers decode, the eager detector runs lists of images; nothing written."""
    import torch
    from torch.utils.data import DataLoader

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    outputs: List[Dict[str, Any]] = []
    try:
        t = time.perf_counter()
        loader = DataLoader(_FileDataset(paths, _DetectorLoad()), batch_size=batch, num_workers=workers,
                            collate_fn=_as_list, prefetch_factor=2 if workers else None)
        with torch.inference_mode():
            for x in loader:
                out = net(x)
                if collect:
                    outputs.extend(out)
        return (time.perf_counter() - t) if not collect else outputs
    finally:
        torch.set_num_threads(before)


def model_config(net) -> Dict[str, Any]:
    from modelzoo.testing_shapes import shapes_classes

    return {
        "entrypoint_fcn": _Prebuilt(net),
        "output_processor_cls": "DetectorOutputProcessor",
        "classes": shapes_classes(),
        "raw_inputs": True,
        "device": "cpu",
    }


# -- equivalence, computed here (numpy IoU, pycocotools) --------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of x1y1x2y2 boxes (N, 4) x (M, 4)."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def equivalence(fast: List[Tuple[np.ndarray, List[str], np.ndarray]],
                eager: List[Tuple[np.ndarray, List[str], np.ndarray]]) -> Dict[str, float]:
    """fast / eager: per image (boxes x1y1x2y2 in pixels, labels, scores)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    matched = total = 0
    names = sorted({lab for _, labels, _ in eager + fast for lab in labels})
    cat = {n: i + 1 for i, n in enumerate(names)}
    gt = {"images": [], "annotations": [], "categories": [{"id": i, "name": n} for n, i in cat.items()]}
    dets = []
    for img_id, ((fb, fl, fs), (eb, el, es)) in enumerate(zip(fast, eager), start=1):
        gt["images"].append({"id": img_id, "width": 640, "height": 480})
        order = np.argsort(-es)
        used = np.zeros(len(fb), dtype=bool)
        iou = _iou(eb, fb) if len(eb) and len(fb) else np.zeros((len(eb), len(fb)))
        for i in order:
            if es[i] < SCORE:
                continue
            total += 1
            gt["annotations"].append({
                "id": len(gt["annotations"]) + 1, "image_id": img_id, "category_id": cat[el[i]],
                "bbox": [float(eb[i, 0]), float(eb[i, 1]), float(eb[i, 2] - eb[i, 0]), float(eb[i, 3] - eb[i, 1])],
                "area": float((eb[i, 2] - eb[i, 0]) * (eb[i, 3] - eb[i, 1])), "iscrowd": 0,
            })
            cands = [j for j in range(len(fb)) if not used[j] and fl[j] == el[i]]
            if cands:
                j = max(cands, key=lambda j: iou[i, j])
                if iou[i, j] >= IOU:
                    used[j] = True
                    matched += 1
        for j in range(len(fb)):
            dets.append({"image_id": img_id, "category_id": cat[fl[j]], "score": float(fs[j]),
                         "bbox": [float(fb[j, 0]), float(fb[j, 1]), float(fb[j, 2] - fb[j, 0]), float(fb[j, 3] - fb[j, 1])]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets) if dets else COCO(), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"matched": matched, "total": total, "fraction": matched / total if total else float("nan"),
            "map": float(ev.stats[0]), "map50": float(ev.stats[1])}


def stored_detections(ds, field: str, paths: Sequence[str]) -> List[Tuple[np.ndarray, List[str], np.ndarray]]:
    by_path = dict(zip(ds.values("filepath"), ds.values(field)))
    out = []
    for p in paths:
        dets = by_path[os.path.abspath(p)].detections if by_path.get(os.path.abspath(p)) is not None else []
        b = np.array([d.bounding_box for d in dets], dtype=np.float64).reshape(-1, 4) * [640, 480, 640, 480]
        b[:, 2:] += b[:, :2]
        out.append((b, [d.label for d in dets], np.array([d.confidence for d in dets])))
    return out


def eager_detections(outputs, classes: Sequence[str]) -> List[Tuple[np.ndarray, List[str], np.ndarray]]:
    return [(o["boxes"].double().numpy().clip([0, 0, 0, 0], [640, 480, 640, 480]),
             [classes[int(k)] for k in o["labels"]], o["scores"].numpy()) for o in outputs]


# -- the run -----------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def interleaved_cpu(passes: Dict[str, Any], runs: int, n_images: int) -> Tuple[Dict[str, List[float]], Dict[str, List[float]]]:
    """As bench_apply.interleaved, also recording each pass's CPU seconds
    (this process and its DataLoader workers, which finish with the pass): on
    a loaded host the work done is steadier than the wall time."""
    times: Dict[str, List[float]] = {k: [] for k in passes}
    cpu: Dict[str, List[float]] = {k: [] for k in passes}
    names = list(passes)
    for r in range(runs):
        for name in (names if r % 2 == 0 else names[::-1]):
            c = _cpu_seconds()
            times[name].append(passes[name]())
            cpu[name].append(_cpu_seconds() - c)
    for name in names:
        print(f"  {name:22s} {fmt(times[name])} {n_images / med(times[name]):6.2f} img/s; CPU {med(cpu[name]):7.1f} s")
    return times, cpu



def run(n: int, runs: int, batch: int, steps: int) -> Dict[str, Any]:
    import torch

    from modelzoo.testing_shapes import shapes_classes
    from modelzoo.torch_image import TorchImageModel

    root, train = scene_dir(n)
    paths = list_photos(root)
    net = build_detector(train, steps)
    print(f"## Faster R-CNN 320 FPN, ImageNet MobileNetV2 body, shapes-trained, {len(paths)} photos 640x480, batch {batch}, "
          f"cpus {len(os.sched_getaffinity(0))}, torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}")
    ds = mz.Dataset(f"bench-detectors-{os.getpid()}")
    ds.add_samples(paths)
    built: Dict[str, Any] = {}

    def build_and_apply() -> Any:
        t = time.perf_counter()
        m = TorchImageModel(model_config(net))
        m.prepare(len(paths))  # what apply_model does first; timed apart to report the build's share
        built.setdefault("build_s", []).append(time.perf_counter() - t)
        report = mz.apply_model(ds, m, "det", batch_size=batch, progress=False)
        built["model"] = m
        return report

    eager_loop(net, paths[:batch], 0, 1, batch)  # warm-up
    settings = ((1, 1), (2, 1), (1, 2))
    passes: Dict[str, Any] = {f"eager{s}": functools.partial(eager_loop, net, paths, *s, batch) for s in settings}
    passes["modelzoo(default)"] = lambda: _timed(build_and_apply)
    loads = [os.getloadavg()[0]]
    times, cpu = interleaved_cpu(passes, runs, len(paths))
    loads.append(os.getloadavg()[0])
    names = list(passes)
    floor = min(names[:-1], key=lambda k: med(times[k]))
    ratio = med(times[names[-1]]) / med(times[floor])
    model = built["model"]
    build_s = med(built["build_s"])
    cpu_ratio = med(cpu[names[-1]]) / med(cpu[floor])
    print(f"  CPU seconds (this process and its finished workers): modelzoo / {floor} = {cpu_ratio:.3f}")
    print(f"  modelzoo / {floor} = {ratio:.3f} (target <= 0.7); optimization={model.optimization} {model.optimization_notes}")
    print(f"  of which the model's build + fast-path build and verification: {build_s:.1f} s; "
          f"without it {(med(times[names[-1]]) - build_s) / med(times[floor]):.3f}")

    reference = eager_detections(eager_loop(net, paths, 0, torch.get_num_threads(), batch, collect=True), shapes_classes())
    eq = equivalence(stored_detections(ds, "det", paths), reference)
    print(f"  equivalence: {eq['matched']}/{eq['total']} eager boxes (score >= {SCORE}) found at IoU >= {IOU} with "
          f"the same label ({eq['fraction']:.4f}, target >= 0.99); COCO mAP vs eager {eq['map']:.4f} (target >= 0.99), "
          f"mAP@0.5 {eq['map50']:.4f}")
    ds.delete()
    return {"n": len(paths), "batch": batch, "runs": runs, "floor": floor, "floor_s": med(times[floor]),
            "fast_s": med(times[names[-1]]), "ratio": ratio, "times": times, "eq": eq, "kind": model.optimization,
            "build_s": build_s, "cpu_ratio": cpu_ratio, "floor_cpu": med(cpu[floor]), "fast_cpu": med(cpu[names[-1]]),
            "loads": loads}


def table(r: Dict[str, Any]) -> str:
    eq = r["eq"]
    lines = [
        f"`benchmarks/bench_detectors.py --images {r['n']} --runs {r['runs']}`: "
        f"torchvision Faster R-CNN as `fasterrcnn_mobilenet_v3_large_320_fpn` builds it, on an ImageNet "
        f"MobileNetV2 body, trained on shapes pasted into photographs (`modelzoo.testing_shapes`), "
        f"{r['n']} other photos 640x480 with other shapes, batch {r['batch']}, "
        f"{len(os.sched_getaffinity(0))} cpus, load average {r['loads'][0]:.1f}-{r['loads'][1]:.1f}; medians of "
        f"{r['runs']} interleaved rounds.",
        "",
        "| path | time | ratio to the eager loop | CPU seconds (ratio) | eager boxes (score >= 0.3) matched at IoU >= 0.95 | COCO mAP vs eager |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| eager loop {r['floor']} (best of (1,1), (2,1), (1,2)) | {r['floor_s']:.1f} s | 1.00 | {r['floor_cpu']:.0f} | | |",
        f"| modelzoo, default options (`{r['kind']}`), build + apply_model (build and verification "
        f"{r['build_s']:.1f} s) | {r['fast_s']:.1f} s | **{r['ratio']:.2f}** "
        f"(target <= 0.7) | {r['fast_cpu']:.0f} ({r['cpu_ratio']:.2f}) | {eq['matched']}/{eq['total']} = {eq['fraction']:.4f} (target >= 0.99) | "
        f"{eq['map']:.4f} (target >= 0.99) |",
    ]
    return "\n".join(lines)


def write_doc(text: str, name: str = "detectors", path: str = DOC) -> None:
    with open(path) as f:
        doc = f.read()
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)
    print(f"wrote the table into {path}")


def main(argv: Any = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=100, help="training steps of the shapes detector (cached)")
    p.add_argument("--no-write", action="store_true", help="do not write the table into docs/performance.md")
    args = p.parse_args(argv)
    from modelzoo import db

    with db.temporary():  # a private server, stopped and removed at the end
        result = run(args.images, args.runs, args.batch, args.steps)
    text = table(result)
    print()
    print(text)
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
