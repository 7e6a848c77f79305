"""Helpers on nested model outputs (tensors in dicts, lists, namedtuples):
moving them to the CPU, comparing two of them, channels_last batches."""

from __future__ import annotations

from typing import Any, Mapping, Tuple

import torch

__all__ = ["to_cpu_float", "outputs_close", "to_channels_last"]


def to_cpu_float(obj: Any) -> Any:
    """Moves every tensor in a nested output to the CPU; floating ones become float32."""
    if isinstance(obj, torch.Tensor):
        obj = obj.detach()
        if obj.is_floating_point() and obj.dtype != torch.float32:
            obj = obj.float()
        return obj.cpu()
    if isinstance(obj, Mapping):
        return {k: to_cpu_float(v) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_cpu_float(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu_float(v) for v in obj)
    return obj


def outputs_close(a: Any, b: Any, rtol: float = 1e-4) -> Tuple[bool, str]:
    """Compares two nested outputs. Tensors match when
    ``max|a - b| <= rtol * max|b|`` (relative to the reference's scale) and
    integer tensors are equal. Returns ``(ok, why_not)``."""
    if isinstance(b, torch.Tensor):
        if not isinstance(a, torch.Tensor):
            return False, f"expected a tensor, got {type(a).__name__}"
        if a.shape != b.shape:
            return False, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
        if not b.is_floating_point():
            return (bool(torch.equal(a.cpu(), b.cpu())), "integer outputs differ")
        if b.numel() == 0:
            return True, ""
        a32, b32 = a.detach().float().cpu(), b.detach().float().cpu()
        if not torch.isfinite(a32).all() or not torch.isfinite(b32).all():
            return False, "non-finite values"
        diff = (a32 - b32).abs().max().item()
        scale = b32.abs().max().item()
        if diff > rtol * max(scale, 1e-30):
            return False, f"max abs difference {diff:.3g} > {rtol:g} x max |reference| {scale:.3g}"
        return True, ""
    if isinstance(b, Mapping):
        if not isinstance(a, Mapping) or set(a) != set(b):
            return False, "output dict keys differ"
        for k in b:
            ok, why = outputs_close(a[k], b[k], rtol)
            if not ok:
                return False, f"[{k!r}]: {why}"
        return True, ""
    if isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or len(a) != len(b):
            return False, "output sequence lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            ok, why = outputs_close(x, y, rtol)
            if not ok:
                return False, f"[{i}]: {why}"
        return True, ""
    return (a == b, f"{a!r} != {b!r}")


def to_channels_last(x: Any) -> Any:
    """Puts a batch (NCHW tensor or list of CHW tensors) in channels_last order."""
    if isinstance(x, list):
        return [to_channels_last(t) for t in x]
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return x.unsqueeze(0).contiguous(memory_format=torch.channels_last)[0]
    return x
