"""The torchvision zoo source: every builder x weights of torchvision, by name.

Names:

* ``torchvision/<builder>.<WEIGHTS>``: one weights enum
  (``torchvision/resnet50.IMAGENET1K_V2``; case is ignored on lookup);
* ``torchvision/<builder>``: the builder's ``DEFAULT`` weights;
* FiftyOne's name wherever FiftyOne's zoo has the same model
  (``alexnet-imagenet-torch``), preprocessed as FiftyOne preprocesses it.
  Four of FiftyOne's names are the zoo's own manifests' entries
  (``mobilenet-v2-imagenet-torch``...), which keep their manifests.

Listing reads the generated index ``catalogs/torchvision.json`` (see
:mod:`modelzoo.zoo.generate`) and imports neither torch nor torchvision.
An entry's weights carry torchvision's URL and the sha256 prefix its file
name holds (torch hub's rule); the whole sha256 is recorded on first
download. The names of one weights file share one cached copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Any, Dict, List, Optional

from . import indexes
from .manifest import ModelSpec, Requirements, WeightsSpec, ZooModelInfo
from .sources import ZooSource

__all__ = ["TorchvisionSource", "PREFIX", "read_catalog"]

PREFIX = "torchvision/"
_IMAGE_MODEL = "modelzoo.zoo.torchvision_models.TorchvisionImageModel"
_VIDEO_MODEL = "modelzoo.zoo.torchvision_models.TorchvisionVideoModel"
_TRAINING_DATA = {
    "imagenet": "ImageNet-1k (ILSVRC 2012) training split, 1.28M images, 1000 classes",
    "coco": "COCO 2017 train split",
    "kinetics": "Kinetics-400 training split, 400 human action classes",
}
_TASK_TAGS = {
    "classification": ["classification", "embeddings", "logits"],
    "detection": ["detection"],
    "instance-segmentation": ["detection", "instance-segmentation"],
    "keypoints": ["detection", "keypoints"],
    "segmentation": ["segmentation"],
    "video-classification": ["video", "classification"],
    "embeddings": ["embeddings"],
}


def read_catalog() -> Dict[str, Any]:
    """The shipped index (``modelzoo/zoo/catalogs/torchvision.json``; see
    :func:`modelzoo.zoo.indexes.read_catalog`)."""
    from .generate import CATALOG_PATH, COMMAND

    return indexes.read_catalog(CATALOG_PATH, COMMAND)


def _metrics_text(metrics: Dict[str, Dict[str, float]]) -> str:
    parts = []
    for dataset, values in metrics.items():
        measured = [f"{k} {v}" for k, v in values.items() if v is not None]
        if measured:
            parts.append(dataset + " " + ", ".join(measured))
    return "; ".join(parts)


class TorchvisionSource(ZooSource):
    """Every torchvision builder x weights enum (see the module's docstring)."""

    name = "torchvision"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: Optional[List[ZooModelInfo]] = None
        self._catalog: Optional[Dict[str, Any]] = None

    def reload(self) -> None:
        with self._lock:
            self._entries = None
            self._catalog = None

    def catalog(self) -> Dict[str, Any]:
        with self._lock:
            if self._catalog is None:
                self._catalog = read_catalog()
            return self._catalog

    def entries(self) -> List[ZooModelInfo]:
        catalog = self.catalog()
        with self._lock:
            if self._entries is None:
                self._entries = self._build_entries(catalog)
            return self._entries

    def _build_entries(self, catalog: Dict[str, Any]) -> List[ZooModelInfo]:
        from .generate import CATALOG_PATH

        version = catalog["torchvision"]
        origin = f"torchvision {version} ({CATALOG_PATH})"
        out: List[ZooModelInfo] = []
        by_builder: Dict[str, Dict[str, Any]] = {}
        for b in catalog["builders"]:
            by_builder[b["builder"]] = b
            for w in b["weights"]:
                canonical = f"{PREFIX}{b['builder']}.{w['name']}"
                out.append(self._entry(canonical, b, w, origin, canonical))
                if w["name"] == b["default"]:
                    out.append(self._entry(f"{PREFIX}{b['builder']}", b, w, origin, canonical))
        for fo in catalog["fiftyone"]:
            if fo["served_by"] != "torchvision":
                continue
            b = by_builder[fo["builder"]]
            w = next(x for x in b["weights"] if x["name"] == fo["weights"])
            canonical = f"{PREFIX}{b['builder']}.{w['name']}"
            out.append(self._fiftyone_entry(fo, b, w, origin, canonical))
        return out

    def _entry(self, name: str, b: Dict[str, Any], w: Dict[str, Any], origin: str, canonical: str,
               config: Optional[Dict[str, Any]] = None, tags: Optional[List[str]] = None,
               description: str = "") -> ZooModelInfo:
        task = w.get("task", b["task"])
        dataset_tags = list(w["tags"])
        default = " (its DEFAULT weights)" if "." not in name.split("/", 1)[-1] and name.startswith(PREFIX) else ""
        desc = description or (
            f"torchvision {b['builder']}, weights {w['enum']}{default}: {task.replace('-', ' ')}"
            + (f"; {_metrics_text(w['metrics'])}" if w["metrics"] else "")
            + (f"; {w['num_params']:,} parameters" if w.get("num_params") else "")
        )
        training = "; ".join(_TRAINING_DATA[t] for t in dataset_tags if t in _TRAINING_DATA)
        all_tags = list(dict.fromkeys([*(tags or []), *_TASK_TAGS[task], *dataset_tags, "torch", "torchvision"]))
        if task == "classification" and "embeddings_layer" not in (config or w["config"]):
            all_tags.remove("embeddings")
        return ZooModelInfo(
            name=name,
            version="1.0",
            description=desc,
            source=w["recipe"] or "https://pytorch.org/vision/stable/models.html",
            license=w["license"],
            size_bytes=None,
            tags=tuple(all_tags),
            requirements=Requirements(packages=("torch", "torchvision")),
            weights=WeightsSpec(url=w["url"], sha256=w["sha256_prefix"], filename=w["filename"]),
            model=ModelSpec(type=_VIDEO_MODEL if task == "video-classification" else _IMAGE_MODEL,
                            config=dict(config or w["config"]), kind="class"),
            date_added=None,
            training_data=training or "see the weights' recipe",
            origin=origin,
            zoo_source=self.name,
            metadata={
                "prevalidated": True,
                "builder": b["builder"],
                "weights": w["enum"],
                "task": task,
                "categories": w["categories"],
                "keypoint_names": w.get("keypoint_names"),
                "transforms": w["transforms"],
                "metrics": w["metrics"],
                "num_params": w.get("num_params"),
                "file_size_mb": w.get("file_size_mb"),
                "canonical": canonical,
            },
        )

    def _fiftyone_entry(self, fo: Dict[str, Any], b: Dict[str, Any], w: Dict[str, Any], origin: str,
                        canonical: str) -> ZooModelInfo:
        """FiftyOne's name, preprocessed as FiftyOne's entry says (no crop;
        its min/max dims, its exact size, or its shorter side)."""
        config = {k: v for k, v in w["config"].items() if k not in ("resize_size", "crop_size", "interpolation")}
        fo_config = dict(fo["config"])
        if "image_dim" in fo_config:
            config["resize_size"] = fo_config.pop("image_dim")
        if "image_size" in fo_config:
            size = fo_config.pop("image_size")
            config["image_size"] = list(size) if isinstance(size, (list, tuple)) else size
        config.update(fo_config)
        if b["task"] == "classification" and not any(k in config for k in ("image_size", "image_min_dim", "resize_size")):
            config["resize_size"] = w["config"].get("resize_size")
        description = f"{fo['description']} (FiftyOne's name for torchvision/{b['builder']}.{w['name']}, preprocessed as FiftyOne does)"
        return self._entry(fo["name"], b, w, origin, canonical, config=config,
                           tags=[t for t in fo["tags"] if t != "official"], description=description)

    # -- loading --------------------------------------------------------------------------
    def weights_entry(self, info: ZooModelInfo) -> ZooModelInfo:
        """The entry whose cache holds ``info``'s weights (every name of one
        weights enum shares ``torchvision/<builder>.<WEIGHTS>``'s copy)."""
        canonical = info.metadata.get("canonical", info.name)
        if canonical == info.name:
            return info
        for other in self.entries():
            if other.name == canonical:
                return other
        return info

    def _classes(self, info: ZooModelInfo) -> Dict[str, Any]:
        catalog = self.catalog()
        out: Dict[str, Any] = {}
        key = info.metadata.get("categories")
        if key:
            out["classes"] = list(catalog["categories"][key])
        kp = info.metadata.get("keypoint_names")
        if kp:
            out["skeleton"] = {"labels": list(catalog["keypoint_names"][kp]), "edges": []}
        return out

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """Builds the entry with torchvision's builder; ``entrypoint_args``
        given as an override are merged into the entry's (``min_size=`` of a
        detector), ``weights_path`` replaces the zoo's file."""
        from . import weights as _weights
        from .build import seeded
        from .registry import build_model

        download = options.pop("download", True)
        progress = options.pop("progress", None)
        weights_file = options.pop("weights_path", None)
        if weights_file is None and pretrained:
            weights_file = _weights.resolve_weights(self.weights_entry(info), download=download, progress=progress)
        config = dict(info.model.config or {})
        extra_args = options.pop("entrypoint_args", None) or {}  # merged: the builder and weights stay
        config["entrypoint_args"] = {**config["entrypoint_args"], **extra_args, "weights_file": weights_file}
        for key, value in self._classes(info).items():
            config.setdefault(key, value)
        built = dataclasses.replace(info, model=dataclasses.replace(info.model, config=config))
        with seeded() if weights_file is None else contextlib.nullcontext():
            return build_model(built, **options)
