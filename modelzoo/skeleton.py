"""Keypoint skeletons: ``{"labels": [point names], "edges": [[i, j], ...]}``.

Torch-free, so that configs naming a skeleton are checked without torch.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from .errors import ConfigError

__all__ = ["check_skeleton"]


def check_skeleton(skeleton: Any) -> Optional[Dict[str, Any]]:
    """Validates ``{"labels": [point names], "edges": [[i, j], ...]}`` and returns a clean copy."""
    if skeleton is None:
        return None
    if not isinstance(skeleton, Mapping) or set(skeleton) - {"labels", "edges"} or "edges" not in skeleton:
        raise ConfigError(
            f"skeleton must be a dict {{'labels': [point names], 'edges': [[i, j], ...]}}, got {skeleton!r:.200}"
        )
    labels = skeleton.get("labels")
    labels = None if labels is None else [str(x) for x in labels]
    edges = []
    for edge in skeleton["edges"]:
        try:
            edge = [int(i) for i in edge]
        except (TypeError, ValueError):
            raise ConfigError(f"skeleton edge {edge!r}: expected a list of point indices") from None
        if len(edge) < 2 or any(i < 0 or (labels is not None and i >= len(labels)) for i in edge):
            raise ConfigError(
                f"skeleton edge {edge!r}: expected two or more point indices"
                + (f" in [0, {len(labels) - 1}]" if labels is not None else "")
            )
        edges.append(edge)
    return {"labels": labels, "edges": edges}
