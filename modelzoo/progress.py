"""The one progress bar: apply/embed runs count samples, downloads count bytes."""

from __future__ import annotations

import sys
from typing import Any, Optional

__all__ = ["progress_bar"]


def progress_bar(
    total: Optional[int],
    desc: str,
    unit: str = "samples",
    enabled: Optional[bool] = None,
    initial: int = 0,
    smoothing: float = 0.3,
) -> Any:
    """A tqdm bar on stderr, usable as a context manager.

    Args:
        total: the count at the end, or None when unknown.
        desc: the text before the bar (a model or file name).
        unit: what is counted; ``"B"`` shows bytes in KiB/MiB/GiB.
        enabled: show the bar; None shows it when stderr is a terminal. A
            disabled bar accepts the same calls and prints nothing.
        initial: the count already done (a resumed download).
        smoothing: tqdm's speed averaging, 0 (overall average) to 1 (last update only).

    Returns:
        a ``tqdm.auto.tqdm``.

    Example::

        with progress_bar(len(paths), "mobilenet-v2", enabled=progress) as bar:
            for batch in batches:
                ...
                bar.update(len(batch))
    """
    from tqdm.auto import tqdm  # imported on first use: it is slow to import

    show = enabled if enabled is not None else sys.stderr.isatty()
    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(
        total=total, initial=initial, unit=unit, desc=desc, disable=not show,
        dynamic_ncols=True, smoothing=smoothing, **scale,
    )
