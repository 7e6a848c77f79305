from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

__all__ = ["ApplyReport", "Failure"]


@dataclass
class Failure:
    """One sample that could not be processed."""

    sample_id: str
    filepath: Optional[str]
    message: str
    stage: str  # "load" (reading/decoding the file) or "predict"

    def __str__(self) -> str:
        return f"{self.sample_id} ({self.filepath}) [{self.stage}]: {self.message}"


@dataclass
class ApplyReport:
    """What an ``apply_model``/``compute_embeddings`` run did.

    Attributes:
        processed: samples whose output was stored.
        failed: samples that failed (details in ``failures``).
        skipped: samples left alone because they already had the field
            (``skip_existing=True``).
        failures: one :class:`Failure` per failed sample.
    """

    processed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: List[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def merge(self, *others: "ApplyReport") -> "ApplyReport":
        """The report of this run and ``others`` together (the shards of one
        run, in any order): counts added, failures in sample-id order."""
        reports = (self,) + others
        failures = sorted((f for r in reports for f in r.failures), key=lambda f: f.sample_id)
        return ApplyReport(
            processed=sum(r.processed for r in reports),
            failed=sum(r.failed for r in reports),
            skipped=sum(r.skipped for r in reports),
            failures=failures,
        )


    def __str__(self) -> str:
        s = f"{self.processed} processed, {self.failed} failed, {self.skipped} skipped"
        if self.failures:
            shown = "\n".join(f"  {f}" for f in self.failures[:10])
            more = f"\n  ... and {len(self.failures) - 10} more" if len(self.failures) > 10 else ""
            s += "\n" + shown + more
        return s
