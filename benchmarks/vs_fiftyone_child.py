#!/usr/bin/env python
"""One side of one case of ``bench_vs_fiftyone.py``, in a fresh process.

Run by ``bench_vs_fiftyone.py`` with FiftyOne's own virtual environment's
Python (``--side fiftyone``) or this project's (``--side modelzoo``); it
imports nothing of the other side. It builds a dataset of the given photos
(untimed), and imports torchvision and its side's model modules (untimed:
``import torchvision.models`` alone takes seconds), then times what a
user's script does next: the model's construction
from its config (weights loaded from the given state dict file) or
``load_zoo_model(name)``, and ``apply_model``. It prints one JSON line:
``{"seconds", "labels", ...}`` (``labels``: the top-1 label or the number
of detections per photo, in the photos' order, for the agreement check).

``--frozen-forward`` (modelzoo, the zoo case) also times the forward alone
after the run: ``predict_all`` of the same model (the graph it chose) on
the photos already decoded and collated at the batch size the engine
chose, which is the floor the whole run is held to.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Dict, List, Optional

#: (torchvision entrypoint, output processor, batch size)
CASES = {
    "mobilenet_v3_small": ("mobilenet_v3_small", "ClassifierOutputProcessor", 32),
    "resnet18": ("resnet18", "ClassifierOutputProcessor", 32),
    "fasterrcnn": ("fasterrcnn_mobilenet_v3_large_320_fpn", "DetectorOutputProcessor", 8),
}
ZOO_NAME = "mobilenet-v2-imagenet-torch"
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_net(arch: str, weights: str) -> Any:
    """The torchvision net, its weights from ``weights`` (a state dict). Both sides' entrypoint."""
    import torch
    import torchvision

    if arch.startswith("fasterrcnn"):
        net = getattr(torchvision.models.detection, arch)(weights=None, weights_backbone=None)
    else:
        net = getattr(torchvision.models, arch)(weights=None)
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval()


def model_config(case: str, weights: str, fiftyone: bool) -> Dict[str, Any]:
    """The same settings on both sides: FiftyOne's TorchImageModelConfig keys,
    which modelzoo's TorchImageModel takes too."""
    import functools

    arch, processor, _ = CASES[case]
    cfg: Dict[str, Any] = {
        "entrypoint_fcn": functools.partial(build_net, arch, weights),
        "output_processor_cls": ("fiftyone.utils.torch." if fiftyone else "") + processor,
        "device": "cpu",
    }
    if processor == "ClassifierOutputProcessor":
        cfg.update(classes=[f"class_{i}" for i in range(1000)], image_size=[224, 224], image_mean=MEAN, image_std=STD)
    else:
        cfg.update(classes=["__background__"] + [f"class_{i}" for i in range(1, 91)])  # no resize, no normalize
    return cfg


def _labels(values: List[Any]) -> List[Any]:
    out: List[Any] = []
    for v in values:
        if v is None:
            out.append(None)
        elif hasattr(v, "detections"):
            out.append(len(v.detections))
        else:
            out.append(v.label)
    return out


def run_fiftyone(args: argparse.Namespace, paths: List[str]) -> Dict[str, Any]:
    import fiftyone as fo
    import fiftyone.utils.torch as fout
    import fiftyone.zoo as foz
    import torchvision  # noqa: F401  (imported before the timer on both sides)

    dataset = fo.Dataset()
    dataset.add_samples([fo.Sample(filepath=p) for p in paths])
    t = time.perf_counter()
    if args.case == "zoo":
        model = foz.load_zoo_model(ZOO_NAME)
        dataset.apply_model(model, "pred")
    else:
        model = fout.TorchImageModel(fout.TorchImageModelConfig(model_config(args.case, args.weights, True)))
        dataset.apply_model(model, "pred", batch_size=CASES[args.case][2])
    seconds = time.perf_counter() - t
    by_path = dict(zip(dataset.values("filepath"), dataset.values("pred")))
    result = {"seconds": seconds, "labels": _labels([by_path.get(p) for p in paths]), "version": fo.__version__}
    dataset.delete()
    return result


def _decision(model: Any) -> str:
    """Whether optimize="auto" measured now, reused a kept decision, or did not decide."""
    decision = getattr(model, "optimization_decision", None)
    if decision is None:
        return "not decided"
    return "measured" if decision.kept_at is None else "kept"


class _BatchSizeLog(logging.Handler):
    """The batch size the engine's search chose (its INFO line)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.size: Optional[int] = None
        self.lines: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = str(record.msg)
        if msg.startswith("Batch size"):
            self.size = int(record.args[0])  # type: ignore[index]
        if msg.startswith(("Batch size", "Measured", "optimize")):
            self.lines.append(record.getMessage())


def frozen_forward(model: Any, paths: List[str], batch_size: int) -> float:
    """``predict_all`` on the photos already decoded and collated, ``batch_size`` at a time."""
    import torch

    load = model.build_input_loader()
    collate = model.collate_fn
    batches = [collate([load(p) for p in paths[i:i + batch_size]]) for i in range(0, len(paths), batch_size)]
    model.predict_all(batches[0])  # the graph's first call at this shape (the run made it already)
    threads = torch.get_num_threads()
    t = time.perf_counter()
    for b in batches:
        model.predict_all(b)
    seconds = time.perf_counter() - t
    torch.set_num_threads(threads)
    return seconds


def run_modelzoo(args: argparse.Namespace, paths: List[str]) -> Dict[str, Any]:
    import torchvision  # noqa: F401  (imported before the timer on both sides)

    import modelzoo as mz
    from modelzoo import db
    from modelzoo.torch_image import TorchImageModel

    log = _BatchSizeLog()
    engine_log = logging.getLogger("modelzoo")
    engine_log.addHandler(log)
    engine_log.setLevel(logging.INFO)
    with db.temporary():
        dataset = mz.Dataset("vs-fiftyone")
        dataset.add_samples(paths)
        t = time.perf_counter()
        if args.case == "zoo":
            model = mz.load_zoo_model(ZOO_NAME)
            t_load = time.perf_counter()
            report = dataset.apply_model(model, "pred", progress=False)
        else:
            model = TorchImageModel(model_config(args.case, args.weights, False))
            t_load = time.perf_counter()
            report = dataset.apply_model(model, "pred", batch_size=CASES[args.case][2], progress=False)
        end = time.perf_counter()
        if not report.ok:
            raise SystemExit(f"apply_model failed: {report}")
        by_path = dict(zip(dataset.values("filepath"), dataset.values("pred")))
        result: Dict[str, Any] = {
            "seconds": end - t, "apply_s": end - t_load, "labels": _labels([by_path.get(p) for p in paths]),
            "optimization": getattr(model, "optimization", None), "batch_size": log.size, "log": log.lines,
            "decision": _decision(model),
        }
        if args.frozen_forward:
            size = log.size or 16
            result["forward_s"] = frozen_forward(model, paths, size)
            result["forward_batch"] = size
        dataset.delete()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=["fiftyone", "modelzoo"], required=True)
    p.add_argument("--case", choices=sorted(CASES) + ["zoo"], required=True)
    p.add_argument("--photos", required=True, help="a file listing the photos, one path a line")
    p.add_argument("--weights", help="the state dict file (not for --case zoo)")
    p.add_argument("--frozen-forward", action="store_true")
    args = p.parse_args()
    with open(args.photos) as f:
        paths = [line.strip() for line in f if line.strip()]
    result = run_fiftyone(args, paths) if args.side == "fiftyone" else run_modelzoo(args, paths)
    sys.stdout.flush()
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
