from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["ApplyReport", "Failure"]


@dataclass
class Failure:
    """One sample (or one frame of a video sample) that could not be processed."""

    sample_id: str
    filepath: Optional[str]
    message: str
    stage: str  # "load" (reading/decoding the file or frame) or "predict"
    frame_number: Optional[int] = None  # set when one frame failed, not its video

    def __str__(self) -> str:
        frame = f" frame {self.frame_number}" if self.frame_number is not None else ""
        return f"{self.sample_id} ({self.filepath}){frame} [{self.stage}]: {self.message}"


@dataclass
class ApplyReport:
    """What an ``apply_model``/``compute_embeddings`` run did.

    Attributes:
        processed: samples whose output was stored (for a run over frames:
            videos read to their end, whatever some of their frames did).
        failed: samples that failed (a video that cannot be opened).
        skipped: samples left alone because they already had the field
            (``skip_existing=True``).
        failures: one :class:`Failure` per failed sample or frame.
        frames_processed: frames whose output was stored.
        frames_failed: frames that failed to decode or predict (their video
            still counts as processed).
        frames_skipped: frames left alone by ``skip_existing=True``.
    """

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: List[Failure] = field(default_factory=list)
    frames_processed: int = 0
    frames_failed: int = 0
    frames_skipped: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.frames_failed == 0

    def failure_summary(self) -> str:
        """``"1 of 3 samples (12 of 50 frames) failed"``: samples with any
        failure among the samples of the run, and the frames apart."""
        samples = len({f.sample_id for f in self.failures}) or self.failed
        total = self.processed + self.failed + self.skipped
        s = f"{samples} of {total} sample{'s' if total != 1 else ''}"
        frames = self.frames_processed + self.frames_failed + self.frames_skipped
        if frames:
            s += f" ({self.frames_failed} of {frames} frame{'s' if frames != 1 else ''})"
        return s + " failed"

    def merge(self, *others: "ApplyReport") -> "ApplyReport":
        """The report of this run and ``others`` together (the shards of one
        run, in any order): counts added, failures in sample-id order."""
        reports = (self,) + others
        failures = sorted((f for r in reports for f in r.failures), key=_order)
        return ApplyReport(
            processed=sum(r.processed for r in reports),
            failed=sum(r.failed for r in reports),
            skipped=sum(r.skipped for r in reports),
            failures=failures,
            frames_processed=sum(r.frames_processed for r in reports),
            frames_failed=sum(r.frames_failed for r in reports),
            frames_skipped=sum(r.frames_skipped for r in reports),
        )

    def sort(self) -> None:
        """Puts the failures in (sample id, frame number) order."""
        self.failures.sort(key=_order)

    def __str__(self) -> str:
        s = f"{self.processed} processed, {self.failed} failed, {self.skipped} skipped"
        if self.frames_processed or self.frames_failed or self.frames_skipped:
            s += (
                f"; frames: {self.frames_processed} processed, {self.frames_failed} failed, "
                f"{self.frames_skipped} skipped"
            )
        if self.failures:
            shown = "\n".join(f"  {f}" for f in self.failures[:10])
            more = f"\n  ... and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
            s += "\n" + shown + more
        return s


def _order(f: Failure) -> tuple:
    return (f.sample_id, f.frame_number or 0)
