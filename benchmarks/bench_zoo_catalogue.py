#!/usr/bin/env python
"""Default speed across the torchvision catalogue: eager vs the zoo's
default (``optimize="auto"`` as ``apply_model`` uses it on a long run) for
every torchvision classifier, ms/image on 224x224 photographs.

For each ``torchvision/<builder>`` classifier (its DEFAULT weights'
preprocessing, seeded random weights: ``pretrained=False``, so nothing is
downloaded; the speed of a network does not depend on its weights' values):

- ``eager``: ``load_zoo_model(name, pretrained=False, optimize=False)``;
- ``default``: ``load_zoo_model(name, pretrained=False)`` then
  ``model.prepare(n)`` with ``n`` past the auto threshold, as ``apply_model``
  calls it before a long run; ``kind`` is what auto chose (a verified
  graph, channels_last, or eager when nothing verified or gained);
- ms/image of ``predict_all`` on a batch of ``--batch`` real photographs
  resized to 224x224 (the entry's own resize and crop included),
  interleaved eager/default runs, medians over ``--runs``;
- ``warnings``: Python warnings and WARNING log records emitted while
  the default model was prepared and run (a model that cannot be traced
  must cost one log line, not a storm).

Writes a Markdown table (``--output``) and prints it. The full catalogue
takes long on a small CPU; pass ``--models`` to measure some::

    .venv/bin/python benchmarks/bench_zoo_catalogue.py --models mobilenet_v3_small squeezenet1_1 shufflenet_v2_x0_5
    .venv/bin/python benchmarks/bench_zoo_catalogue.py --output docs/zoo-catalogue-speed.md   # every classifier
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry")


def classifiers() -> List[str]:
    """Every ``torchvision/<builder>`` classifier of the zoo's catalogue."""
    from modelzoo.zoo.torchvision_source import read_catalog

    return [b["builder"] for b in read_catalog()["builders"] if b["task"] == "classification"]


def photos(n: int, size: int = 224) -> List[Any]:
    import numpy as np
    import skimage.data
    from PIL import Image

    out = []
    for i in range(n):
        img = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
        pil = Image.fromarray(img).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        out.append(np.asarray(pil))
    return out


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _ms_per_image(model: Any, batch: Sequence[Any]) -> float:
    t = time.perf_counter()
    model.predict_all(batch)
    return 1000.0 * (time.perf_counter() - t) / len(batch)


def measure(builder: str, batch: Sequence[Any], runs: int) -> Dict[str, Any]:
    import torch

    import modelzoo as mz

    name = f"torchvision/{builder}"
    eager = mz.load_zoo_model(name, pretrained=False, device="cpu", optimize=False)
    handler = _Count()
    logging.getLogger("modelzoo").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            default = mz.load_zoo_model(name, pretrained=False, device="cpu")
            t = time.perf_counter()
            default.prepare(10**6)  # what apply_model does before a long run
            build_s = time.perf_counter() - t
            with torch.inference_mode():
                eager.predict_all(batch[:2])
                default.predict_all(batch[:2])  # warm-up (a fused graph compiles on first use)
                e, d = [], []
                for _ in range(runs):  # interleaved
                    e.append(_ms_per_image(eager, batch))
                    d.append(_ms_per_image(default, batch))
    finally:
        logging.getLogger("modelzoo").removeHandler(handler)
    return {
        "builder": builder,
        "eager": statistics.median(e),
        "default": statistics.median(d),
        "kind": getattr(default, "optimization", "?"),
        "build_s": build_s,
        "warnings": len(caught) + len(handler.records),
    }


def table(rows: Sequence[Dict[str, Any]], runs: int, batch: int) -> str:
    import platform

    import torch

    lines = [
        f"torchvision classifiers, 224x224 photographs, batch {batch}, medians of {runs} interleaved runs, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}.",
        "",
        "| model | eager ms/image | default ms/image | default / eager | default is | build s | warnings |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| `torchvision/{r['builder']}` | {r['eager']:.1f} | {r['default']:.1f} | {r['default'] / r['eager']:.2f} "
            f"| {r['kind']} | {r['build_s']:.1f} | {r['warnings']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", metavar="BUILDER", help="torchvision builders (default: every classifier)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--output", help="write the Markdown table here too")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    names = args.models or classifiers()
    unknown = sorted(set(names) - set(classifiers()))
    if unknown:
        parser.error(f"not torchvision classifiers of the catalogue: {', '.join(unknown)}")
    batch = photos(args.batch)
    rows = []
    for builder in names:
        row = measure(builder, batch, args.runs)
        rows.append(row)
        print(f"{builder}: eager {row['eager']:.1f} ms, default {row['default']:.1f} ms ({row['kind']}), "
              f"{row['warnings']} warnings", file=sys.stderr, flush=True)
    text = table(rows, args.runs, args.batch)
    print(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
