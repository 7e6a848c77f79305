"""A faster equivalent of a torchvision detector (Faster/Mask/Keypoint R-CNN,
RetinaNet, FCOS, SSD), checked against eager with detection criteria.

A detector's outputs are not continuous in its features: the RPN's top-k over
thousands of anchors and NMS turn a 1e-6 change into a different proposal
order, so the 1e-4 that classifiers are held to cannot be asked of its boxes.
What is kept instead:

- the part whose arithmetic changes, the backbone (+FPN), becomes a traced,
  frozen, channels_last graph checked against its eager original on the same
  inputs within ``rtol`` (1e-4 of the output's scale); the R-CNN box RoIAlign
  runs its boxes on several threads (the same kernel per box: eager's result,
  bit for bit); everything else (transform, RPN, box head, NMS) stays eager;
- the detections of the whole model are compared with eager's by
  :func:`match_detections`: every eager box with a score of at least
  ``score_thresh`` must come out with the same label at IoU >= ``iou_thresh``
  (and the other way round), on the verification images.

Measured on real photographs (``benchmarks/bench_detectors.py``,
``tests/test_fast_detectors.py``): see docs/performance.md.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import torch

from .optimize import Timer, optimize_module
from .tensors import to_cpu_float

__all__ = ["FastDetector", "make_fast_detector", "is_torchvision_detector", "match_detections", "DetectionMatch"]

logger = logging.getLogger("modelzoo.torch_image")

#: the equivalence criteria (issue 27): eager boxes of at least this score ...
SCORE_THRESH = 0.3
#: ... found again at this IoU with the same label ...
IOU_THRESH = 0.95
#: ... for at least this fraction of them.
MIN_MATCHED = 0.99


def is_torchvision_detector(module: Any) -> bool:
    """Whether ``module`` has the shape of torchvision's detection models: an
    internal ``transform`` (GeneralizedRCNNTransform) and a ``backbone``
    called on the transformed batch."""
    transform = getattr(module, "transform", None)
    return (
        isinstance(module, torch.nn.Module)
        and isinstance(getattr(module, "backbone", None), torch.nn.Module)
        and transform is not None
        and type(transform).__name__ == "GeneralizedRCNNTransform"
    )


class DetectionMatch:
    """How many of the reference's confident boxes were found again.

    Attributes:
        matched: reference boxes (score >= the threshold) matched by a box of
            the same label at IoU >= the threshold (each candidate used once).
        total: reference boxes with score >= the threshold.
        extra: candidate boxes with score >= the threshold matched by no
            reference box (of any score) at that IoU with the same label.
        candidates: candidate boxes with score >= the threshold.
    """

    def __init__(self, matched: int = 0, total: int = 0, extra: int = 0, candidates: int = 0):
        self.matched, self.total, self.extra, self.candidates = matched, total, extra, candidates

    def __add__(self, other: "DetectionMatch") -> "DetectionMatch":
        return DetectionMatch(
            self.matched + other.matched, self.total + other.total,
            self.extra + other.extra, self.candidates + other.candidates,
        )

    @property
    def fraction(self) -> float:
        """``matched / total`` (1.0 when there is nothing to match)."""
        return self.matched / self.total if self.total else 1.0

    @property
    def extra_fraction(self) -> float:
        return self.extra / self.candidates if self.candidates else 0.0

    def ok(self, min_matched: float = MIN_MATCHED) -> bool:
        return self.fraction >= min_matched and self.extra_fraction <= 1.0 - min_matched

    def __repr__(self) -> str:
        return f"DetectionMatch(matched={self.matched}/{self.total}, extra={self.extra}/{self.candidates})"


def match_detections(
    candidate: Sequence[Dict[str, torch.Tensor]],
    reference: Sequence[Dict[str, torch.Tensor]],
    score_thresh: float = SCORE_THRESH,
    iou_thresh: float = IOU_THRESH,
) -> DetectionMatch:
    """Matches two detectors' outputs (lists of torchvision dicts with
    ``boxes``, ``labels``, ``scores``), image by image: greedily, the
    reference's boxes by decreasing score, each to the unused candidate box
    of the same label with the highest IoU, if it is at least ``iou_thresh``.
    Boxes of either side below ``score_thresh`` may serve as matches (a box
    whose score went from 0.301 to 0.299 is still there) but are not counted."""
    from torchvision.ops import box_iou

    result = DetectionMatch()
    for cand, ref in zip(candidate, reference):
        result = result + _match_one(cand, ref, score_thresh, iou_thresh, box_iou)
    return result


def _match_one(
    cand: Dict[str, torch.Tensor], ref: Dict[str, torch.Tensor], score_thresh: float, iou_thresh: float,
    box_iou: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> DetectionMatch:
    def confident_matches(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> Tuple[int, int]:
        keep = (a["scores"] >= score_thresh).nonzero().flatten()
        keep = keep[a["scores"][keep].argsort(descending=True)]
        if keep.numel() == 0:
            return 0, 0
        if b["boxes"].numel() == 0:
            return 0, int(keep.numel())
        iou = box_iou(a["boxes"][keep].double(), b["boxes"].double())
        iou[a["labels"][keep][:, None] != b["labels"][None, :]] = -1.0
        used = torch.zeros(b["boxes"].shape[0], dtype=torch.bool)
        found = 0
        for row in iou:
            row = row.masked_fill(used, -1.0)
            j = int(row.argmax())
            if float(row[j]) >= iou_thresh:
                used[j] = True
                found += 1
        return found, int(keep.numel())

    ref, cand = to_cpu_float(ref), to_cpu_float(cand)
    matched, total = confident_matches(ref, cand)
    found, candidates = confident_matches(cand, ref)
    return DetectionMatch(matched, total, candidates - found, candidates)


class FastDetector:
    """What :func:`make_fast_detector` built.

    Attributes:
        module: the detector to run: a shallow copy of the eager one sharing
            its eager parts, with the replaced parts swapped in.
        parts: the names of the parts replaced (``"backbone"``, ``"roi_pool"``).
        notes: why a part was left eager, and the verification's result.
        match: the detections of the whole model on the verification images
            against eager's.
    """

    def __init__(self, module: torch.nn.Module, parts: List[str], notes: List[str], match: DetectionMatch):
        self.module, self.parts, self.notes, self.match = module, parts, notes, match

    @property
    def kind(self) -> str:
        return "detector:" + "+".join(self.parts) if self.parts else "eager"

    def __repr__(self) -> str:
        return f"FastDetector(kind={self.kind!r}, match={self.match!r}, notes={self.notes!r})"


class _GraphPart(torch.nn.Module):
    """Runs a frozen graph in place of an eager part, its inputs in the
    memory format it was built for and its outputs contiguous again (the
    eager parts that follow then run exactly as they would)."""

    def __init__(self, runner: Callable[..., Any], channels_last: bool, original: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "_runner", runner)  # a graph, not a submodule to walk or move
        self.channels_last = channels_last
        for attr in ("out_channels",):  # what torchvision's heads read from a backbone
            if hasattr(original, attr):
                setattr(self, attr, getattr(original, attr))

    def forward(self, x: torch.Tensor) -> Any:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self._runner(x)  # type: ignore[operator]
        if isinstance(out, dict):
            return OrderedDict((k, v.contiguous()) for k, v in out.items())
        if isinstance(out, torch.Tensor):
            return out.contiguous()
        return out


class _ParallelRoIPool(torch.nn.Module):
    """torchvision's MultiScaleRoIAlign, its boxes split across threads.

    torchvision's CPU RoIAlign kernel runs on one thread (15% of
    fasterrcnn_mobilenet_v3_large_320_fpn's time at batch 8) and releases
    the GIL, so the boxes of each image are cut in ``torch.get_num_threads()``
    parts pooled at once, and the rows put back in their order. Each box is
    pooled by the same kernel on the same features as in one call, so the
    result is eager's, bit for bit.
    """

    def __init__(self, pool: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "_pool", pool)  # shared with the eager model (its scales are set on first use)
        object.__setattr__(self, "_executor", None)
        object.__setattr__(self, "_workers", 0)

    def forward(self, features: Dict[str, torch.Tensor], proposals: List[torch.Tensor], image_shapes: List[Tuple[int, int]]) -> torch.Tensor:
        pool: Any = self._pool
        parts = min(torch.get_num_threads(), 8)
        total = sum(int(p.shape[0]) for p in proposals)
        if parts < 2 or total < 2 * parts or pool.scales is None:  # the first call sets the pooler's scales
            return pool(features, proposals, image_shapes)
        starts = [0]
        for p in proposals:
            starts.append(starts[-1] + int(p.shape[0]))
        chunks: List[List[torch.Tensor]] = []
        rows: List[torch.Tensor] = []
        for k in range(parts):
            chunk: List[torch.Tensor] = []
            index: List[torch.Tensor] = []
            for p, start in zip(proposals, starts):
                n = int(p.shape[0])
                lo, hi = n * k // parts, n * (k + 1) // parts
                chunk.append(p[lo:hi])
                index.append(torch.arange(start + lo, start + hi))
            chunks.append(chunk)
            rows.append(torch.cat(index))
        executor: Any = self._executor
        if executor is None or int(getattr(self, "_workers")) < parts - 1:  # noqa: B009
            from concurrent.futures import ThreadPoolExecutor

            executor = ThreadPoolExecutor(parts - 1, thread_name_prefix="modelzoo-roialign")
            object.__setattr__(self, "_executor", executor)
            object.__setattr__(self, "_workers", parts - 1)
        modes = (torch.is_inference_mode_enabled(), torch.is_grad_enabled())  # thread-local: the workers take the caller's
        futures = [executor.submit(_pool_as, modes, pool, features, chunk, image_shapes) for chunk in chunks[1:]]
        results: List[torch.Tensor] = [pool(features, chunks[0], image_shapes)] + [f.result() for f in futures]
        out = results[0].new_empty((total,) + tuple(results[0].shape[1:]))
        for where, result in zip(rows, results):
            out[where] = result
        return out


def _pool_as(modes: Tuple[bool, bool], pool: Any, *args: Any) -> torch.Tensor:
    with torch.inference_mode(modes[0]), torch.set_grad_enabled(modes[1]):
        return pool(*args)


def _capture(module: torch.nn.Module, part: torch.nn.Module, examples: Sequence[Any]) -> Tuple[List[Any], List[Any]]:
    """Runs ``module`` eagerly on each example and records the first input
    ``part`` got in each run, and the module's outputs."""
    seen: List[Any] = []

    def hook(_m: torch.nn.Module, args: Tuple[Any, ...]) -> None:
        if len(seen) < len(outputs) + 1:
            seen.append(args[0])

    outputs: List[Any] = []
    handle = part.register_forward_pre_hook(hook)
    try:
        with torch.inference_mode():
            for x in examples:
                outputs.append(module(x))
    finally:
        handle.remove()
    return seen, outputs


def _shallow_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A copy whose submodule table is its own (replacing a submodule in it
    leaves ``module`` as it is); parameters and buffers are shared."""
    new = copy.copy(module)
    new._modules = OrderedDict(module._modules)  # type: ignore[assignment]
    return new


def make_fast_detector(
    module: torch.nn.Module,
    examples: Sequence[List[torch.Tensor]],
    rtol: float = 1e-4,
    score_thresh: float = SCORE_THRESH,
    iou_thresh: float = IOU_THRESH,
    min_matched: float = MIN_MATCHED,
    parts: Sequence[str] = ("backbone", "roi_pool"),
    timer: Optional[Timer] = None,
) -> Optional[FastDetector]:
    """Builds a faster equivalent of a torchvision detector on the CPU and
    verifies it on ``examples`` (batches as the detector takes them: lists of
    float ``(3, H, W)`` tensors). Returns None (the eager model stays) when
    nothing could be replaced or the verification failed; the reasons are
    logged.

    Each replaced part is first checked against its eager original on the
    inputs it gets from the examples (:func:`~modelzoo.optimize.optimize_module`,
    within ``rtol``); then the whole model's detections are checked with
    :func:`match_detections` (``score_thresh``, ``iou_thresh``: at least
    ``min_matched`` of eager's confident boxes found again, and no more than
    ``1 - min_matched`` of the fast model's confident boxes unmatched).
    ``parts`` names the parts to try replacing: ``"backbone"`` (a frozen
    channels_last graph), ``"roi_pool"`` (the R-CNN box RoIAlign run on
    several threads, bit for bit eager's). (A frozen graph of the R-CNN box
    head measured 3% less CPU time than eager's two linear layers, within
    noise: it stays eager.) ``timer``: as :func:`~modelzoo.optimize.optimize_module`'s,
    the backbone's graph is kept only when measured faster than eager.
    """
    if not is_torchvision_detector(module) or not examples:
        return None
    if any(isinstance(t, torch.Tensor) and t.device.type != "cpu" for batch in examples for t in batch):
        return None  # the graphs are CPU ones; on a GPU the eager detector runs
    notes: List[str] = []
    wanted, parts = set(parts), []
    fast = _shallow_copy(module)

    backbone = cast(torch.nn.Module, module.backbone)
    backbone_inputs, references = _capture(module, backbone, examples)
    if "backbone" in wanted:
        built = optimize_module(backbone, backbone_inputs, fuse=False, rtol=rtol, timer=timer)
        if built.kind in ("frozen", "compiled"):
            fast.backbone = _GraphPart(built.module, built.channels_last, backbone)
            parts.append("backbone")
        else:
            notes.append(f"backbone: left eager ({'; '.join(built.notes) or built.kind})")

    roi_heads: Any = getattr(module, "roi_heads", None)
    box_roi_pool: Any = getattr(roi_heads, "box_roi_pool", None)
    if "roi_pool" in wanted and type(box_roi_pool).__name__ == "MultiScaleRoIAlign":
        heads: Any = fast.roi_heads
        if heads is roi_heads:
            heads = _shallow_copy(roi_heads)
        heads.box_roi_pool = _ParallelRoIPool(box_roi_pool)
        fast.roi_heads = heads
        parts.append("roi_pool")

    if not parts:
        logger.info("optimize: the detector stays eager (%s)", "; ".join(notes))
        return None
    with torch.inference_mode():
        outputs = [fast(x) for x in examples]
    match = match_detections(
        [d for batch in outputs for d in batch], [d for batch in references for d in batch], score_thresh, iou_thresh
    )
    if not match.ok(min_matched):
        logger.warning(
            "optimize: the fast detector (%s) changed the detections on the verification images (%r); "
            "the detector stays eager", "+".join(parts), match,
        )
        return None
    notes.append(f"verified: {match!r} at score >= {score_thresh}, IoU >= {iou_thresh}")
    result = FastDetector(fast, parts, notes, match)
    logger.info("optimize: using %s (%s)", result.kind, "; ".join(notes))
    return result
