#!/usr/bin/env python
"""In-process ``apply_model`` against ``backend="ray"`` on this machine.

The same ``--images`` 640x480 JPEGs (``bench_apply.photo_dir``) and the same
model (``--model``: a TorchImageModel of torchvision ``mobilenet_v3_small``,
seeded random init, as ``bench_apply --torch-image`` builds it; or ``tiny``,
``modelzoo.testing.tiny_model("classification")``), written to a field each
run:

(a) in-process: ``apply_model(dataset, model, field)``, engine defaults;
(b) Ray: ``apply_model(..., backend="ray")`` on one local Ray started once
    before timing (``ray.init(num_cpus=<cores>)``, no dashboard), default
    ``ray_options`` (replicas sized from the cluster). Each Ray run includes
    what every run pays: the probe (one model build on a worker, unprepared),
    the replica start-up (another build, prepared) and Ray Data's planning.

Runs alternate (a b, b a, ...) ``--runs`` times; the script prints the
medians, the ratio b/a (target <= 1.3), and the time from the call to the
first stored batch for each (in-process: the first write of the sink; Ray:
the first batch report reaching the driver, written before it is sent).
Ray's own start-up (``ray.init``) is timed once and reported apart.

Then the breakdown of the Ray runs (``RayReport.timings``: session, checks,
probe, to the first stored batch, the rest, shutdown; the probe's own time
and each replica's model build) and the start-up / throughput model of when Ray pays off on m
machines like this one, written into ``docs/ray.md`` between
``<!-- BEGIN ray-breakdown -->`` and ``<!-- END ray-breakdown -->`` (not
with ``--quick`` or ``--no-docs``).

On one 2-core machine Ray cannot be faster: the replicas and the decoding
tasks share the same two cores the in-process run uses, plus Ray's
processes. The ratio is what Ray's machinery costs on a single machine.

Usage::

    .venv/bin/python benchmarks/bench_ray.py                   # 1,000 images, 3 pairs
    .venv/bin/python benchmarks/bench_ray.py --quick           # 100 images, 1 pair
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # the repository, for a run without an install
sys.path.insert(0, HERE)


def _model(kind: str) -> Any:
    if kind == "tiny":
        from modelzoo.testing import tiny_model

        return tiny_model("classification")
    from bench_apply import torch_image_config

    from modelzoo.torch_image import TorchImageModel

    return TorchImageModel(torch_image_config("mobilenet_v3_small"))


def _in_process(dataset: Any, model: Any, field: str) -> Dict[str, Optional[float]]:
    from modelzoo.engine import LabelSink, RunOptions, Source, run_model

    class FirstWrite(LabelSink):
        first: Optional[float] = None

        def write(self, batch: Any) -> None:
            super().write(batch)
            if self.first is None:
                self.first = time.perf_counter()

    t0 = time.perf_counter()
    source = Source.from_samples(dataset)
    sink = FirstWrite(source.collection, dataset.name, field)
    report = run_model(source, model, sink, RunOptions(progress=False))
    total = time.perf_counter() - t0
    assert report.processed == len(dataset), report
    return {"total": total, "first": (sink.first - t0) if sink.first else None}


def _on_ray(dataset: Any, model: Any, field: str) -> Dict[str, Any]:
    t0 = time.perf_counter()
    report = dataset.apply_model(model, label_field=field, backend="ray", progress=False)
    total = time.perf_counter() - t0
    assert report.processed == len(dataset), report
    return {"total": total, "first": report.first_batch_s, "plan": report.plan, "replicas": report.replicas,
            "timings": dict(report.timings), "build": dict(report.replica_build_s),
            "probe": report.probe_s}


def payoff_model(n: int, init_s: float, local: List[Dict[str, Any]], ray_runs: List[Dict[str, Any]],
                 batch: int) -> str:
    """The start-up / throughput model of a Ray run against the in-process one, as markdown.

    T_local(n) = s_local + n / r_local and T_ray(n) = S + n / (m * r_ray) on m
    machines like this one, with S the Ray run's start-up (ray.init when the
    run starts Ray, the checks, the probe, and everything before the first
    stored batch) and r_ray one machine's steady Ray throughput (the images
    after the first batch over the time after it). Ray pays off from
    n* = (S - s_local) / (1 / r_local - 1 / (m * r_ray)) images, when
    m * r_ray > r_local.
    """
    def med_of(key: str) -> float:
        return statistics.median(r["timings"].get(key, 0.0) for r in ray_runs)

    stages = ["session", "checks", "probe", "to_first_batch", "rest", "shutdown"]
    build = statistics.median(statistics.median(r["build"].values()) if r["build"] else 0.0 for r in ray_runs)
    startup = init_s + sum(med_of(k) for k in stages[:4])
    probe = statistics.median(r["probe"] or 0.0 for r in ray_runs)
    r_ray = (n - batch) / max(med_of("rest"), 1e-9)
    s_local = statistics.median(r["first"] for r in local)
    t_local = statistics.median(r["total"] for r in local)
    r_local = (n - batch) / max(t_local - s_local, 1e-9)
    lines = [
        "| Ray stage (median over runs) | seconds |", "| --- | ---: |",
        f"| `ray.init` (once per process here; a run that starts its own Ray pays it) | {init_s:.2f} |",
        f"| imports + session (Ray already running) | {med_of('session'):.2f} |",
        f"| checks: recipe, resource plan, database reach, count | {med_of('checks'):.2f} |",
        f"| probe: a worker process (Ray's) reaches the database and builds the model (ours: {probe:.2f} s) "
        f"| {med_of('probe'):.2f} |",
        f"| probe end to first stored batch: Ray Data planning, replica start (its model build: {build:.2f} s), "
        f"first decode, forward, write | {med_of('to_first_batch'):.2f} |",
        f"| first stored batch to the last ({n - batch} images) | {med_of('rest'):.2f} |",
        f"| shutdown | {med_of('shutdown'):.2f} |",
        "",
        f"Start-up S = {startup:.1f} s (ray.init included); steady Ray throughput on this machine "
        f"r_ray = {r_ray:.0f} images/s; in-process: {s_local:.2f} s to the first stored batch, then "
        f"r_local = {r_local:.0f} images/s.",
        "",
        "| machines like this one (m) | Ray throughput m x r_ray | Ray pays off from (images) |",
        "| ---: | ---: | ---: |",
    ]
    for m in (1, 2, 4, 8, 16):
        rate = m * r_ray
        if rate <= r_local:
            when = "never (slower than in-process)"
        else:
            when = f"{max(0.0, startup - s_local) / (1 / r_local - 1 / rate):,.0f}"
        lines.append(f"| {m} | {rate:,.0f} images/s | {when} |")
    return "\n".join(lines)


DOCS = os.path.join(ROOT, "docs", "ray.md")
BEGIN, END = "<!-- BEGIN ray-breakdown -->", "<!-- END ray-breakdown -->"


def _write_docs(text: str) -> None:
    import re

    with open(DOCS) as f:
        doc = f.read()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOCS} has no {BEGIN} / {END} block to regenerate")
    doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", doc, flags=re.S)
    with open(DOCS, "w") as f:
        f.write(doc)
    print(f"# written into {DOCS}")


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3, help="in-process / Ray pairs")
    p.add_argument("--model", choices=["mobilenet", "tiny"], default="mobilenet")
    p.add_argument("--quick", action="store_true", help="100 images, 1 pair; docs not written")
    p.add_argument("--no-docs", action="store_true", help="print only (else the breakdown goes into docs/ray.md)")
    args = p.parse_args(argv)
    load = os.getloadavg()
    if args.quick:
        args.images, args.runs = 100, 1

    import ray
    from bench_apply import photo_dir

    import modelzoo as mz
    from modelzoo import db

    cores = os.cpu_count() or 1
    paths = sorted(os.path.join(photo_dir(args.images), f) for f in os.listdir(photo_dir(args.images)))
    # the workers import this checkout and bench_apply (the model's entrypoint)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, HERE, os.environ.get("PYTHONPATH")]))
    with db.temporary():
        dataset = mz.Dataset("bench-ray", overwrite=True)
        dataset.add_images(paths)
        model = _model(args.model)
        t = time.perf_counter()
        ray.init(num_cpus=cores, include_dashboard=False, logging_level="warning",
                 _temp_dir=tempfile.mkdtemp(prefix="mzbr", dir="/tmp"))
        init_s = time.perf_counter() - t
        print(f"# {args.images} images, model {args.model}, {cores} cores; ray.init: {init_s:.1f} s")
        results: Dict[str, List[Dict[str, Any]]] = {"in-process": [], "ray": []}
        try:
            for i in range(args.runs):
                order = ["in-process", "ray"] if i % 2 == 0 else ["ray", "in-process"]
                for name in order:
                    field = f"{name.replace('-', '_')}_{i}"
                    r = _in_process(dataset, model, field) if name == "in-process" else _on_ray(dataset, model, field)
                    results[name].append(r)
                    extra = ""
                    if name == "ray":
                        laps = ", ".join(f"{k} {v:.2f}" for k, v in r["timings"].items())
                        builds = ", ".join(f"{v:.2f}" for v in r["build"].values())
                        extra = f", plan {r['plan']}, per replica {r['replicas']}; stages (s): {laps}; replica builds {builds} s"
                    print(f"run {i} {name:>10}: {r['total']:.2f} s, first batch stored at {r['first']:.2f} s{extra}")
        finally:
            ray.shutdown()
        med = {k: statistics.median(r["total"] for r in v) for k, v in results.items()}
        first = {k: statistics.median(r["first"] for r in v) for k, v in results.items()}
        print(f"\nmedian in-process {med['in-process']:.2f} s ({args.images / med['in-process']:.0f} images/s), "
              f"ray {med['ray']:.2f} s ({args.images / med['ray']:.0f} images/s)")
        print(f"ratio ray / in-process: {med['ray'] / med['in-process']:.2f} (target <= 1.3)")
        print(f"first stored batch: in-process {first['in-process']:.2f} s, ray {first['ray']:.2f} s")
        batch = int(getattr(model, "default_batch_size", None) or 16)
        text = (f"`benchmarks/bench_ray.py --images {args.images} --runs {args.runs} --model {args.model}` "
                f"({cores} cores, load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; "
                f"in-process median {med['in-process']:.2f} s, Ray {med['ray']:.2f} s: "
                f"{med['ray'] / med['in-process']:.2f}x):\n\n"
                + payoff_model(args.images, init_s, results["in-process"], results["ray"], batch))
        print("\n" + text)
        if not (args.quick or args.no_docs):
            _write_docs(text)
        mz.delete_dataset("bench-ray")


if __name__ == "__main__":
    main()
