"""The one progress bar: apply/embed runs count samples, downloads count bytes."""

from __future__ import annotations

import sys
from typing import Any, Optional

__all__ = ["progress_bar", "CallbackProgress"]


class CallbackProgress:
    """A progress "bar" that calls ``callback(self)`` on every update (and
    once more when closed), as FiftyOne calls its ``progress=`` callables.

    Attributes:
        total: the count at the end (None when unknown).
        iteration: the count so far.
        progress: ``iteration / total`` in ``[0, 1]`` (0 without a total).
        complete: True once closed.
    """

    def __init__(self, callback: Any, total: Optional[int], initial: int = 0):
        self._callback = callback
        self.total = total
        self.iteration = initial
        self.complete = False

    @property
    def has_total(self) -> bool:
        return self.total is not None

    @property
    def progress(self) -> float:
        return min(self.iteration / self.total, 1.0) if self.total else 0.0

    def update(self, n: int = 1) -> None:
        self.iteration += n
        self._callback(self)

    def close(self) -> None:
        if not self.complete:
            self.complete = True
            self._callback(self)

    def __enter__(self) -> "CallbackProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    total: Optional[int],
    desc: str,
    unit: str = "samples",
    enabled: Any = None,
    initial: int = 0,
    smoothing: float = 0.3,
) -> Any:
    """A tqdm bar on stderr, usable as a context manager.

    Args:
        total: the count at the end, or None when unknown.
        desc: the text before the bar (a model or file name).
        unit: what is counted; ``"B"`` shows bytes in KiB/MiB/GiB.
        enabled: show the bar; None shows it when stderr is a terminal. A
            disabled bar accepts the same calls and prints nothing. A
            callable is called with a :class:`CallbackProgress` on each
            update instead (FiftyOne's ``progress=`` callback).
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
    if callable(enabled):
        return CallbackProgress(enabled, total, initial)
    from tqdm.auto import tqdm  # imported on first use: it is slow to import

    show = enabled if enabled is not None else sys.stderr.isatty()
    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(
        total=total, initial=initial, unit=unit, desc=desc, disable=not show,
        dynamic_ncols=True, smoothing=smoothing, **scale,
    )
