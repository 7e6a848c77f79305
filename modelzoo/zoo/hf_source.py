"""The Hugging Face transformers zoo source (``modelzoo[transformers]``).

Names:

* ``hf/<owner>/<repo>`` for any Hugging Face repository of a vision task
  the zoo maps (:data:`~modelzoo.zoo.hf_models.TASKS`): image
  classification, DETR-style detection (DETR, RT-DETR, D-FINE, YOLOS...),
  zero-shot detection (OWL-ViT, OWLv2, Grounding DINO, OmDet-Turbo), zero-shot
  classification (CLIP, SigLIP), zero-shot segmentation (GroupViT), semantic,
  instance and panoptic segmentation (SegFormer, Mask2Former, OneFormer),
  promptable segmentation (Segment Anything, SAM 2), depth (Depth Anything, DPT, as a
  :class:`~modelzoo.Heatmap`), ViTPose keypoints and embeddings (DINOv2,
  DINOv3). The task comes from the repository's config when the model is
  loaded; the names listed are those of FiftyOne's zoo and one example per task.
* FiftyOne's names for the same models (``owlvit-base-patch32-torch``,
  ``segformer-b0-ade20k-torch``, ``dinov2-vits14-torch``...).

Listing reads ``catalogs/transformers.json`` (:mod:`modelzoo.zoo.generate_libs`)
and imports neither transformers nor torch. Weights come through the Hugging
Face hub cache (``HF_HOME``, ``HF_HUB_OFFLINE``). ``pretrained=False`` builds
from ``hf_config=`` (a transformers config), else the repository's cached
config, else transformers' default config of the entry's model type; nothing
is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from typing import Any, Dict, List, Optional

from .indexes import read_catalog
from .manifest import ModelSpec, Requirements, ZooModelInfo
from .sources import IndexedSource

__all__ = ["TransformersSource", "PREFIX", "read_hf_catalog"]

PREFIX = "hf/"
_MODEL = "modelzoo.zoo.hf_models.HFImageModel"
_SAM_MODEL = "modelzoo.zoo.hf_sam.HFSamModel"  # promptable segmentation (Segment Anything)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_hf_catalog() -> Dict[str, Any]:
    """The shipped transformers index (see :func:`~modelzoo.zoo.indexes.read_catalog`)."""
    from .generate_libs import HF_CATALOG_PATH, REGENERATE

    return read_catalog(HF_CATALOG_PATH, REGENERATE)


class TransformersSource(IndexedSource):
    """Hugging Face vision models (see the module's docstring)."""

    name = "transformers"

    def read_entries(self) -> List[ZooModelInfo]:
        from .generate_libs import HF_CATALOG_PATH

        catalog = read_hf_catalog()
        origin = f"transformers index ({HF_CATALOG_PATH})"
        out: List[ZooModelInfo] = []
        repos: Dict[str, Dict[str, Any]] = {}
        for e in catalog["fiftyone"]:
            repos.setdefault(e["repo"], e)
            out.append(self._entry(e["name"], e["repo"], e["task"], e["model_type"], origin,
                                   description=f"{e['description']} (FiftyOne's name for hf/{e['repo']})",
                                   tags=e["tags"], license=e["license"]))
        for task, repo in catalog["tasks"].items():
            repos.setdefault(repo, {"task": task, "model_type": None})
        for repo, e in sorted(repos.items()):
            out.append(self._entry(PREFIX + repo, repo, e["task"], e["model_type"], origin))
        return out

    def _entry(self, name: str, repo: str, task: Optional[str], model_type: Optional[str], origin: str,
               description: str = "", tags: Optional[List[str]] = None, license: str = "") -> ZooModelInfo:
        from .generate_libs import TASK_TAGS

        task_tags = TASK_TAGS.get(task or "", [])
        return ZooModelInfo(
            name=name,
            version="1.0",
            description=description or f"Hugging Face {repo}: {(task or 'task read from its config').replace('-', ' ')}",
            source=f"https://huggingface.co/{repo}",
            license=license,
            tags=tuple(dict.fromkeys([*(tags or []), *task_tags, "torch", "transformers"])),
            requirements=Requirements(packages=("torch", "transformers")),
            weights=None,
            model=ModelSpec(type=_SAM_MODEL if task == "promptable-segmentation" else _MODEL, config={"repo": repo, "task": task, "model_type": model_type}, kind="class"),
            training_data="see the repository's model card",
            origin=origin,
            zoo_source=self.name,
            metadata={"prevalidated": True, "repo": repo, "task": task, "model_type": model_type},
        )

    def describe(self, name: str) -> Optional[ZooModelInfo]:
        """Any ``hf/<owner>/<repo>``: its task is read from its config at load."""
        if not name.startswith(PREFIX):
            return None
        repo = name[len(PREFIX):].partition("@")[0]
        if not _REPO_RE.match(repo):
            return None
        return self._entry(PREFIX + repo, repo, None, None, "hf/<repo> (resolved on load)")

    # -- files: the Hugging Face hub cache --------------------------------------------------
    def download(self, info: ZooModelInfo, overwrite: bool = False, progress: Optional[bool] = None) -> Optional[str]:
        from huggingface_hub import snapshot_download

        return str(snapshot_download(info.metadata["repo"], force_download=overwrite))

    def is_downloaded(self, info: ZooModelInfo) -> bool:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(info.metadata["repo"], "config.json")
        return isinstance(found, str) and os.path.exists(found)

    def delete(self, info: ZooModelInfo) -> bool:
        from huggingface_hub import scan_cache_dir

        try:
            cache = scan_cache_dir()
        except Exception:  # no cache folder yet
            return False
        revisions = [r.commit_hash for repo in cache.repos if repo.repo_id == info.metadata["repo"] for r in repo.revisions]
        if not revisions:
            return False
        cache.delete_revisions(*revisions).execute()
        return True

    def load(self, info: ZooModelInfo, *, pretrained: bool = True, **options: Any) -> Any:
        """Builds the model (see the module's docstring); ``classes=`` of a
        zero-shot model become its text prompts, embedded once."""
        from .build import seeded
        from .registry import build_model

        options.pop("download", None)
        options.pop("progress", None)
        config = {**dict(info.model.config or {}), "pretrained": pretrained}
        built = dataclasses.replace(info, model=dataclasses.replace(info.model, config=config))
        with seeded() if not pretrained else contextlib.nullcontext():
            return build_model(built, **options)
