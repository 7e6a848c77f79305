"""A zoo entry's requirements: installed packages and the hardware it runs on."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
from typing import List, Optional, Sequence

from ..errors import RequirementsError
from .manifest import ZooModelInfo

__all__ = ["missing_packages", "check_requirements", "check_device"]

logger = logging.getLogger("modelzoo.zoo")


def missing_packages(packages: Sequence[str]) -> List[str]:
    """The requirement strings of ``packages`` that the environment does not satisfy
    (not installed, or installed at a version outside the specifier)."""
    missing = []
    for spec in packages:
        try:
            from packaging.requirements import Requirement

            req = Requirement(spec)
            name, specifier = req.name, req.specifier
            if req.marker is not None and not req.marker.evaluate():
                continue
        except ImportError:  # without packaging, only presence is checked
            name, specifier = spec.split(";")[0].split("[")[0].strip(), None
            for op in ("==", ">=", "<=", "~=", "!=", ">", "<"):
                name = name.split(op)[0].strip()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if specifier is not None and len(specifier) and not specifier.contains(version, prereleases=True):
            missing.append(f"{spec} (installed: {version})")
    return missing


def _pip_install(packages: Sequence[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", *packages]
    logger.info("Installing requirements: %s", " ".join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [""]
        raise RequirementsError(f"pip install {' '.join(packages)} failed (exit {result.returncode}): {tail[0]}")
    importlib.invalidate_caches()


def check_requirements(info: ZooModelInfo, install: bool = False) -> None:
    """Checks (or, with ``install``, installs) the entry's packages.

    Raises:
        RequirementsError: listing the missing packages and the command that installs them.
    """
    missing = missing_packages(info.requirements.packages)
    if not missing:
        return
    specs = [m.split(" (installed")[0] for m in missing]
    if install:
        _pip_install(specs)
        missing = missing_packages(info.requirements.packages)
        if not missing:
            return
    quoted = " ".join(repr(s) if any(c in s for c in "<>=!~ ;") else s for s in specs)
    raise RequirementsError(
        f"Zoo model {info.key} needs packages that are not installed: {', '.join(missing)}. "
        f"Install them with `{info.metadata.get('install_hint') or 'pip install ' + quoted}`, "
        "or pass install_requirements=True."
    )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def check_device(info: ZooModelInfo, device: Optional[str] = None) -> None:
    """Checks that the entry can run here (on ``device`` when given).

    Raises:
        RequirementsError: a GPU-only model without a GPU, or a CPU-only model sent to a GPU.
    """
    req = info.requirements
    wants_gpu = device is not None and not str(device).startswith("cpu")
    wants_cpu = device is not None and str(device).startswith("cpu")
    if not req.cpu and (wants_cpu or not _cuda_available()):
        raise RequirementsError(
            f"Zoo model {info.key} runs only on a GPU, and "
            + ("device='cpu' was requested." if wants_cpu else "this machine has no CUDA GPU (torch.cuda.is_available() is False).")
        )
    if not req.gpu and wants_gpu:
        raise RequirementsError(f"Zoo model {info.key} runs only on the CPU; device={device!r} was requested.")
