"""The Ultralytics zoo source: FiftyOne's YOLO names (``modelzoo[ultralytics]``).

``ultralytics`` is licensed AGPL-3.0, so it is an optional extra only:
never a dependency of modelzoo itself. The names are listed (from
``catalogs/ultralytics.json``, :mod:`modelzoo.zoo.generate_libs`) whether or
not it is installed; loading one without it says
``pip install 'modelzoo[ultralytics]'``.

Names: FiftyOne's (``yolov8n-coco-torch``, ``yolo11s-seg-coco-torch``,
``yolo11n-pose-coco-torch``, ``yolov8n-cls-imagenet-torch``,
``rtdetr-l-coco-torch``...) and ``ultralytics/<weights stem>``
(``ultralytics/yolov8n``). Pretrained weights are Ultralytics' pickled
``.pt`` release files, loaded only with ``trust=True``;
``pretrained=False`` builds the architecture from its YAML.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Dict, List, Optional

from .indexes import read_catalog
from .manifest import ModelSpec, Requirements, ZooModelInfo
from .sources import IndexedSource

#: what to install for these models (Ultralytics is AGPL-3.0: an optional extra only)
INSTALL_HINT = "pip install 'modelzoo[ultralytics]'"

__all__ = ["UltralyticsSource", "PREFIX", "read_ultralytics_catalog"]

PREFIX = "ultralytics/"
_MODEL = "modelzoo.zoo.ultralytics_models.UltralyticsModel"
_TAGS = {
    "detection": ["detection"],
    "instance-segmentation": ["detection", "instance-segmentation"],
    "keypoints": ["detection", "keypoints"],
    "classification": ["classification"],
}

_TRAINING_DATA = {
    "coco": "COCO 2017 train split",
    "imagenet": "ImageNet-1k (ILSVRC 2012) train split",
    "dota": "DOTA v1 train split",
    "oiv7": "Open Images V7 train split",
}


def read_ultralytics_catalog() -> Dict[str, Any]:
    """The shipped Ultralytics index (see :func:`~modelzoo.zoo.indexes.read_catalog`)."""
    from .generate_libs import REGENERATE, ULTRALYTICS_CATALOG_PATH

    return read_catalog(ULTRALYTICS_CATALOG_PATH, REGENERATE)


class UltralyticsSource(IndexedSource):
    """FiftyOne's Ultralytics names (see the module's docstring)."""

    name = "ultralytics"

    def read_entries(self) -> List[ZooModelInfo]:
        from .generate_libs import ULTRALYTICS_CATALOG_PATH

        origin = f"Ultralytics index ({ULTRALYTICS_CATALOG_PATH})"
        out = []
        for e in read_ultralytics_catalog()["fiftyone"]:
            out.append(self._entry(e["name"], e, origin, f"{e['description']} (FiftyOne's name for "
                                                         f"{PREFIX}{e['weights'].rsplit('.', 1)[0]})"))
            out.append(self._entry(PREFIX + e["weights"].rsplit(".", 1)[0], e, origin, ""))
        return out

    def _entry(self, name: str, e: Dict[str, Any], origin: str, description: str) -> ZooModelInfo:
        config = {k: e[k] for k in ("weights", "yaml", "url", "family", "task", "dataset")}
        return ZooModelInfo(
            name=name,
            version="1.0",
            description=description or f"Ultralytics {e['weights']}: {e['task'].replace('-', ' ')} ({e['dataset']})",
            source="https://docs.ultralytics.com/models/",
            license="AGPL-3.0",
            tags=tuple(dict.fromkeys([*e["tags"], *_TAGS[e["task"]], e["dataset"], "torch", "ultralytics"])),
            requirements=Requirements(packages=("torch", "ultralytics")),
            weights=None,
            model=ModelSpec(type=_MODEL, config=config, kind="class"),
            training_data=_TRAINING_DATA.get(e["dataset"], e["dataset"]),
            origin=origin,
            zoo_source=self.name,
            metadata={"prevalidated": True, "task": e["task"], "weights": e["weights"], "url": e["url"],
                      "install_hint": INSTALL_HINT},
        )

    def is_downloaded(self, info: ZooModelInfo) -> bool:
        import os

        from .weights import zoo_home

        return os.path.exists(os.path.join(zoo_home(), "ultralytics", info.metadata["weights"]))

    def download(self, info: ZooModelInfo, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
        import os

        import torch.hub

        from .weights import zoo_home

        path = os.path.join(zoo_home(), "ultralytics", info.metadata["weights"])
        if overwrite or not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            torch.hub.download_url_to_file(info.metadata["url"], path + ".part", progress=bool(progress))
            os.replace(path + ".part", path)
        return path

    def delete(self, info: ZooModelInfo) -> bool:
        import os

        from .weights import zoo_home

        path = os.path.join(zoo_home(), "ultralytics", info.metadata["weights"])
        if not os.path.exists(path):
            return False
        os.remove(path)
        return True

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """Builds the model: Ultralytics' weights (with ``trust=True``) or
        its YAML's architecture with seeded random weights."""
        from .build import seeded
        from .registry import build_model
        from .ultralytics_models import import_ultralytics

        import_ultralytics()  # the install hint, before anything else
        options.pop("download", None)
        options.pop("progress", None)
        config = {**dict(info.model.config or {}), "pretrained": pretrained}
        built = dataclasses.replace(info, model=dataclasses.replace(info.model, config=config))
        with seeded() if not pretrained else contextlib.nullcontext():
            return build_model(built, **options)
