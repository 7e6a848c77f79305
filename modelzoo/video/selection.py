"""Which frames of a video a run reads: all, every ``n``-th, at most ``fps``
per second, or explicit frame numbers."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

from ..errors import ConfigError

__all__ = ["FrameSelection"]


@dataclass(frozen=True)
class FrameSelection:
    """The frames an image model runs on, by 1-based frame number (decode order).

    At most one of the three may be set; none selects every frame.

    Attributes:
        n: every ``n``-th frame: ``1, 1 + n, 1 + 2n, ...``.
        fps: at most ``fps`` frames per second of video: the first frame of
            each ``1 / fps`` interval of the nominal frame rate (every frame
            when the video's rate is at most ``fps``). Variable frame rate
            videos are read by their average rate.
        numbers: exactly these frame numbers (those past a video's end are
            not in it and are left out).

    Build one with :meth:`parse` from what ``apply_model(frames=...)``
    takes: None or ``"all"``, ``{"n": 5}``, ``{"fps": 2}``, a list of
    frame numbers, or a FrameSelection.
    """

    n: Optional[int] = None
    fps: Optional[float] = None
    numbers: Optional[Tuple[int, ...]] = None

    def __post_init__(self) -> None:
        given = [name for name in ("n", "fps", "numbers") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ConfigError(
                f"frames= takes one of n (every n-th frame), fps (at most fps frames per second) or "
                f"explicit frame numbers, got {' and '.join(given)}; pick one"
            )
        if self.n is not None and (not _is_int(self.n) or self.n < 1):
            raise ConfigError(f"frames n must be a positive integer (every n-th frame), got {self.n!r}")
        if self.fps is not None and (
            isinstance(self.fps, bool) or not isinstance(self.fps, numbers.Real) or not self.fps > 0
        ):
            raise ConfigError(f"frames fps must be a positive number of frames per second, got {self.fps!r}")
        if self.numbers is not None:
            bad = [f for f in self.numbers if not _is_int(f) or f < 1]
            if bad:
                raise ConfigError(f"frame numbers start at 1 and are integers, got {bad[0]!r}")
            object.__setattr__(self, "numbers", tuple(sorted({int(f) for f in self.numbers})))

    @classmethod
    def parse(cls, frames: Any) -> "FrameSelection":
        """A selection from ``None``/``"all"``, a dict (``n``, ``fps`` or
        ``numbers``), a sequence of frame numbers, or a FrameSelection."""
        if frames is None or (isinstance(frames, str) and frames == "all"):
            return cls()
        if isinstance(frames, FrameSelection):
            return frames
        if isinstance(frames, dict):
            unknown = sorted(set(frames) - {"n", "fps", "numbers"})
            if unknown:
                raise ConfigError(
                    f"frames= got unknown key {unknown[0]!r}; it takes 'n' (every n-th frame), 'fps' (at most "
                    "fps frames per second) or 'numbers'"
                )
            numbers_ = frames.get("numbers")
            return cls(frames.get("n"), frames.get("fps"), None if numbers_ is None else tuple(numbers_))
        if isinstance(frames, Iterable) and not isinstance(frames, (str, bytes)):
            return cls(numbers=tuple(frames))
        raise ConfigError(
            f"frames= takes None or 'all', {{'n': k}}, {{'fps': f}} or a list of frame numbers, got {frames!r}"
        )

    @property
    def all(self) -> bool:
        """Whether every frame is selected (whatever the frame rate)."""
        return self.n is None and self.fps is None and self.numbers is None

    def last(self) -> Optional[int]:
        """The last frame number selected, when there is one (decoding stops there)."""
        return self.numbers[-1] if self.numbers else None

    def selects(self, frame_number: int, frame_rate: Optional[float]) -> bool:
        """Whether ``frame_number`` (1-based) of a video at ``frame_rate`` is selected."""
        if self.n is not None:
            return (frame_number - 1) % self.n == 0
        if self.fps is not None:
            if not frame_rate or self.fps >= frame_rate:
                return True
            return frame_number == 1 or _bucket(frame_number, self.fps, frame_rate) != _bucket(
                frame_number - 1, self.fps, frame_rate
            )
        if self.numbers is not None:
            return frame_number in self._number_set()
        return True

    def count(self, total_frames: int, frame_rate: Optional[float]) -> int:
        """How many frames of a ``total_frames``-frame video are selected."""
        total = max(0, int(total_frames or 0))
        if self.n is not None:
            return (total + self.n - 1) // self.n
        if self.numbers is not None:
            return sum(1 for f in self.numbers if f <= total)
        if self.fps is not None and frame_rate and self.fps < frame_rate:
            return sum(1 for f in range(1, total + 1) if self.selects(f, frame_rate))
        return total

    def _number_set(self) -> frozenset:
        cached = self.__dict__.get("_set")
        if cached is None:
            cached = frozenset(self.numbers or ())
            object.__setattr__(self, "_set", cached)
        return cached

    def __getstate__(self) -> dict:
        return {"n": self.n, "fps": self.fps, "numbers": self.numbers}

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


def _bucket(frame_number: int, fps: float, frame_rate: float) -> int:
    # the 1/fps interval holding this frame's nominal time (frame_number - 1) / frame_rate
    return math.floor((frame_number - 1) * fps / frame_rate + 1e-9)


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)
