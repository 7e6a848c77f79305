"""Building a zoo entry's model: its weights (or seeded random ones), then the model.

What every source does by default (see :meth:`ZooSource.load
<modelzoo.zoo.sources.ZooSource.load>`): a model class with its config is
built with the verified weights file, or, with ``pretrained=False``, with
none and the random generator seeded, so two processes build the same
untrained model. A factory or a bundle is called as registered.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any, Iterator, Optional

from ..atomic import atomic_write
from ..errors import ZooError
from ..imports import import_object
from ..models import Model
from . import weights as _weights
from .manifest import ZooModelInfo
from .registry import build_model

__all__ = ["ARCHITECTURE_SEED", "build_entry", "seeded", "post_download"]

#: the seed of ``pretrained=False`` models: the same random weights in every process
ARCHITECTURE_SEED = 0


@contextlib.contextmanager
def seeded(seed: int = ARCHITECTURE_SEED) -> Iterator[None]:
    """Seeds torch's CPU generator inside the block and restores its state
    after (the caller's random stream is left as it was). Imports torch."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name for p in params)  # named: **kwargs would swallow it silently


def build_entry(
    info: ZooModelInfo,
    *,
    pretrained: bool = True,
    download: bool = True,
    progress: Optional[bool] = None,
    **overrides: Any,
) -> Any:
    """Builds the model of a manifest-style entry.

    Raises:
        DownloadError, ChecksumError: the weights (see :func:`modelzoo.load_zoo_model`).
        ZooError: ``pretrained=False`` for a factory or bundle that cannot build without its weights.
    """
    kind = info.model.kind
    if not pretrained:
        if kind == "class":
            with seeded():
                return build_model(info, **overrides)
        target = info.model.type.load_model if kind == "loader" else info.model.type
        if not _accepts(target, "pretrained"):
            raise ZooError(
                f"Zoo model {info.key} is a {'bundle' if kind == 'loader' else 'factory'} that takes no "
                "'pretrained' argument, so it cannot be built without its weights; load it with pretrained=True"
            )
        with seeded():
            return build_model(info, pretrained=False, **overrides)
    weights_path = None
    if "weights_path" not in overrides and kind == "class":
        weights_path = _weights.resolve_weights(info, download=download, progress=progress)
    if download:
        post_download(info, force=False)
    return build_model(info, weights_path=weights_path, **overrides)


def post_download(info: ZooModelInfo, force: bool) -> None:
    """Runs the model class's ``zoo_post_download()`` hook, if it has one (a
    Tungsten-style model's ``post_build``), once per entry: the first
    download or load, and again on ``download_zoo_model(overwrite=True)``.
    A marker file in the entry's cache directory records that it ran."""
    if info.model.kind != "class":
        return
    cls = info.model.type
    if isinstance(cls, str):
        cls = import_object(cls, "model.type")
    hook = cls.zoo_post_download if isinstance(cls, type) and issubclass(cls, Model) else None
    if hook is None:  # declared by the class: no hook, no marker file
        return
    marker = os.path.join(_weights.model_dir(info), ".post_download")
    if os.path.exists(marker) and not force:
        return
    hook()
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    with atomic_write(marker) as f:
        f.write(f"{cls.__module__}.{cls.__qualname__}\n")
