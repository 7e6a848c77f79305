"""The ``optimize`` step of :mod:`modelzoo.torch_image`: a faster equivalent
of a module (channels_last, then a frozen, oneDNN-fused or compiled graph),
verified against eager on example inputs before it is used."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch

from .tensors import outputs_close, to_channels_last, to_cpu_float

if TYPE_CHECKING:
    from .optimize_cache import Kept

__all__ = [
    "optimize_module",
    "OptimizeResult",
    "OptimizeDecision",
    "keeps_graph",
    "interleaved_seconds",
    "decided",
    "MIN_GAIN",
    "onednn_fusion_available",
    "OneDNNFused",
]

logger = logging.getLogger("modelzoo.torch_image")

#: with a timer (``optimize="auto"``), a verified candidate is kept only when
#: it runs the example batch at least this much faster than eager (5%: less
#: is within the noise of a few timed rounds on a shared CPU).
MIN_GAIN = 0.05

#: ``timer(eager_fn, eager_input, graph_fn, graph_input)`` -> seconds per
#: call of each, e.g. :func:`interleaved_seconds`.
Timer = Callable[[Callable[..., Any], Any, Callable[..., Any], Any], Tuple[float, float]]


def keeps_graph(eager_s: float, graph_s: float, min_gain: float = MIN_GAIN) -> bool:
    """Whether a candidate measured at ``graph_s`` is worth running instead
    of eager measured at ``eager_s`` (same batch, same unit): faster by at
    least ``min_gain`` (a fraction of eager's time)."""
    return eager_s > 0 and graph_s <= eager_s * (1.0 - min_gain)


#: with ``rounds=None``, :func:`interleaved_seconds` stops after this many
#: rounds when they already decide (see :func:`decided`)
DECISIVE_ROUNDS = 3
#: ... that is when every round of one side was faster than every round of
#: the other by this factor
DECISIVE_FACTOR = 1.5


def decided(eager: Sequence[float], graph: Sequence[float], factor: float = DECISIVE_FACTOR) -> bool:
    """Whether timed rounds already decide between eager and a graph: the
    slowest round of one side is ``factor`` times faster than the fastest
    round of the other. More rounds can only lower each side's minimum (the
    figure that counts), so the loser would need a round ``factor`` times
    faster than all of its own so far, which noise does not give. On the
    project's 2-core CPU the zoo's mobilenet_v2 frozen graph at 320x240
    measured 2.3-3.0x faster than eager (7 runs), and stops after 3 rounds;
    a close call (a fused graph within 5% of eager, as resnet50's in the
    catalogue run) still gets all of them."""
    if not eager or not graph:
        return False
    return max(graph) * factor <= min(eager) or max(eager) * factor <= min(graph)


def interleaved_seconds(
    eager_fn: Callable[..., Any], eager_x: Any, graph_fn: Callable[..., Any], graph_x: Any,
    rounds: Optional[int] = None, clock: Callable[[], float] = time.perf_counter,
) -> Tuple[float, float]:
    """Times ``eager_fn(eager_x)`` against ``graph_fn(graph_x)`` in
    interleaved rounds (the order alternating, so a change of the machine's
    load hits both) and returns the seconds per call of each: the fastest
    round's (as :mod:`timeit` advises: other work on the machine only adds
    time, so the minimum is the least disturbed figure; on a loaded 2-core
    machine the median of 5 rounds of a 10 ms forward still flipped
    decisions).

    Args:
        rounds: how many; None: 5 when a round takes under 0.2 s, else 3
            (a heavy model's forward is long enough to measure in few, and
            each round costs a few of its samples' time; 2 rounds let a
            change of the machine's load flip convnext_large's choice), and
            fewer than 5 when the first :data:`DECISIVE_ROUNDS` are
            :func:`decided` already.
        clock: seconds, monotonic (a test's own clock).
    """
    eager: List[float] = []
    graph: List[float] = []

    def once(fn: Callable[..., Any], x: Any, into: List[float]) -> None:
        _sync(x)
        t = clock()
        fn(x)
        _sync(x)
        into.append(clock() - t)

    with torch.inference_mode():
        once(eager_fn, eager_x, eager)
        once(graph_fn, graph_x, graph)
        early = rounds is None
        if rounds is None:
            rounds = 5 if eager[0] + graph[0] < 0.2 else 3
        for r in range(1, rounds):
            if early and r >= DECISIVE_ROUNDS and decided(eager, graph):
                break
            if r % 2:
                once(graph_fn, graph_x, graph)
                once(eager_fn, eager_x, eager)
            else:
                once(eager_fn, eager_x, eager)
                once(graph_fn, graph_x, graph)
    return min(eager), min(graph)


def _sync(x: Any) -> None:
    t = x[0] if isinstance(x, (list, tuple)) and x else x
    if isinstance(t, torch.Tensor) and t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


def _batch_len(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return max(1, int(x.shape[0]) if x.dim() else 1)
    if isinstance(x, (list, tuple)):
        return max(1, len(x))
    return 1


@dataclasses.dataclass(frozen=True)
class OptimizeDecision:
    """What ``optimize="auto"`` measured and why it chose what it runs.

    Attributes:
        kind: what runs (as :attr:`OptimizeResult.kind`).
        reason: one line: the choice and the numbers behind it.
        timings: per candidate verified and timed, ``(eager, candidate)``
            milliseconds per sample on the example batch, measured together.
        min_gain: the margin a candidate had to beat eager by.
        build_s: seconds spent building, verifying and timing.
        kept_at: when the decision was measured, for one read back from
            :mod:`modelzoo.optimize_cache` (seconds since the epoch; then
            ``timings`` are that measurement's and nothing was timed now);
            None when it was measured now.
    """

    kind: str
    reason: str
    timings: Dict[str, Tuple[float, float]]
    min_gain: float
    build_s: float
    kept_at: Optional[float] = None

    @property
    def speedup(self) -> Optional[float]:
        """Eager's time over the chosen candidate's (None when eager runs)."""
        pair = self.timings.get(self.kind)
        return pair[0] / pair[1] if pair and pair[1] > 0 else None


class OptimizeResult:
    """What :func:`optimize_module` chose.

    Attributes:
        module: the callable to run (the eager module when nothing passed).
        kind: ``"frozen+onednn"``, ``"frozen"``, ``"compiled"``,
            ``"channels_last"`` or ``"eager"``.
        notes: why each rejected candidate was rejected.
        channels_last: whether inputs must be made channels_last.
        references: the eager outputs on the examples (CPU, float32).
        decision: with a timer, the measured decision (else None).
    """

    def __init__(
        self,
        module: Callable[..., Any],
        kind: str,
        notes: List[str],
        channels_last: bool,
        references: Optional[List[Any]] = None,
        decision: Optional[OptimizeDecision] = None,
    ):
        self.module = module
        self.references = references or []
        self.kind = kind
        self.notes = notes
        self.channels_last = channels_last
        self.decision = decision

    def __repr__(self) -> str:
        return f"OptimizeResult(kind={self.kind!r}, notes={self.notes!r})"


def optimize_module(
    module: torch.nn.Module,
    examples: Sequence[Any],
    mode: str = "auto",
    rtol: float = 1e-4,
    fuse: bool = True,
    timer: Optional[Timer] = None,
    min_gain: float = MIN_GAIN,
    keep: bool = False,
) -> OptimizeResult:
    """Makes a faster equivalent of ``module`` and checks it on ``examples``.

    Candidates, in order, all on a channels_last copy of the module:

    1. ``mode="auto"``/``"trace"``: the module traced and frozen, run with
       oneDNN Graph fusion on the CPU (``"frozen+onednn"``: convolutions
       fused with their activations and residual adds; on a 2-core CPU
       1.8-2.4x faster than the next for mobilenet_v3_small, 1.15x for
       resnet18); then traced, frozen and
       :func:`torch.jit.optimize_for_inference` (``"frozen"``). ``mode="compile"``: :func:`torch.compile`
       (``"compiled"``).
    2. the channels_last eager module (``"channels_last"``).

    A candidate must match eager on every example (within ``rtol``
    relative, see :func:`outputs_close`). Without ``timer`` the first that
    matches wins (``optimize=True``). With ``timer`` (``optimize="auto"``)
    it must also run ``examples[0]`` faster than eager by ``min_gain``
    (:func:`keeps_graph`), timed by ``timer``; otherwise the next is tried,
    and the eager module is kept when none is faster. Warnings raised while
    tracing and running candidates (TracerWarnings...) are silenced: a
    rejection is a note, and the choice one log line.

    Args:
        module: an eval-mode module; it is left as it is (the candidates
            run on a channels_last copy).
        examples: inputs as the module takes them (already on its device).
        mode: ``"auto"``, ``"trace"`` or ``"compile"``.
        fuse: allow the oneDNN candidate. It compiles itself for every new
            input shape, so it pays off only when the shapes are few (fixed
            image size); pass False for inputs of any size.
        timer: measures eager against a candidate (e.g.
            :func:`interleaved_seconds`); None keeps the first verified one.
        min_gain: the margin, as a fraction of eager's time.
        keep: with ``timer``, reuse the decision an earlier process measured
            for the same module structure, examples, settings and machine
            (:mod:`modelzoo.optimize_cache`): only that kind is built and
            verified, nothing is timed (a kept ``"eager"`` builds nothing);
            when it fails verification, or none is kept, the decision is
            measured and kept.
    """
    t0 = time.perf_counter()
    key: Optional[str] = None
    kept: Optional["Kept"] = None
    if keep and timer is not None:
        from . import optimize_cache

        key = optimize_cache.decision_key(module, examples, mode=mode, fuse=fuse, min_gain=min_gain, rtol=rtol)
        kept = optimize_cache.read(key)
    notes: List[str] = []
    timings: Dict[str, Tuple[float, float]] = {}

    def finish(fn: Callable[..., Any], kind: str, channels_last: bool, reused: Optional["Kept"] = None) -> OptimizeResult:
        decision = None
        if reused is not None:
            decision = OptimizeDecision(kind, _kept_reason(reused), dict(reused.timings), min_gain,
                                        time.perf_counter() - t0, reused.measured_at)
            logger.info("optimize=auto: %s (in %.1fs; kept in the optimize cache: delete it or set "
                        "MODELZOO_OPTIMIZE_CACHE=off to measure again)", decision.reason, decision.build_s)
        elif timer is not None:
            decision = OptimizeDecision(kind, _reason(kind, notes, timings), timings, min_gain, time.perf_counter() - t0)
            logger.info("optimize=auto: %s (decided in %.1fs)", decision.reason, decision.build_s)
            if key is not None:
                from . import optimize_cache

                optimize_cache.write(key, kind, timings, what=type(module).__qualname__)
        elif kind in ("eager",):
            logger.warning("optimize: falling back to the eager module: %s", "; ".join(notes))
        elif kind == "channels_last":
            logger.info("optimize: using the channels_last eager module (%s)", "; ".join(notes))
        else:
            logger.info("optimize: using a %s channels_last graph (built and verified in %.1fs)", kind, time.perf_counter() - t0)
        return OptimizeResult(fn, kind, notes, channels_last, references, decision)

    references: List[Any] = []
    if kept is not None and kept.kind == "eager":
        return finish(module, "eager", False, kept)  # builds nothing
    with torch.inference_mode():
        references = [to_cpu_float(module(x)) for x in examples]
    n = _batch_len(examples[0])

    cl_module = _channels_last_copy(module)
    if cl_module is None:
        notes.append("channels_last: cannot copy the module")
        return finish(module, "eager", False)
    cl_examples = [to_channels_last(x) for x in examples]

    def verify(fn: Callable[..., Any], name: str) -> bool:
        try:
            with torch.inference_mode():
                for x, ref in zip(cl_examples, references):
                    ok, why = outputs_close(to_cpu_float(fn(x)), ref, rtol)
                    if not ok:
                        notes.append(f"{name}: outputs differ from eager ({why})")
                        return False
        except Exception as e:
            notes.append(f"{name}: failed on the verification batch ({type(e).__name__}: {_first_line(e)})")
            return False
        return True

    def faster(fn: Callable[..., Any], name: str) -> bool:
        if timer is None:
            return True
        try:
            eager_s, graph_s = timer(module, examples[0], fn, cl_examples[0])
        except Exception as e:
            notes.append(f"{name}: failed while timed ({type(e).__name__}: {_first_line(e)})")
            return False
        timings[name] = (1e3 * eager_s / n, 1e3 * graph_s / n)
        if keeps_graph(eager_s, graph_s, min_gain):
            return True
        notes.append(f"{name}: verified, not {min_gain:.0%} faster ({timings[name][1]:.3g} ms/sample, "
                     f"eager {timings[name][0]:.3g})")
        return False

    with warnings.catch_warnings():
        # torch.jit is deprecated in favour of torch.compile, and tracing a
        # model with Python control flow warns at each branch: a candidate
        # that fails is a note, not a warning
        warnings.simplefilter("ignore")
        if kept is not None:
            # only the kept kind is built (no fused candidate for a kept plain "frozen"), verified, not
            # timed; when it does not verify the decision is measured again below
            fn: Optional[Callable[..., Any]] = cl_module if kept.kind == "channels_last" else None
            if fn is None:
                fused = fuse and kept.kind == "frozen+onednn"
                fn = next((c for k, c in _graph_candidates(cl_module, cl_examples[0], mode, notes, fused, warm=False)
                           if k == kept.kind), None)
            if fn is not None and verify(fn, kept.kind):
                return finish(fn, kept.kind, True, kept)
            notes.clear()
        for kind, fn in _graph_candidates(cl_module, cl_examples[0], mode, notes, fuse):
            if verify(fn, kind) and faster(fn, kind):
                return finish(fn, kind, True)
        if verify(cl_module, "channels_last") and faster(cl_module, "channels_last"):
            return finish(cl_module, "channels_last", True)
    return finish(module, "eager", False)


def _kept_reason(kept: "Kept") -> str:
    """The log line's reason for a decision read back from the cache."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(kept.measured_at))
    if kept.kind == "eager":
        measured = "; ".join(f"{k} {g:.3g} ms/sample against eager's {e:.3g}" for k, (e, g) in kept.timings.items())
        return f"running eager, as measured on {when}" + (f" ({measured})" if measured else "")
    pair = kept.timings.get(kept.kind)
    measured = (f": {pair[1]:.3g} ms/sample against eager's {pair[0]:.3g} on the example batch ({pair[0] / pair[1]:.2f}x)"
                if pair and pair[1] > 0 else "")
    return f"running {kept.kind}, as measured on {when}{measured}; verified against eager now"


def _reason(kind: str, notes: Sequence[str], timings: Mapping[str, Tuple[float, float]]) -> str:
    if kind != "eager":
        eager_ms, ms = timings[kind]
        why = f"running {kind}: {ms:.3g} ms/sample against eager's {eager_ms:.3g} on the example batch ({eager_ms / ms:.2f}x)"
    else:
        why = "running eager: no candidate was verified and faster"
    return why + (f" [{'; '.join(notes)}]" if notes else "")


def onednn_fusion_available(example: Any) -> bool:
    """Whether oneDNN Graph fusion can run ``example``: CPU float32 tensors
    and a torch built with it."""
    xs = example if isinstance(example, (list, tuple)) else [example]
    return (
        hasattr(torch.jit, "enable_onednn_fusion")
        and bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)())
        and all(isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dtype == torch.float32 for x in xs)
    )


class _FusionSwitch:
    """oneDNN Graph fusion on while any :class:`OneDNNFused` call runs: the
    switch is process-wide, so calls from several threads at once share it
    (the first turns it on, the last restores what it was)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._before = False

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._before = torch.jit.onednn_fusion_enabled()
                torch.jit.enable_onednn_fusion(True)
            self._users += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                torch.jit.enable_onednn_fusion(self._before)


_FUSION = _FusionSwitch()


class OneDNNFused:
    """Runs a frozen TorchScript module with oneDNN Graph fusion switched on.

    The switch is process-wide, so it is on only while calls run. The
    graph executor profiles the first call with a new input shape and
    compiles the fused kernels on the second; later calls run them. A
    shape's kernels keep the number of threads they were compiled with
    (``torch.set_num_threads`` later does not change it): mobilenet_v3_small
    compiled at batch 32 on 2 threads ran 1.3-1.45 ms/sample on both cores
    even after ``set_num_threads(1)``, compiled on 1 thread 2.4-2.7
    ms/sample on one, and 2.5 after ``set_num_threads(2)``.
    """

    def __init__(self, frozen: Any):
        self.frozen = frozen

    def __call__(self, *args: Any) -> Any:
        with _FUSION:
            return self.frozen(*args)


def _graph_candidates(
    module: torch.nn.Module, example: Any, mode: str, notes: List[str], fuse: bool = True, warm: bool = True
) -> Iterator[Tuple[str, Callable[..., Any]]]:
    """Yields ``(kind, runner)`` graphs to verify, best first; ``warm``: each
    already called twice on ``example`` (its profiling calls, so that timing
    it measures the graph that runs); without, the first calls of the
    verification are those."""
    if mode == "compile":
        try:
            yield "compiled", torch.compile(module, dynamic=True)
        except Exception as e:
            notes.append(f"compiled: cannot build the graph ({type(e).__name__}: {_first_line(e)})")
        return
    frozen = _freeze(module, example, notes)
    if frozen is None:
        return
    if fuse and onednn_fusion_available(example):
        fused = OneDNNFused(frozen)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for _ in range(2 if warm else 0):
                    fused(example)  # profiles, then compiles the fused kernels
            yield "frozen+onednn", fused
        except Exception as e:
            notes.append(f"frozen+onednn: cannot run the graph ({type(e).__name__}: {_first_line(e)})")
        frozen = _freeze(module, example, notes)  # a fresh graph: the fused one keeps its plans
        if frozen is None:
            return
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = torch.jit.optimize_for_inference(frozen)
            for _ in range(2 if warm else 0):
                optimized(example)  # the first calls of a scripted graph run its profiling passes
        yield "frozen", optimized
    except Exception as e:
        notes.append(f"frozen: cannot build the graph ({type(e).__name__}: {_first_line(e)})")


def _freeze(module: torch.nn.Module, example: Any, notes: List[str]) -> Optional[Any]:
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.compile, but on CPU a
            # frozen graph is still the fastest option that needs no compiler
            warnings.simplefilter("ignore")
            # tracing through _Opaque records the weights as constants of
            # one flat graph instead of rebuilding the module tree as
            # ScriptModules (~1 ms per submodule: 0.1 s of the 0.15 s trace
            # of mobilenet_v3_small); freezing would inline them anyway
            traced = torch.jit.trace(_Opaque(module), example, check_trace=False, strict=False)
            return torch.jit.freeze(traced.eval())
    except Exception as e:
        notes.append(f"frozen: cannot trace the model ({type(e).__name__}: {_first_line(e)})")
        return None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


class _Opaque(torch.nn.Module):
    """Calls a module without registering it as a submodule (see _freeze)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        object.__setattr__(self, "_inner", (module,))

    def forward(self, *args: Any) -> Any:
        return self._inner[0](*args)  # type: ignore[index,operator]


def _channels_last_copy(module: torch.nn.Module) -> Optional[torch.nn.Module]:
    """A channels_last copy for the candidates; its parameters do not require
    grad (a traced graph may only hold such tensors as constants)."""
    import copy

    try:
        return copy.deepcopy(module).to(memory_format=torch.channels_last).requires_grad_(False)
    except Exception:
        return None
