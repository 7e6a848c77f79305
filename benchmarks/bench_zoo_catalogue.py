#!/usr/bin/env python
"""Default speed across the torchvision catalogue: eager vs the zoo's
default (``optimize="auto"`` as ``apply_model`` decides it for a long run)
for every torchvision classifier, ms/image at 224x224.

For each torchvision classifier of the zoo's index
(``modelzoo/zoo/catalogs/torchvision.json``), with seeded random weights
(``pretrained=False``: nothing is downloaded; a network's speed does not
depend on its weights' values):

- the entry: ``torchvision/<builder>`` when its weights' crop is 224,
  else the builder's first weights whose crop is 224
  (``torchvision/vit_h_14.IMAGENET1K_SWAG_LINEAR_V1``), else the default
  entry with ``resize_size=224, crop_size=224`` (convolutional networks
  take any size);
- ``eager``: the entry with ``optimize=False``, on the same module object
  the default model runs eagerly (same weights, one copy in memory);
- ``default``: ``load_zoo_model(entry, pretrained=False)`` then
  ``model.prepare(10**6)``, what ``apply_model`` calls before a long run:
  auto builds the graph, verifies it, times it against eager and keeps it
  only when faster; ``graph`` is what it chose;
- ms/image of ``predict_all`` on one batch of real photographs
  (scikit-image's, 224x224; the entry's own resize and crop included),
  both warmed up on that batch (a fused graph compiles itself for each new
  batch shape, as it does on a run's first batches), then interleaved
  rounds (the order alternating), medians; ``ratio`` is the median of the
  rounds' default/eager ratios;
- the batch is ``--batch`` images (8) and ``--rounds`` rounds (5), fewer
  for heavy models so that one model's timing stays within
  ``--max-seconds-per-model`` (at least 2 images and 3 rounds);
- ``warnings``: Python warnings and WARNING log records emitted while the
  default model was prepared and run (a model that cannot be traced must
  cost one INFO line, not a storm).

Each model's row is appended to ``--results`` (JSON lines) as it is
measured; ``--resume`` skips the models already there, so an interrupted
run goes on where it stopped; ``--skip`` leaves some out for now. A model
whose module, channels_last copy and graph (3 x 4 bytes a parameter) would
not fit in the memory available is skipped and the table says so. Models
run lightest first. Prints the Markdown table of every row of the
selection and, with ``--write-docs``, writes it into docs/performance.md
between ``<!-- BEGIN zoo-catalogue -->`` and ``<!-- END zoo-catalogue -->``.

Usage::

    .venv/bin/python benchmarks/bench_zoo_catalogue.py --models 'mobilenet*' squeezenet1_1
    .venv/bin/python benchmarks/bench_zoo_catalogue.py --resume --write-docs   # the whole catalogue
"""

from __future__ import annotations

import argparse
import fnmatch
import gc
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")  # as tests/images.py
DOC = os.path.join(ROOT, "docs", "performance.md")
BEGIN, END = "<!-- BEGIN zoo-catalogue -->", "<!-- END zoo-catalogue -->"
DEFAULT_RESULTS = os.path.join(ROOT, "out", "zoo_catalogue.jsonl")  # out/ is git-ignored


def classifiers() -> List[Dict[str, Any]]:
    """Every torchvision classifier of the zoo's index, with the entry it is
    measured as (see the module's docstring)."""
    from modelzoo.zoo.torchvision_source import read_catalog

    out = []
    for b in read_catalog()["builders"]:
        if b["task"] != "classification":
            continue
        weights = {w["name"]: w for w in b["weights"]}
        default = weights[b["default"]]
        crop = lambda w: (w["transforms"].get("crop_size") or [None])[0]  # noqa: E731
        if crop(default) == 224:
            entry, overrides = f"torchvision/{b['builder']}", {}
        else:
            at_224 = [w for w in b["weights"] if crop(w) == 224]
            if at_224:
                entry, overrides = f"torchvision/{b['builder']}.{at_224[0]['name']}", {}
            else:
                entry, overrides = f"torchvision/{b['builder']}", {"resize_size": 224, "crop_size": 224}
        out.append({"builder": b["builder"], "entry": entry, "overrides": overrides,
                    "params": default.get("num_params") or 0})
    return out


def photos(n: int, size: int = 224) -> List[Any]:
    """``n`` real photographs (scikit-image's), RGB, ``size`` x ``size``."""
    import numpy as np
    import skimage.data
    from PIL import Image

    out = []
    for i in range(n):
        img = Image.fromarray(getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()).convert("RGB")
        if i >= len(PHOTOS):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        out.append(np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)))
    return out


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage())


def _seconds(model: Any, batch: Sequence[Any]) -> float:
    t = time.perf_counter()
    model.predict_all(batch)
    return time.perf_counter() - t


def _plan(per_image_s: float, batch: int, rounds: int, budget_s: float) -> Tuple[int, int]:
    """Images and rounds so that ``rounds`` interleaved eager + default
    passes stay within ``budget_s`` (at least 2 images, 3 rounds)."""
    cost = lambda n, r: 2 * n * r * per_image_s  # noqa: E731  # eager + default (default <= eager)
    while rounds > 3 and cost(batch, rounds) > budget_s:
        rounds -= 1
    while batch > 2 and cost(batch, rounds) > budget_s:
        batch -= 1
    return batch, rounds


class _Prebuilt:
    """An entrypoint returning a module built beforehand."""

    def __init__(self, module: Any):
        self.module = module

    def __call__(self) -> Any:
        return self.module


def _eager_twin(default: Any) -> Any:
    """The same entry, ``optimize=False``, on the very module ``default``
    runs eagerly (same weights; and one copy of vit_h_14's 2.5 GB, not two)."""
    import dataclasses

    config = dataclasses.replace(default.config, entrypoint_fcn=_Prebuilt(default.torch_model), entrypoint_args=None,
                                 weights_path=None, weights_sha256=None, optimize=False)
    return type(default)(config)


def measure(spec: Dict[str, Any], images: Sequence[Any], rounds: int, budget_s: float) -> Dict[str, Any]:
    import modelzoo as mz

    options = {"pretrained": False, "device": "cpu", **spec["overrides"]}
    handler = _Count()
    logging.getLogger("modelzoo").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            default = mz.load_zoo_model(spec["entry"], **options)
            t = time.perf_counter()
            default.prepare(10**6)  # what apply_model does before a long run
            build_s = time.perf_counter() - t
            eager = _eager_twin(default)
            measured = getattr(getattr(default, "optimization_decision", None), "timings", None)
            if measured:  # auto's own measure of eager (ms/sample at batch 2) sizes the batch
                per_image = max(e for e, _ in measured.values()) / 1e3
            else:
                per_image = _seconds(eager, images[:2]) / 2
            n, rounds = _plan(per_image, len(images), rounds, budget_s)
            batch = images[:n]
            # warm-up on the measured batch's shape: a fused graph compiles itself on
            # the 2nd call with a new shape (2 images: the shape auto already ran)
            for _ in range(1 if n == 2 else 2):
                _seconds(eager, batch)
                _seconds(default, batch)
            e: List[float] = []
            d: List[float] = []
            for r in range(rounds):  # interleaved, the order alternating
                if r % 2:
                    d.append(_seconds(default, batch))
                    e.append(_seconds(eager, batch))
                else:
                    e.append(_seconds(eager, batch))
                    d.append(_seconds(default, batch))
    finally:
        logging.getLogger("modelzoo").removeHandler(handler)
    decision = getattr(default, "optimization_decision", None)
    row = {
        "builder": spec["builder"],
        "entry": spec["entry"] + ("" if not spec["overrides"] else " (224 crop)"),
        "images": n,
        "rounds": rounds,
        "eager_ms": 1e3 * statistics.median(e) / n,
        "default_ms": 1e3 * statistics.median(d) / n,
        "ratio": statistics.median(dd / ee for dd, ee in zip(d, e)),
        "graph": getattr(default, "optimization", "?"),
        "reason": getattr(default, "optimization_reason", ""),
        "auto_timings": getattr(decision, "timings", None),
        "build_s": build_s,
        "warnings": len(caught) + len(handler.records),
        "warning_texts": [str(w.message)[:200] for w in caught][:5] + handler.records[:5],
        "load": os.getloadavg()[0],
    }
    del eager, default
    gc.collect()
    return row


def header(rows: Sequence[Dict[str, Any]]) -> str:
    import torch

    loads = [r["load"] for r in rows if "load" in r] or [float("nan")]
    chose = sum(1 for r in rows if r["graph"] != "eager")
    worst = max(rows, key=lambda r: r["ratio"]) if rows else None
    lines = [
        f"{len(rows)} torchvision classifiers at 224x224 (seeded weights), `predict_all` on real photographs, "
        f"interleaved rounds, medians; {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"load average {min(loads):.1f}-{max(loads):.1f} while measured. "
        f"The default chose a graph for {chose} of {len(rows)}"
        + (f"; worst default/eager ratio {worst['ratio']:.2f} (`{worst['builder']}`)." if worst else "."),
    ]
    return "\n".join(lines)


def table(rows: Sequence[Dict[str, Any]]) -> str:
    lines = [
        header(rows),
        "",
        "| model | graph chosen | eager ms/img | default ms/img | default / eager | images x rounds | decide s | warnings |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: r["builder"]):
        lines.append(
            f"| `{r['entry']}` | {r['graph']} | {r['eager_ms']:.1f} | {r['default_ms']:.1f} | {r['ratio']:.2f} "
            f"| {r['images']} x {r['rounds']} | {r['build_s']:.1f} | {r['warnings']} |"
        )
    return "\n".join(lines) + "\n"


def write_docs(text: str, path: str = DOC) -> None:
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{path} lacks the markers {BEGIN} / {END}: add them where the table goes")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)


def _available_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _read_results(path: str) -> Dict[str, Dict[str, Any]]:
    rows: Dict[str, Dict[str, Any]] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows[row["builder"]] = row  # the latest measurement of each
    return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--models", nargs="+", metavar="PATTERN",
                        help="builders or fnmatch patterns ('resnet*'); default: every classifier")
    parser.add_argument("--batch", type=int, default=8, help="images per predict_all (fewer for heavy models)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (fewer for heavy models, at least 3)")
    parser.add_argument("--max-seconds-per-model", type=float, default=60.0,
                        help="time budget of one model's timed rounds (the build and decision are extra)")
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="JSON lines, one row per model measured")
    parser.add_argument("--resume", action="store_true", help="skip the models already in --results")
    parser.add_argument("--skip", nargs="+", metavar="PATTERN", help="builders or patterns not to measure now")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {os.path.relpath(DOC, ROOT)}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    specs = classifiers()
    if args.models:
        chosen = [s for s in specs if any(fnmatch.fnmatch(s["builder"], p) for p in args.models)]
        unmatched = [p for p in args.models if not any(fnmatch.fnmatch(s["builder"], p) for s in specs)]
        if unmatched:
            parser.error(f"no torchvision classifier of the catalogue matches {', '.join(unmatched)}")
        specs = chosen
    done = _read_results(args.results) if args.resume else {}
    images = photos(args.batch)
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    t0 = time.perf_counter()
    skipped = []
    for spec in sorted(specs, key=lambda s: s["params"]):  # the light ones first: a partial run says the most
        if spec["builder"] in done or any(fnmatch.fnmatch(spec["builder"], p) for p in args.skip or ()):
            continue
        need, free = 3 * 4 * spec["params"], _available_bytes()  # the module, its channels_last copy, a graph
        if free is not None and need > 0.8 * free:
            skipped.append(spec["builder"])
            print(f"{spec['builder']}: skipped, needs ~{need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB is available",
                  file=sys.stderr, flush=True)
            continue
        t = time.perf_counter()
        row = measure(spec, images, args.rounds, args.max_seconds_per_model)
        row["seconds"] = time.perf_counter() - t
        with open(args.results, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{spec['builder']}: eager {row['eager_ms']:.1f} ms/img, default {row['default_ms']:.1f} "
              f"({row['graph']}), ratio {row['ratio']:.2f}, {row['warnings']} warnings, {row['seconds']:.0f} s "
              f"[{row['reason']}]", file=sys.stderr, flush=True)
    print(f"measured in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    every = _read_results(args.results)
    rows = [every[s["builder"]] for s in specs if s["builder"] in every]
    missing = [s["builder"] for s in specs if s["builder"] not in every]
    text = table(rows) + (f"\nNot measured: {', '.join(f'`{b}`' for b in missing)}.\n" if missing else "")
    print(text)
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
