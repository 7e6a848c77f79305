"""How long listing the whole zoo takes in a fresh interpreter (issues #22, #23: under 1 s).

Each round starts a new Python process that imports modelzoo, then times
``list_zoo_models()`` (every source: torchvision, timm, transformers,
Ultralytics, manifests, registrations) and ``get_zoo_model_info`` of one
entry per library source, and reports which of torch, torchvision, timm,
transformers and ultralytics ended up imported (none should). Prints the
median over the rounds of each, and of ``import modelzoo`` as a reference.

    python benchmarks/bench_zoo_list.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import json, sys, time
t0 = time.perf_counter()
import modelzoo
t1 = time.perf_counter()
names = modelzoo.list_zoo_models()
t2 = time.perf_counter()
for name in ("torchvision/resnet50", "timm/resnet18.a1_in1k", "yolov8n-coco-torch", "hf/google/vit-base-patch16-224"):
    try:
        modelzoo.get_zoo_model_info(name)
    except modelzoo.ModelzooError:
        pass  # a source whose library is not installed
t3 = time.perf_counter()
heavy = [m for m in ("torch", "torchvision", "timm", "transformers", "ultralytics") if m in sys.modules]
print(json.dumps({"import_s": t1 - t0, "list_s": t2 - t1, "info_s": t3 - t2, "n": len(names), "heavy": heavy}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT}
    runs = []
    for _ in range(args.rounds):
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(r[k] for r in runs) for k in ("import_s", "list_s", "info_s")}
    heavy = sorted({m for r in runs for m in r["heavy"]})
    print(f"{runs[0]['n']} names, {args.rounds} fresh processes (medians)")
    print("| step | median | min | max |\n| --- | --- | --- | --- |")
    for key, label in (("import_s", "import modelzoo"), ("list_s", "list_zoo_models()"),
                       ("info_s", "get_zoo_model_info x4")):
        values = [r[key] for r in runs]
        print(f"| {label} | {med[key] * 1000:.0f} ms | {min(values) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |")
    print(f"heavy libraries imported: {heavy or 'none'}")
    print(f"listing under 1 s: {'yes' if med['list_s'] < 1.0 else 'NO'} (median {med['list_s']:.3f} s)")


if __name__ == "__main__":
    main()
