"""Generates the torchvision catalogue the zoo lists without importing torch.

Run it after upgrading torchvision (``tests/test_zoo_torchvision.py`` fails
until the shipped index matches the installed library)::

    python -m modelzoo.zoo.generate            # rewrites modelzoo/zoo/catalogs/torchvision.json
    python -m modelzoo.zoo.generate --check    # exit 1 when the shipped index is stale
    python -m modelzoo.zoo.generate --fiftyone-manifest manifest-torch.json
                                                # refreshes FiftyOne's names first

Every builder of torchvision's classification, detection, segmentation and
video modules with weights is listed, with each weights enum: its URL, file
name and hash prefix (torch hub's rule), categories, transforms (resize,
crop, mean, std, interpolation), metrics and what the zoo builds from it.
Optical flow (no label type here) and the quantized classifiers (int8 CPU
kernels, their float twins are listed) are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from typing import Any, Dict, List, Optional, Sequence

from .indexes import CATALOG_DIR, check_or_write

__all__ = ["CATALOG_PATH", "FIFTYONE_PATH", "COMMAND", "generate", "read_fiftyone_manifest", "main"]

CATALOG_PATH = os.path.join(CATALOG_DIR, "torchvision.json")
FIFTYONE_PATH = os.path.join(CATALOG_DIR, "fiftyone-torchvision.json")
#: the command that regenerates the index
COMMAND = "python -m modelzoo.zoo.generate"

_IMAGE_MODEL = "modelzoo.zoo.torchvision_models.TorchvisionImageModel"
_VIDEO_MODEL = "modelzoo.zoo.torchvision_models.TorchvisionVideoModel"
_ENTRYPOINT = "modelzoo.zoo.torchvision_models.build_torchvision"

#: category lists by length, named for the index's shared table
_CATEGORY_NAMES = {1000: "imagenet-1k", 91: "coco-91", 21: "voc-21", 400: "kinetics-400", 2: "coco-person", 17: "coco-17"}

_PROCESSORS = {
    "classification": "ClassifierOutputProcessor",
    "detection": "DetectorOutputProcessor",
    "instance-segmentation": "InstanceSegmenterOutputProcessor",
    "keypoints": "KeypointDetectorOutputProcessor",
    "segmentation": "SemanticSegmenterOutputProcessor",
    "video-classification": None,
    "embeddings": None,
}

def _dataset_tags(weights_name: str) -> List[str]:
    n = weights_name.upper()
    tags = []
    if "IMAGENET" in n:
        tags.append("imagenet")
    if "COCO" in n:
        tags.append("coco")
    if "VOC" in n:
        tags.append("voc")
    if "KINETICS" in n:
        tags.append("kinetics")
    if "SWAG" in n:
        tags.append("swag")
    return tags


def _task(builder: str, module_name: str) -> str:
    if module_name == "video":
        return "video-classification"
    if module_name == "segmentation":
        return "segmentation"
    if module_name == "detection":
        if builder.startswith("maskrcnn"):
            return "instance-segmentation"
        if builder.startswith("keypointrcnn"):
            return "keypoints"
        return "detection"
    return "classification"


def _head_layer(builder: str, num_classes: int) -> Optional[str]:
    """The classifier's last ``Linear`` (whose input is the embedding), or None."""
    import torch
    import torchvision.models as tvm

    try:
        with torch.device("meta"):
            module = tvm.get_model(builder, weights=None)
    except Exception:  # a builder that cannot build on the meta device
        module = tvm.get_model(builder, weights=None)
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)]
    if not linears or linears[-1][1].out_features != num_classes:
        return None
    return "<" + linears[-1][0]


def _transforms(weights: Any) -> Dict[str, Any]:
    t = weights.transforms()
    out: Dict[str, Any] = {"kind": type(t).__name__}
    for key in ("resize_size", "crop_size", "mean", "std"):
        value = getattr(t, key, None)
        if value is not None:
            value = [float(v) if key in ("mean", "std") else int(v) for v in value]
            out[key] = value
    interp = getattr(t, "interpolation", None)
    if interp is not None:
        out["interpolation"] = interp.value
    return out


def _metrics(metrics: Dict[str, Dict[str, float]]) -> Dict[str, Dict[str, Optional[float]]]:
    """torchvision's metrics, NaN (not measured) as null: JSON has no NaN, and NaN never equals itself."""
    return {d: {k: (None if v != v else v) for k, v in values.items()} for d, values in metrics.items()}


def _size(value: Optional[List[int]]) -> Any:
    """torchvision's ``[n]`` (the shorter side) as ``n``; ``[h, w]`` as is."""
    return value[0] if value and len(value) == 1 else value


def _model_config(task: str, builder: str, enum_key: str, transforms: Dict[str, Any], head: Optional[str], clip_len: int) -> Dict[str, Any]:
    """The zoo's config for one weights enum (categories and the weights file are added at load)."""
    args = {"builder": builder, "weights": enum_key}
    if task == "video-classification":
        return {
            "entrypoint_fcn": _ENTRYPOINT, "entrypoint_args": args, "clip_len": clip_len,
            "resize_size": _size(transforms["resize_size"]), "crop_size": _size(transforms["crop_size"]),
            "image_mean": transforms["mean"], "image_std": transforms["std"],
            "interpolation": transforms.get("interpolation", "bilinear"),
        }
    config: Dict[str, Any] = {"entrypoint_fcn": _ENTRYPOINT, "entrypoint_args": args, "output_processor_cls": _PROCESSORS[task]}
    if task in ("detection", "instance-segmentation", "keypoints"):
        config["raw_inputs"] = True  # the detector resizes and normalizes itself (ObjectDetection)
        return config
    config["resize_size"] = _size(transforms.get("resize_size"))
    if transforms.get("crop_size"):
        config["crop_size"] = _size(transforms["crop_size"])
    config["image_mean"] = transforms["mean"]
    config["image_std"] = transforms["std"]
    if transforms.get("interpolation", "bilinear") != "bilinear":
        config["interpolation"] = transforms["interpolation"]
    if head is not None:
        config["embeddings_layer"] = head
    if task == "embeddings":  # features only: the embedding is the classifier's input
        config["embeddings_layer"] = "<classifier"
    return config


def read_fiftyone_manifest(path: str) -> List[Dict[str, Any]]:
    """FiftyOne's torchvision-based entries of its ``manifest-torch.json``:
    name, builder, weights enum (as FiftyOne names it) and preprocessing."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    out = []
    for e in data["models"]:
        config = e.get("default_deployment_config_dict", {}).get("config", {})
        fn = str(config.get("entrypoint_fcn", ""))
        if not fn.startswith("torchvision.models"):
            continue
        keep = {k: config[k] for k in ("image_min_dim", "image_max_dim", "image_size", "image_dim", "image_mean",
                                      "image_std", "embeddings_layer", "confidence_thresh") if k in config}
        out.append({
            "name": e["base_name"],
            "builder": fn.rsplit(".", 1)[1],
            "weights": (config.get("entrypoint_args") or {}).get("weights"),
            "url": e.get("manager", {}).get("config", {}).get("url"),
            "config": keep,
            "tags": e.get("tags", []),
            "description": e.get("description", ""),
            "date_added": str(e.get("date_added", ""))[:10],
        })
    return sorted(out, key=lambda x: x["name"])


def builtin_manifest_names() -> List[str]:
    from .manifest import load_manifest_file
    from .plugins import builtin_manifest_dir, manifest_files

    return sorted({i.name for f in manifest_files(builtin_manifest_dir()) for i in load_manifest_file(f)})


def generate(fiftyone: Optional[Sequence[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The catalogue of the installed torchvision, as JSON data."""
    import torchvision
    import torchvision.models as tvm

    if fiftyone is None:
        with open(FIFTYONE_PATH, encoding="utf-8") as f:
            fiftyone = json.load(f)["models"]
    categories: Dict[str, List[str]] = {}
    keypoints: Dict[str, List[str]] = {}

    def category_key(cats: Sequence[str], table: Dict[str, List[str]], prefix: str = "") -> str:
        for k, v in table.items():
            if v == list(cats):
                return k
        key = prefix + _CATEGORY_NAMES.get(len(cats), f"categories-{len(cats)}")
        while key in table:
            key += "-b"
        table[key] = list(cats)
        return key

    modules = [("classification", tvm), ("detection", tvm.detection), ("segmentation", tvm.segmentation), ("video", tvm.video)]
    builders: List[Dict[str, Any]] = []
    for module_name, module in modules:
        for builder in tvm.list_models(module=module):
            enum = tvm.get_model_weights(builder)
            task = _task(builder, module_name)
            head = None
            weights_list: List[Dict[str, Any]] = []
            for w in enum:
                meta = w.meta
                enum_key = f"{enum.__name__}.{w.name}"
                transforms = _transforms(w)
                cats = meta["categories"]
                entry_task = task
                if cats is None:  # VGG16's IMAGENET1K_FEATURES: only the features are trained
                    entry_task, cats = "embeddings", []
                elif task == "classification" and head is None:
                    head = _head_layer(builder, len(cats))
                clip = re.search(r"clip_len=(\d+)", meta.get("_docs", ""))
                filename = os.path.basename(w.url)
                prefix = re.search(r"-([a-f0-9]+)\.", filename)
                if prefix is None:
                    raise RuntimeError(f"{enum_key}: {filename} carries no hash prefix (torch hub's rule)")
                item: Dict[str, Any] = {
                    "name": w.name,
                    "enum": enum_key,
                    "url": w.url,
                    "filename": filename,
                    "sha256_prefix": prefix.group(1),
                    "file_size_mb": meta.get("_file_size"),
                    "num_params": meta.get("num_params"),
                    "metrics": _metrics(meta.get("_metrics", {})),
                    "recipe": meta.get("recipe", ""),
                    "license": meta.get("license", "BSD-3-Clause"),
                    "categories": category_key(cats, categories) if cats else None,
                    "transforms": transforms,
                    "tags": _dataset_tags(w.name),
                    "config": _model_config(entry_task, builder, enum_key, transforms, head if task == "classification" else None,
                                            int(clip.group(1)) if clip else 16),
                }
                if entry_task != task:
                    item["task"] = entry_task
                if "keypoint_names" in meta:
                    item["keypoint_names"] = category_key(meta["keypoint_names"], keypoints, "keypoints-")
                weights_list.append(item)
            if not weights_list:
                continue
            builders.append({
                "builder": builder,
                "task": task,
                "default": enum.DEFAULT.name,
                "weights": weights_list,
            })
    builtin = set(builtin_manifest_names())
    aliases = []
    for fo in fiftyone:
        enum = tvm.get_model_weights(fo["builder"])
        wname = str(fo["weights"]).split(".")[-1]
        resolved = (enum.DEFAULT if wname == "DEFAULT" else enum[wname]).name
        aliases.append({**fo, "weights": resolved, "served_by": "manifests" if fo["name"] in builtin else "torchvision"})
    return {
        "generated_by": COMMAND,
        "torchvision": torchvision.__version__.split("+")[0],
        "categories": categories,
        "keypoint_names": keypoints,
        "builders": builders,
        "fiftyone": aliases,
    }


def _dump(data: Dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the shipped index differs from a regeneration")
    parser.add_argument("--output", default=CATALOG_PATH, help=f"where to write the index (default {CATALOG_PATH})")
    parser.add_argument("--fiftyone-manifest", metavar="PATH",
                        help="FiftyOne's manifest-torch.json: refresh the list of FiftyOne's torchvision names first")
    args = parser.parse_args(argv)
    command = COMMAND + ("" if args.output == CATALOG_PATH else f" --output {shlex.quote(args.output)}")
    ok = True
    if args.fiftyone_manifest:
        models = read_fiftyone_manifest(args.fiftyone_manifest)
        names = _dump({"source": "fiftyone 1.22.1 fiftyone/zoo/models/manifest-torch.json", "models": models})
        ok = check_or_write(FIFTYONE_PATH, names, f"{command} --fiftyone-manifest {shlex.quote(args.fiftyone_manifest)}",
                            check=args.check)
        if not args.check:
            print(f"wrote {len(models)} FiftyOne names to {FIFTYONE_PATH}")
    text = _dump(generate())
    ok = check_or_write(args.output, text, command, check=args.check) and ok
    if not args.check:
        data = json.loads(text)
        n = sum(len(b["weights"]) for b in data["builders"])
        print(f"wrote {len(data['builders'])} builders, {n} weights, {len(data['fiftyone'])} FiftyOne names to {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
