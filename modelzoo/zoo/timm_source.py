"""The timm zoo source: every pretrained tag of timm, by name (``modelzoo[timm]``).

Names: ``timm/<architecture>.<tag>`` (``timm/resnet50.a1_in1k``), one per
entry of ``timm.list_pretrained()``. Each carries the tag's data config
(input size, interpolation, crop, mean, std); a tag with a classifier
predicts a :class:`~modelzoo.Classification` with the class names timm has
for its ImageNet subset (else the indices), and every tag embeds: the
pooled features (``forward_head(pre_logits=True)``), whose width the entry
declares (``metadata["embeddings_dim"]``).

Listing reads the generated index ``catalogs/timm.json``
(:mod:`modelzoo.zoo.generate_timm`) and imports neither timm nor torch.
Weights come through the Hugging Face hub cache, as timm fetches them
(``HF_HOME``, ``HF_HUB_OFFLINE`` honoured); ``pretrained=False`` builds the
registry's architecture offline with seeded random weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Dict, List, Optional

from .manifest import ModelSpec, Requirements, ZooModelInfo
from .sources import IndexedSource

__all__ = ["TimmSource", "PREFIX", "timm_config"]

PREFIX = "timm/"
_MODEL = "modelzoo.zoo.torchvision_models.TorchvisionImageModel"
_ENTRYPOINT = "modelzoo.zoo.timm_models.build_timm"


def timm_config(tag: Dict[str, Any]) -> Dict[str, Any]:
    """The zoo's model config for one tag of the index: timm's eval
    transform (``transforms_factory.transforms_imagenet_eval``) as
    resize / centre crop settings, resized by PIL as timm resizes (so the
    pixels are timm's), the classifier and the embeddings tap."""
    _, h, w = tag["input_size"]
    crop_pct = tag["crop_pct"]
    if tag["crop_mode"] == "squash":
        resize: Any = [math.floor(h / crop_pct), math.floor(w / crop_pct)]
    elif h == w:
        resize = math.floor(h / crop_pct)
    else:
        resize = [math.floor(h / crop_pct), math.floor(w / crop_pct)]
    config: Dict[str, Any] = {
        "entrypoint_fcn": _ENTRYPOINT,
        "entrypoint_args": {"name": tag["name"]},
        "resize_size": resize,
        "crop_size": [h, w],
        "image_mean": tag["mean"],
        "image_std": tag["std"],
        "interpolation": tag["interpolation"] if tag["interpolation"] in ("bilinear", "bicubic", "nearest") else "bilinear",
        "preprocessing": "pil",  # PIL's resize, as timm's transform: its pixels exactly (and cheaper than the tensor bicubic)
    }
    if tag["num_classes"]:
        config["output_processor_cls"] = "ClassifierOutputProcessor"
        config["embeddings_layer"] = "pre_logits"  # TimmNet's forward_head(pre_logits=True)
    return config


class TimmSource(IndexedSource):
    """Every pretrained tag of timm (see the module's docstring)."""

    name = "timm"

    def read_entries(self) -> List[ZooModelInfo]:
        from .generate_timm import TIMM_CATALOG_PATH, read_timm_catalog

        catalog = read_timm_catalog()
        origin = f"timm {catalog['timm']} ({TIMM_CATALOG_PATH})"
        widths = catalog["feature_widths"]
        return [self._entry(t, widths.get(t["architecture"]), origin) for t in catalog["tags"]]

    def _entry(self, tag: Dict[str, Any], width: Optional[int], origin: str) -> ZooModelInfo:
        task = "classification" if tag["num_classes"] else "embeddings"
        tags = ["classification", "logits", "embeddings"] if task == "classification" else ["embeddings"]
        if tag["classes"]:
            tags.append(tag["classes"])
        _, h, w = tag["input_size"]
        classes = f"{tag['num_classes']} classes" + (f" ({tag['classes']})" if tag["classes"] else "")
        desc = f"timm {tag['architecture']}, pretrained tag {tag['tag']}: " + (
            f"classification, {classes}" if task == "classification" else "image embeddings"
        ) + f"; {h}x{w} input" + (f", {width}-d embeddings" if width else "")
        return ZooModelInfo(
            name=PREFIX + tag["name"],
            version="1.0",
            description=desc,
            source=f"https://huggingface.co/{tag['hf_hub_id']}" if tag["hf_hub_id"] else (tag["url"] or "https://github.com/huggingface/pytorch-image-models"),
            license=tag["license"],
            tags=tuple([*tags, "torch", "timm"]),
            requirements=Requirements(packages=("torch", "timm")),
            weights=None,
            model=ModelSpec(type=_MODEL, config=timm_config(tag), kind="class"),
            training_data=f"see the tag's model card ({tag['tag']})",
            origin=origin,
            zoo_source=self.name,
            metadata={
                "prevalidated": True,
                "architecture": tag["architecture"],
                "tag": tag["tag"],
                "task": task,
                "hf_hub_id": tag["hf_hub_id"],
                "num_classes": tag["num_classes"],
                "imagenet_subset": tag["classes"],
                "embeddings_dim": width,
                "input_size": tag["input_size"],
            },
        )

    # -- files: the Hugging Face hub cache, as timm uses it --------------------------------
    def download(self, info: ZooModelInfo, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
        """Fetches the tag's weights into the Hugging Face hub cache (what
        ``timm.create_model(pretrained=True)`` reads); returns the cached folder."""
        hub_id = info.metadata.get("hf_hub_id")
        if not hub_id:
            from .build import seeded
            from .timm_models import build_timm

            with seeded():
                build_timm(info.name[len(PREFIX):], pretrained=True)  # timm's own download (its URL)
            return None
        from huggingface_hub import snapshot_download

        return str(snapshot_download(hub_id, force_download=overwrite))

    def is_downloaded(self, info: ZooModelInfo) -> bool:
        hub_id = info.metadata.get("hf_hub_id")
        if not hub_id:
            return False
        from huggingface_hub import scan_cache_dir

        try:
            return any(repo.repo_id == hub_id for repo in scan_cache_dir().repos)
        except Exception:  # no cache folder yet
            return False

    def delete(self, info: ZooModelInfo) -> bool:
        hub_id = info.metadata.get("hf_hub_id")
        if not hub_id:
            return False
        from huggingface_hub import scan_cache_dir

        try:
            cache = scan_cache_dir()
        except Exception:
            return False
        revisions = [r.commit_hash for repo in cache.repos if repo.repo_id == hub_id for r in repo.revisions]
        if not revisions:
            return False
        cache.delete_revisions(*revisions).execute()
        return True

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """Builds the tag with ``timm.create_model`` (weights from the hub
        cache, or random and seeded for ``pretrained=False``), with its class
        names from timm's ImageNet info."""
        from .build import seeded
        from .registry import build_model
        from .timm_models import timm_classes

        options.pop("download", None)
        options.pop("progress", None)
        config = dict(info.model.config or {})
        config["entrypoint_args"] = {**config["entrypoint_args"], **options.pop("entrypoint_args", {}), "pretrained": pretrained}
        if info.metadata.get("num_classes") and "classes" not in options:
            config["classes"] = timm_classes(info.metadata.get("imagenet_subset"), int(info.metadata["num_classes"]))
        built = dataclasses.replace(info, model=dataclasses.replace(info.model, config=config))
        with seeded() if not pretrained else contextlib.nullcontext():
            return build_model(built, **options)
