"""Generates the timm catalogue the zoo lists without importing timm or torch.

Run it after upgrading timm (``tests/test_zoo_timm.py`` checks the shipped
index against the installed library)::

    python -m modelzoo.zoo.generate_timm            # rewrites modelzoo/zoo/catalogs/timm.json
    python -m modelzoo.zoo.generate_timm --check    # exit 1 when the shipped index is stale

Every tag of ``timm.list_pretrained()`` is listed with its data config (input
size, interpolation, crop, mean, std), its number of classes, the ImageNet
subset its classes come from (timm's ``infer_imagenet_subset``), the hub id
of its weights and its licence. With ``--measure-widths`` it also records
the width of each architecture's pooled features
(``forward_head(pre_logits=True)``), measured by building it on the meta
device: about a second per architecture, 20 minutes or more for all of timm,
so the default keeps the widths already in the shipped index and leaves the
others to be read from the built model.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence

from .indexes import CATALOG_DIR, check_or_write, read_catalog

__all__ = ["TIMM_CATALOG_PATH", "COMMAND", "generate_timm", "read_timm_catalog", "entry_of", "feature_width", "main"]

TIMM_CATALOG_PATH = os.path.join(CATALOG_DIR, "timm.json")
#: the command that regenerates the index
COMMAND = "python -m modelzoo.zoo.generate_timm"


def feature_width(architecture: str) -> int:
    """The width of ``forward_head(pre_logits=True)`` of ``architecture``
    (built on the meta device: no memory, no weights)."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(architecture, pretrained=False)
    except Exception:  # an init that cannot run on meta tensors
        model = timm.create_model(architecture, pretrained=False)
    try:  # what the zoo's embeddings tap gives, on a meta input (an encoder without a pooling head: its token width)
        from .timm_models import TimmNet

        net: Any = TimmNet(model)
        size = tuple(net.model.pretrained_cfg.get("input_size") or (3, 224, 224))
        with torch.device("meta"):
            return int(net.pre_logits(net.model.forward_features(torch.empty(1, *size))).shape[-1])
    except Exception:  # a model that cannot run on meta tensors: its declared width
        width: Any = getattr(model, "head_hidden_size", None) or model.num_features
        return int(width)


def entry_of(name: str) -> Dict[str, Any]:
    """The index's record of one pretrained tag (without its feature width)."""
    from timm.data import infer_imagenet_subset
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None:
        raise KeyError(name)
    num_classes = int(cfg.num_classes or 0)
    subset = infer_imagenet_subset(cfg) if num_classes else None
    return {
        "name": name,
        "architecture": cfg.architecture,
        "tag": cfg.tag,
        "hf_hub_id": cfg.hf_hub_id or None,
        "url": cfg.url or None,
        "license": cfg.license or "",
        "num_classes": num_classes,
        "classes": subset,
        "input_size": list(cfg.input_size),
        "interpolation": cfg.interpolation or "bilinear",
        "crop_pct": float(cfg.crop_pct or 0.875),
        "crop_mode": cfg.crop_mode or "center",
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "classifier": cfg.classifier if isinstance(cfg.classifier, str) else (list(cfg.classifier or []) or None),
    }


def generate_timm(widths: Optional[Dict[str, int]] = None, progress: bool = False, measure: bool = False,
                  budget_s: Optional[float] = None) -> Dict[str, Any]:
    """The catalogue of the installed timm, as JSON data. ``widths`` (by
    architecture) are kept; with ``measure``, the others are measured (for
    at most ``budget_s`` seconds: run again to measure more)."""
    import time

    import timm

    deadline = None if budget_s is None else time.monotonic() + budget_s
    widths = dict(widths or {})
    tags: List[Dict[str, Any]] = []
    names = timm.list_pretrained()
    for i, name in enumerate(names):
        entry = entry_of(name)
        arch = entry["architecture"]
        if measure and arch not in widths and (deadline is None or time.monotonic() < deadline):
            widths[arch] = feature_width(arch)
            if progress:
                print(f"[{i + 1}/{len(names)}] {arch}: {widths[arch]}", file=sys.stderr, flush=True)
        tags.append(entry)
    return {
        "generated_by": COMMAND,
        "timm": timm.__version__,
        "feature_widths": {a: widths[a] for a in sorted({t["architecture"] for t in tags}) if a in widths},
        "tags": tags,
    }


def read_timm_catalog(path: str = TIMM_CATALOG_PATH) -> Dict[str, Any]:
    """The timm index at ``path`` (see :func:`~modelzoo.zoo.indexes.read_catalog`)."""
    return read_catalog(path, COMMAND)


def _dump(data: Dict[str, Any]) -> str:
    return json.dumps(data, indent=0, sort_keys=False, separators=(",", ":")) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the shipped index differs from a regeneration")
    parser.add_argument("--measure-widths", action="store_true",
                        help="build every architecture not measured yet on the meta device to record its feature width (slow)")
    parser.add_argument("--budget-s", type=float, default=None, help="stop measuring widths after this many seconds")
    parser.add_argument("--output", default=TIMM_CATALOG_PATH)
    args = parser.parse_args(argv)
    command = COMMAND + ("" if args.output == TIMM_CATALOG_PATH else f" --output {shlex.quote(args.output)}")
    widths = None
    if os.path.exists(args.output):
        widths = read_timm_catalog(args.output)["feature_widths"]
    text = _dump(generate_timm(widths, progress=not args.check, measure=args.measure_widths,
                                     budget_s=args.budget_s))
    if not check_or_write(args.output, text, command, check=args.check):
        return 1
    if not args.check:
        print(f"wrote {len(json.loads(text)['tags'])} timm tags to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
