"""Generates the transformers and Ultralytics catalogues from FiftyOne's manifest.

FiftyOne's torch zoo (``fiftyone/zoo/models/manifest-torch.json``) names
about 90 Hugging Face transformers models and 80 Ultralytics YOLO models.
This script maps each to what the zoo builds (a repository, its
transformers model type and task; a YOLO weights file, its task and
dataset) and writes the two indexes the zoo lists without importing
transformers or ultralytics::

    python -m modelzoo.zoo.generate_libs --fiftyone-manifest manifest-torch.json
    python -m modelzoo.zoo.generate_libs --check --fiftyone-manifest manifest-torch.json

FiftyOne entries the zoo cannot build the same way are left out and
listed by the script (those of libraries other than transformers: SAM 2
video, SAM 3, PaddleOCR...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .indexes import CATALOG_DIR, check_or_write

__all__ = ["HF_CATALOG_PATH", "ULTRALYTICS_CATALOG_PATH", "COMMAND", "REGENERATE", "hf_entries", "ultralytics_entries", "main"]

HF_CATALOG_PATH = os.path.join(CATALOG_DIR, "transformers.json")
ULTRALYTICS_CATALOG_PATH = os.path.join(CATALOG_DIR, "ultralytics.json")
#: the generator (each index's ``generated_by``)
COMMAND = "python -m modelzoo.zoo.generate_libs"
#: the command that regenerates the two indexes, for errors that cannot know the manifest's path
REGENERATE = f"{COMMAND} --fiftyone-manifest manifest-torch.json"

#: FiftyOne's defaults for its generic transformers names (fiftyone/utils/transformers.py)
_FO_DEFAULTS = {
    "classification-transformer-torch": "google/vit-base-patch16-224",
    "vit-base-patch16-224-imagenet-torch": "google/vit-base-patch16-224",
    "detection-transformer-torch": "hustvl/yolos-tiny",
    "segmentation-transformer-torch": "nvidia/segformer-b0-finetuned-ade-512-512",
    "depth-estimation-transformer-torch": "Intel/dpt-hybrid-midas",
    "zero-shot-classification-transformer-torch": "openai/clip-vit-large-patch14",
    "zero-shot-detection-transformer-torch": "google/owlvit-base-patch32",
    "pose-estimation-transformer-torch": "usyd-community/vitpose-base-simple",
    "universal-segmentation-transformer-torch": "facebook/mask2former-swin-tiny-coco-instance",
    "clip-vit-base32-torch": "openai/clip-vit-base-patch32",
    "open-clip-torch": "openai/clip-vit-base-patch32",  # open_clip's default: ViT-B-32, OpenAI's weights
}

#: repository pattern -> (transformers model type, zoo task); first match wins
_REPO_RULES: List[Tuple[str, str, str]] = [
    (r"oneformer", "oneformer", "semantic-segmentation"),  # the task: FiftyOne's entry's
    (r"groupvit", "groupvit", "zero-shot-semantic-segmentation"),
    (r"omdet-turbo", "omdet-turbo", "zero-shot-object-detection"),
    (r"sam2", "sam2", "promptable-segmentation"),
    (r"rf-detr-seg", "rf_detr", "instance-segmentation"),
    (r"rf-detr", "rf_detr", "object-detection"),
    (r"/sam-vit", "sam", "promptable-segmentation"),
    (r"mask2former.*-semantic", "mask2former", "semantic-segmentation"),
    (r"mask2former", "mask2former", "instance-segmentation"),
    (r"segformer", "segformer", "semantic-segmentation"),
    (r"depth-anything", "depth_anything", "depth-estimation"),
    (r"dpt", "dpt", "depth-estimation"),
    (r"owlv2", "owlv2", "zero-shot-object-detection"),
    (r"owlvit", "owlvit", "zero-shot-object-detection"),
    (r"llmdet", "mm-grounding-dino", "zero-shot-object-detection"),
    (r"grounding-dino", "grounding-dino", "zero-shot-object-detection"),
    (r"siglip2-.*-patch\d+-\d+$", "siglip", "zero-shot-image-classification"),  # fixed resolution: SigLIP's architecture
    (r"siglip2", "siglip2", "zero-shot-image-classification"),
    (r"siglip", "siglip", "zero-shot-image-classification"),
    (r"clip|monet", "clip", "zero-shot-image-classification"),
    (r"vitpose-plus", "vitpose", "keypoints"),
    (r"vitpose", "vitpose", "keypoints"),
    (r"rtdetr_v2", "rt_detr_v2", "object-detection"),
    (r"rtdetr", "rt_detr", "object-detection"),
    (r"dfine", "d_fine", "object-detection"),
    (r"yolos", "yolos", "object-detection"),
    (r"detr", "detr", "object-detection"),
    (r"dinov3", "dinov3_vit", "image-feature-extraction"),
    (r"dinov2", "dinov2", "image-feature-extraction"),
    (r"convnext", "convnext", "image-classification"),
    (r"efficientnet", "efficientnet", "image-classification"),
    (r"swinv2", "swinv2", "image-classification"),
    (r"vit-", "vit", "image-classification"),
]

#: FiftyOne's universal segmentation tasks -> the zoo's
_UNIVERSAL_TASKS = {"semantic": "semantic-segmentation", "instance": "instance-segmentation",
                    "panoptic": "panoptic-segmentation"}

#: FiftyOne's Segment Anything image names (the segment-anything / sam2 packages) -> the same
#: weights on the hub, as transformers ports them
_SAM = {"segment-anything-vitb-torch": "facebook/sam-vit-base", "segment-anything-vitl-torch": "facebook/sam-vit-large",
        "segment-anything-vith-torch": "facebook/sam-vit-huge"}
for _v in ("2", "2.1"):
    for _size in ("tiny", "small", "base-plus", "large"):
        _SAM[f"segment-anything-{_v}-hiera-{_size}-image-torch"] = f"facebook/sam{_v}-hiera-{_size}"

#: FiftyOne's RF-DETR names (the rfdetr package) -> Roboflow's transformers ports on the hub
_RFDETR = {f"rfdetr-{size}-coco-torch": f"Roboflow/rf-detr-{size}" for size in ("nano", "small", "medium", "base", "large")}
_RFDETR.update({f"rfdetr-seg-{size}-coco-torch": f"Roboflow/rf-detr-seg-{size}"
                for size in ("nano", "small", "medium", "large", "xlarge", "2xlarge")})

#: FiftyOne's torch-hub DINOv2 names -> the same weights on the hub, through transformers
_DINOV2 = {"vits14": "facebook/dinov2-small", "vitb14": "facebook/dinov2-base", "vitl14": "facebook/dinov2-large",
           "vitg14": "facebook/dinov2-giant"}

TASK_TAGS = {
    "image-classification": ["classification", "logits"],
    "object-detection": ["detection"],
    "zero-shot-object-detection": ["detection", "zero-shot"],
    "zero-shot-image-classification": ["classification", "zero-shot", "embeddings", "text-embeddings"],
    "semantic-segmentation": ["segmentation"],
    "instance-segmentation": ["detection", "instance-segmentation"],
    "panoptic-segmentation": ["detection", "instance-segmentation", "panoptic"],
    "zero-shot-semantic-segmentation": ["segmentation", "zero-shot"],
    "promptable-segmentation": ["detection", "instance-segmentation", "promptable", "segment-anything"],
    "depth-estimation": ["depth", "heatmap"],
    "keypoints": ["keypoints"],
    "image-feature-extraction": ["embeddings"],
}

#: the tasks the transformers source maps, with an example repository each
HF_TASK_EXAMPLES = {
    "image-classification": "google/vit-base-patch16-224",
    "object-detection": "facebook/detr-resnet-50",
    "zero-shot-object-detection": "google/owlv2-base-patch16-ensemble",
    "zero-shot-image-classification": "openai/clip-vit-base-patch32",
    "semantic-segmentation": "nvidia/segformer-b0-finetuned-ade-512-512",
    "instance-segmentation": "facebook/mask2former-swin-tiny-coco-instance",
    "panoptic-segmentation": "facebook/mask2former-swin-tiny-coco-panoptic",
    "zero-shot-semantic-segmentation": "nvidia/groupvit-gcc-yfcc",
    "promptable-segmentation": "facebook/sam-vit-base",
    "depth-estimation": "depth-anything/Depth-Anything-V2-Small-hf",
    "keypoints": "usyd-community/vitpose-base-simple",
    "image-feature-extraction": "facebook/dinov2-small",
}


def _repo_rule(repo: str) -> Optional[Tuple[str, str]]:
    for pattern, model_type, task in _REPO_RULES:
        if re.search(pattern, repo.lower()):
            return model_type, task
    return None


def _models(path: str) -> List[Dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return list(json.load(f)["models"])


def hf_entries(manifest_path: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """FiftyOne's transformers-based names (and its DINOv2 / CLIP names that
    the hub serves through transformers): ``(entries, names left out)``."""
    from .generate import builtin_manifest_names

    builtin = set(builtin_manifest_names())  # the zoo's own manifests keep their names
    out, left = [], []
    for m in _models(manifest_path):
        name = m["base_name"]
        dep = m.get("default_deployment_config_dict", {})
        kind = dep.get("type", "")
        cfg = dep.get("config", {}) or {}
        if name in builtin:
            continue
        repo = cfg.get("name_or_path") or _FO_DEFAULTS.get(name) or _SAM.get(name) or _RFDETR.get(name)
        if kind.endswith("TorchImageModel") and "dinov2" in name:
            size = re.search(r"dinov2-(vit.14)", name)
            if size and name.endswith("-reg-torch"):
                repo = _DINOV2[size.group(1)].replace("dinov2-", "dinov2-with-registers-")
            elif size:
                repo = _DINOV2[size.group(1)]
        if name in _SAM or name in _RFDETR:
            kind = "fiftyone.utils.transformers"  # the same weights, through transformers
        if not (kind.startswith("fiftyone.utils.transformers") or repo and kind.endswith(("TorchImageModel", "TorchCLIPModel", "TorchOpenClipModel"))):
            continue
        rule = _repo_rule(repo or "") if repo else None
        if rule is None or repo is None:
            left.append(name)
            continue
        model_type, task = rule
        if model_type in ("oneformer", "mask2former") and cfg.get("task") in _UNIVERSAL_TASKS:
            task = _UNIVERSAL_TASKS[cfg["task"]]
        if model_type == "dinov2" and "registers" in repo:
            model_type = "dinov2_with_registers"
        out.append({
            "name": name,
            "repo": repo,
            "model_type": model_type,
            "task": task,
            "description": m.get("description", ""),
            "license": m.get("license", ""),
            "tags": [t for t in m.get("tags", []) if t != "official"],
        })
    return sorted(out, key=lambda e: e["name"]), left


_YOLO_TASKS = {"seg": "instance-segmentation", "pose": "keypoints", "cls": "classification", "obb": "detection"}


def ultralytics_entries(manifest_path: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """FiftyOne's Ultralytics names: ``(entries, names left out)``. YOLOE and
    YOLO-World are open-vocabulary (``classes=`` become their prompts); an
    OBB model's rotated boxes become the boxes that enclose them."""
    out: List[Dict[str, Any]] = []
    left: List[str] = []
    for m in _models(manifest_path):
        name = m["base_name"]
        dep = m.get("default_deployment_config_dict", {})
        kind = dep.get("type", "")
        if not kind.startswith("fiftyone.utils.ultralytics"):
            continue
        cfg = dep.get("config", {}) or {}
        weights = (cfg.get("entrypoint_args") or {}).get("model", "")
        stem = weights.rsplit(".", 1)[0]
        parts = stem.split("-")
        task = "detection"
        for suffix, t in _YOLO_TASKS.items():
            if suffix in parts[1:]:
                task = t
        family = "rtdetr" if kind.endswith("RTDETRModel") else "yoloe" if stem.startswith("yoloe") else \
            "world" if "world" in stem else "yolo"
        yaml = stem[:-1] if stem.endswith("u") and stem.startswith(("yolov5", "yolov3")) else stem
        if yaml.endswith("-pf"):
            yaml = yaml[:-3]  # prompt-free YOLOE: the same architecture, its vocabulary in the weights
        if yaml.endswith("-oiv7"):
            yaml = yaml[:-5]  # Open Images V7: YOLOv8 with a 601-class head (no YAML of its own)
        dataset = "imagenet" if task == "classification" else "dota" if "obb" in parts else \
            "oiv7" if "oiv7" in parts else "coco"
        out.append({
            "name": name,
            "weights": weights,
            "yaml": yaml + ".yaml",
            "family": family,
            "task": task,
            "dataset": dataset,
            "url": (m.get("manager") or {}).get("config", {}).get("url"),
            "description": m.get("description", ""),
            "license": "AGPL-3.0",
            "tags": [t for t in m.get("tags", []) if t != "official"],
        })
    return sorted(out, key=lambda e: e["name"]), left


def _dump(data: Dict[str, Any]) -> str:
    return json.dumps(data, indent=1) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--fiftyone-manifest", required=True, metavar="PATH", help="FiftyOne's manifest-torch.json")
    parser.add_argument("--check", action="store_true", help="exit 1 when a shipped index differs from a regeneration")
    args = parser.parse_args(argv)
    hf, hf_left = hf_entries(args.fiftyone_manifest)
    yolo, yolo_left = ultralytics_entries(args.fiftyone_manifest)
    source = "fiftyone 1.22.1 fiftyone/zoo/models/manifest-torch.json"
    texts = {
        HF_CATALOG_PATH: _dump({"generated_by": COMMAND, "source": source,
                                "tasks": HF_TASK_EXAMPLES, "fiftyone": hf, "left_out": hf_left}),
        ULTRALYTICS_CATALOG_PATH: _dump({"generated_by": COMMAND, "source": source,
                                         "fiftyone": yolo, "left_out": yolo_left}),
    }
    command = f"{COMMAND} --fiftyone-manifest {shlex.quote(args.fiftyone_manifest)}"
    results = [check_or_write(path, text, command, check=args.check) for path, text in texts.items()]
    if not args.check:
        print(f"wrote {len(hf)} transformers names (left out {len(hf_left)}: {', '.join(hf_left)})")
        print(f"wrote {len(yolo)} Ultralytics names (left out {len(yolo_left)}: {', '.join(yolo_left)})")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
