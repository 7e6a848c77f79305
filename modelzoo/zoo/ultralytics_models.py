"""The models of the Ultralytics zoo source: YOLO (and RT-DETR) through
Ultralytics' own predictor (``modelzoo[ultralytics]``, AGPL-3.0).

The engine's loader workers decode the images as Ultralytics decodes them
(its ``imread``: OpenCV, BGR, so the pixels are those of ``YOLO.predict``
on the files); each batch goes to ``YOLO.predict`` as one list
(Ultralytics letterboxes, batches, runs the network and its NMS), and its
results become the zoo's labels:
:class:`~modelzoo.Detections` (with instance masks for ``-seg`` models),
``{"detections", "keypoints"}`` for pose models, a
:class:`~modelzoo.Classification` for ``-cls`` models.
``benchmarks/bench_zoo_libs.py`` compares this with ``YOLO.predict``'s own
loop over the same files, and with handing Ultralytics the file paths to
load and batch itself (``feed="ultralytics"``); see docs/performance.md.

The model is a :class:`~modelzoo.TorchModelMixin` model, so a CPU run
measures its first batches and picks the loader workers and torch threads:
a YOLO network at 640x480 costs far more per image than decoding it, so its
forward gets every core (counted by its parameters alone, it would pass for
a light, decoding-bound model and run on one thread beside two workers).

Ultralytics' ``.pt`` files are pickled Python objects (loading one runs
code), so pretrained weights load only with ``trust=True``; ``pretrained=False``
builds the architecture from Ultralytics' YAML, with no file at all.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError, ZooError
from ..labels import Classification, Detection, Detections, Keypoint, Keypoints
from ..loaders import Loader, PathLoader, WorkItem
from ..mixins import TorchModelMixin
from ..models import Call, Model, ModelConfig
from .ultralytics_source import INSTALL_HINT

__all__ = ["UltralyticsModelConfig", "UltralyticsModel", "UltralyticsImageLoader", "INSTALL_HINT", "dataset_names"]

_TASKS = ("detection", "instance-segmentation", "keypoints", "classification")
_FEEDS = ("loader", "ultralytics")


class UltralyticsImageLoader(Loader):
    """Each file decoded as ``YOLO.predict`` decodes it (Ultralytics'
    ``imread``: OpenCV, EXIF orientation applied), a uint8 ``(H, W, 3)`` BGR
    array, in the engine's loader workers. Picklable."""

    def load(self, item: WorkItem) -> np.ndarray:
        imread = import_ultralytics("ultralytics.utils.patches").imread
        path = PathLoader().load(item)  # checked to exist: a missing file says so
        image = imread(path)
        if image is None:
            raise OSError(f"Cannot decode {path!r} as an image (OpenCV, as Ultralytics reads it)")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        return image

    @property
    def takes_frames(self) -> bool:
        return True

    def load_frame(self, item: WorkItem, frame: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(frame)[..., ::-1])  # RGB -> BGR


def import_ultralytics(module: str = "ultralytics") -> Any:
    """The ultralytics module (or one of its submodules), or a ZooError
    naming the extra to install.

    Importing Ultralytics has two process-wide effects that this undoes or
    prevents: it replaces ``PIL.Image.open`` with a wrapper that, the first
    time Pillow cannot identify a file, pip-installs and imports ``pi-heif``
    (so a corrupt image's error became "No module named 'pi_heif'" in every
    later ``Image.open`` of the process, Ultralytics or not); here
    ``PIL.Image.open`` is put back as it was. And its ``check_requirements``
    installs missing packages at run time unless ``YOLO_AUTOINSTALL`` is
    false; it is set false unless the user set it (modelzoo never lets a
    dependency install code into the running process).
    """
    import PIL.Image

    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    pil_open = PIL.Image.open
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ZooError(f"Ultralytics models need the ultralytics package (AGPL-3.0): {INSTALL_HINT}") from None
    finally:
        PIL.Image.open = pil_open  # type: ignore[assignment]


def dataset_names(dataset: str) -> List[str]:
    """The class names of one of Ultralytics' dataset YAMLs: ``coco`` (80),
    ``imagenet`` (1000), ``dota`` (15) or ``oiv7`` (Open Images V7, 601)."""
    ultralytics = import_ultralytics()
    import yaml

    file = {"coco": "coco.yaml", "imagenet": "ImageNet.yaml", "dota": "DOTAv1.yaml", "oiv7": "open-images-v7.yaml"}[dataset]
    path = os.path.join(os.path.dirname(ultralytics.__file__), "cfg", "datasets", file)
    with open(path, encoding="utf-8") as f:
        names = yaml.safe_load(f)["names"]
    return [str(names[i]) for i in sorted(names)]


@dataclasses.dataclass(init=False)
class UltralyticsModelConfig(ModelConfig):
    """How to build and run an Ultralytics model.

    Attributes:
        weights: the weights file's name (``"yolov8n.pt"``) or path.
        yaml: the architecture's YAML (``"yolov8n.yaml"``), for ``pretrained=False``.
        url: where ``weights`` is downloaded from.
        family: ``"yolo"``, ``"rtdetr"``, ``"yoloe"`` or ``"world"`` (open vocabulary: ``classes`` are its prompts).
        task: ``"detection"``, ``"instance-segmentation"``, ``"keypoints"`` or ``"classification"``.
        classes: the class names (default: the ``dataset``'s).
        dataset: ``"coco"``, ``"imagenet"``, ``"dota"`` or ``"oiv7"`` (the class names' source).
        pretrained: load ``weights`` (needs ``trust``), or build ``yaml`` with random weights.
        trust: accept Ultralytics' pickled ``.pt`` file (it runs code when loaded).
        weights_dir: where downloaded weights are kept (default: the zoo's cache).
        image_size: the letterbox size (640; 224 for classifiers).
        iou: NMS IoU threshold.
        max_det: detections kept per image.
        device: ``"cpu"``, ``"cuda:0"``...; default Ultralytics' choice.
        feed: how ``apply_model`` feeds it: ``"loader"`` (the engine's loader
            workers decode each file as Ultralytics does; the default: it
            keeps per-sample failures and video frames) or ``"ultralytics"``
            (its file paths go to ``YOLO.predict``, which reads them itself;
            measured faster on 300 photos on a quiet 2-core machine, see
            docs/performance.md).
    """

    model_cls = "modelzoo.zoo.ultralytics_models.UltralyticsModel"

    weights: str = ""
    yaml: str = ""
    url: Optional[str] = None
    family: str = "yolo"
    task: str = "detection"
    classes: Optional[List[str]] = None
    dataset: str = "coco"
    pretrained: bool = True
    trust: bool = False
    weights_dir: Optional[str] = None
    image_size: Optional[int] = None
    iou: float = 0.7
    max_det: int = 300
    device: Optional[str] = None
    feed: str = "loader"

    def validate(self) -> None:
        super().validate()
        if self.feed not in _FEEDS:
            raise ConfigError(f"feed must be one of {', '.join(map(repr, _FEEDS))}, got {self.feed!r}")
        if self.task not in _TASKS:
            raise ConfigError(f"task must be one of {', '.join(_TASKS)}, got {self.task!r}")
        if self.family not in ("yolo", "rtdetr", "yoloe", "world"):
            raise ConfigError(f"family must be 'yolo', 'rtdetr', 'yoloe' or 'world', got {self.family!r}")
        if self.pretrained and not self.weights:
            raise ConfigError("UltralyticsModelConfig needs weights (a .pt file) or pretrained=False with yaml")
        if not self.pretrained and not self.yaml:
            raise ConfigError("pretrained=False needs yaml (the architecture, e.g. 'yolov8n.yaml')")


class UltralyticsModel(TorchModelMixin, Model):
    """An Ultralytics model (see the module's docstring). :meth:`predict`
    takes uint8 RGB ``(H, W, 3)`` arrays; ``apply_model`` feeds it with
    :meth:`build_loader`'s inputs (see ``feed``)."""

    config_cls = UltralyticsModelConfig
    config: UltralyticsModelConfig

    def __init__(self, config: Any = None):
        super().__init__(config)
        cfg = self.config
        ultralytics = import_ultralytics()
        cls = {"rtdetr": ultralytics.RTDETR, "yoloe": ultralytics.YOLOE, "world": ultralytics.YOLOWorld}.get(cfg.family, ultralytics.YOLO)
        self._classes = list(cfg.classes) if cfg.classes else (["person"] if cfg.task == "keypoints" else dataset_names(cfg.dataset))
        if cfg.pretrained:
            self._yolo = cls(self._weights_file())
            if cfg.family in ("yoloe", "world") and cfg.classes:  # open vocabulary: the classes are the prompts
                if cfg.family == "yoloe":
                    self._yolo.set_classes(self._classes, self._yolo.get_text_pe(self._classes))
                else:
                    self._yolo.set_classes(self._classes)
            elif cfg.family in ("yoloe", "world"):
                self._classes = [str(v) for _, v in sorted(self._yolo.names.items())]
        else:
            self._yolo = cls(cfg.yaml)
            self._fit_classes()
        self._yolo.model.names = dict(enumerate(self._classes))
        self._image_size = cfg.image_size or (224 if cfg.task == "classification" else 640)

    def _fit_classes(self) -> None:
        """Rebuilds a YAML model whose head does not have one output per class."""
        module = self._yolo.model
        if len(getattr(module, "names", {}) or {}) == len(self._classes):
            return
        yaml_dict = dict(module.yaml)
        yaml_dict["nc"] = len(self._classes)
        self._yolo.model = type(module)(yaml_dict, nc=len(self._classes), verbose=False)

    def _weights_file(self) -> str:
        cfg = self.config
        if os.path.isfile(cfg.weights):
            path = cfg.weights
        else:
            from .weights import zoo_home

            folder = cfg.weights_dir or os.path.join(zoo_home(), "ultralytics")
            path = os.path.join(folder, os.path.basename(cfg.weights))
            if not os.path.exists(path):
                if not cfg.trust:
                    raise ZooError(self._trust_message(path))
                if os.environ.get("MODELZOO_OFFLINE") or not cfg.url:
                    raise ZooError(f"Ultralytics weights {os.path.basename(path)} are not on this machine; download "
                                   f"{cfg.url} and place it at {path}")
                import torch.hub

                os.makedirs(folder, exist_ok=True)
                torch.hub.download_url_to_file(cfg.url, path + ".part", progress=False)
                os.replace(path + ".part", path)
        if not cfg.trust:
            raise ZooError(self._trust_message(path))
        return path

    def _trust_message(self, path: str) -> str:
        return (f"Ultralytics weights ({os.path.basename(path)}) are pickled Python objects: loading one runs its code. "
                f"Pass trust=True to accept Ultralytics' release file ({self.config.url or path}), or "
                "pretrained=False for the architecture alone")

    # -- capabilities -------------------------------------------------------------------------
    @property
    def classes(self) -> List[str]:
        return list(self._classes)

    @property
    def skeleton(self) -> Optional[Dict[str, Any]]:
        if self.config.task != "keypoints":
            return None
        from .hf_models import COCO_KEYPOINTS, COCO_SKELETON

        return {"labels": list(COCO_KEYPOINTS), "edges": [list(e) for e in COCO_SKELETON]}

    @property
    def torch_model(self) -> Any:
        return self._yolo.model

    # -- inference ------------------------------------------------------------------------------
    def build_loader(self) -> Loader:
        """The engine's loader: files decoded as Ultralytics decodes them
        (BGR), or, with ``feed="ultralytics"``, their paths."""
        return PathLoader() if self.config.feed == "ultralytics" else UltralyticsImageLoader()

    def predict(self, arg: Any) -> Any:
        return self.predict_all([arg])[0]

    def predict_all(self, args: Sequence[Any]) -> List[Any]:
        """Labels for uint8 RGB ``(H, W, 3)`` arrays (or file paths)."""
        images = [a if isinstance(a, str) else np.ascontiguousarray(np.asarray(a)[..., ::-1]) for a in args]
        return self._predict_sources(images)  # Ultralytics reads arrays as BGR

    def run_batch(self, inputs: Any, call: Call, samples: Optional[Sequence[Optional[Dict[str, Any]]]] = None) -> Any:
        """The engine's call: its loader's BGR arrays (or paths) go to ``YOLO.predict`` as they are."""
        if not call.loaded:
            return super().run_batch(inputs, call, samples)
        return self._predict_sources(list(inputs))

    def _predict_sources(self, images: List[Any]) -> List[Any]:
        """``YOLO.predict`` on BGR arrays or file paths, as one batch."""
        kwargs: Dict[str, Any] = {"verbose": False, "imgsz": self._image_size, "iou": self.config.iou,
                                  "max_det": self.config.max_det, "retina_masks": True, "batch": len(images)}
        kwargs["conf"] = self.config.confidence_thresh if self.config.confidence_thresh is not None else 0.25
        if self.config.device is not None:
            kwargs["device"] = self.config.device
        results = self._yolo.predict(images, **kwargs)
        return [self._labels(r) for r in results]

    def _labels(self, r: Any) -> Any:
        h, w = r.orig_shape
        if self.config.task == "classification":
            top = int(r.probs.top1)
            return Classification(label=self._classes[top], confidence=float(r.probs.top1conf))
        boxes = r.obb if getattr(r, "obb", None) is not None else r.boxes  # OBB: the boxes enclosing the rotated ones
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        conf = boxes.conf.cpu().numpy()
        cls = boxes.cls.cpu().numpy().astype(int)
        masks = r.masks.data.cpu().numpy() > 0.5 if (self.config.task == "instance-segmentation" and r.masks is not None) else None
        dets = []
        for j, (x1, y1, x2, y2) in enumerate(xyxy):
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            det = Detection(label=self._classes[cls[j]] if cls[j] < len(self._classes) else str(cls[j]),
                            bounding_box=[x1 / w, y1 / h, (x2 - x1) / w, (y2 - y1) / h], confidence=float(conf[j]))
            if masks is not None:
                c1, r1 = int(round(x1)), int(round(y1))
                c2, r2 = max(int(round(x2)), c1 + 1), max(int(round(y2)), r1 + 1)
                det.mask = masks[j, r1:r2, c1:c2]
            dets.append(det)
        detections = Detections(detections=dets)
        if self.config.task != "keypoints":
            return detections
        points = []
        if r.keypoints is not None and len(dets):
            xy = r.keypoints.xy.cpu().numpy()
            kc = r.keypoints.conf.cpu().numpy() if r.keypoints.conf is not None else np.ones(xy.shape[:2])
            for j, det in enumerate(dets):
                pts = [[float(x) / w, float(y) / h] for x, y in xy[j]]
                points.append(Keypoint(label=det.label, points=pts, confidence=[float(c) for c in kc[j]],
                                       bounding_box=det.bounding_box))
        return {"detections": detections, "keypoints": Keypoints(keypoints=points)}

    def __repr__(self) -> str:
        return f"UltralyticsModel({self.config.weights or self.config.yaml!r}, task={self.config.task!r})"
