"""The ``optimize`` step of :mod:`modelzoo.torch_image`: a faster equivalent
of a module (channels_last, then a frozen, oneDNN-fused or compiled graph),
verified against eager on example inputs before it is used."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

import torch

from .tensors import outputs_close, to_channels_last, to_cpu_float

__all__ = ["optimize_module", "OptimizeResult", "onednn_fusion_available", "OneDNNFused"]

logger = logging.getLogger("modelzoo.torch_image")


class OptimizeResult:
    """What :func:`optimize_module` chose.

    Attributes:
        module: the callable to run (the eager module when nothing passed).
        kind: ``"frozen+onednn"``, ``"frozen"``, ``"compiled"``,
            ``"channels_last"`` or ``"eager"``.
        notes: why each rejected candidate was rejected.
        channels_last: whether inputs must be made channels_last.
        references: the eager outputs on the examples (CPU, float32).
    """

    def __init__(
        self,
        module: Callable[..., Any],
        kind: str,
        notes: List[str],
        channels_last: bool,
        references: Optional[List[Any]] = None,
    ):
        self.module = module
        self.references = references or []
        self.kind = kind
        self.notes = notes
        self.channels_last = channels_last

    def __repr__(self) -> str:
        return f"OptimizeResult(kind={self.kind!r}, notes={self.notes!r})"


def optimize_module(
    module: torch.nn.Module,
    examples: Sequence[Any],
    mode: str = "auto",
    rtol: float = 1e-4,
    fuse: bool = True,
    channels_last: bool = True,
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

    The first whose outputs match eager on every example (within ``rtol``
    relative, see :func:`outputs_close`) wins; otherwise the eager module is
    kept. Each rejection is logged with its reason.

    Args:
        module: an eval-mode module; it is left as it is (the candidates
            run on a channels_last copy).
        examples: inputs as the module takes them (already on its device).
        mode: ``"auto"``, ``"trace"`` or ``"compile"``.
        fuse: allow the oneDNN candidate. It compiles itself for every new
            input shape, so it pays off only when the shapes are few (fixed
            image size); pass False for inputs of any size.
        channels_last: build the candidates on a channels_last copy (the
            default; what convolutions gain from). False keeps the memory
            format, for modules without convolutions (a detector's box head,
            whose first step flattens its input).
    """
    notes: List[str] = []
    with torch.inference_mode():
        references = [to_cpu_float(module(x)) for x in examples]
    cl_module = _channels_last_copy(module, channels_last)
    if cl_module is None:
        return OptimizeResult(module, "eager", ["channels_last copy failed"], False, references)
    cl_examples = [to_channels_last(x) for x in examples] if channels_last else list(examples)

    def verify(fn: Callable[..., Any], name: str) -> bool:
        try:
            with torch.inference_mode():
                for x, ref in zip(cl_examples, references):
                    ok, why = outputs_close(to_cpu_float(fn(x)), ref, rtol)
                    if not ok:
                        notes.append(f"{name}: outputs differ from eager ({why})")
                        return False
        except Exception as e:
            notes.append(f"{name}: failed on the verification batch ({type(e).__name__}: {e})")
            return False
        return True

    t0 = time.perf_counter()
    for kind, fn in _graph_candidates(cl_module, cl_examples[0], mode, notes, fuse):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if verify(fn, kind):
                logger.info(
                    "optimize: using a %s channels_last graph (built and verified in %.1fs)",
                    kind, time.perf_counter() - t0,
                )
                return OptimizeResult(fn, kind, notes, channels_last, references)
    if not channels_last:
        logger.warning("optimize: falling back to the eager module: %s", "; ".join(notes))
        return OptimizeResult(module, "eager", notes, False, references)
    if verify(cl_module, "channels_last"):
        logger.info("optimize: using the channels_last eager module (%s)", "; ".join(notes))
        return OptimizeResult(cl_module, "channels_last", notes, True, references)
    logger.warning("optimize: falling back to the eager module: %s", "; ".join(notes))
    return OptimizeResult(module, "eager", notes, False, references)


def onednn_fusion_available(example: Any) -> bool:
    """Whether oneDNN Graph fusion can run ``example``: CPU float32 tensors
    and a torch built with it."""
    xs = example if isinstance(example, (list, tuple)) else [example]
    return (
        hasattr(torch.jit, "enable_onednn_fusion")
        and bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)())
        and all(isinstance(x, torch.Tensor) and x.device.type == "cpu" and x.dtype == torch.float32 for x in xs)
    )


class OneDNNFused:
    """Runs a frozen TorchScript module with oneDNN Graph fusion switched on.

    The switch is process-wide, so it is set only around each call. The
    graph executor profiles the first call with a new input shape and
    compiles the fused kernels on the second; later calls run them.
    """

    def __init__(self, frozen: Any):
        self.frozen = frozen

    def __call__(self, *args: Any) -> Any:
        before = torch.jit.onednn_fusion_enabled()
        torch.jit.enable_onednn_fusion(True)
        try:
            return self.frozen(*args)
        finally:
            torch.jit.enable_onednn_fusion(before)


def _graph_candidates(
    module: torch.nn.Module, example: Any, mode: str, notes: List[str], fuse: bool = True
) -> Iterator[Tuple[str, Callable[..., Any]]]:
    """Yields ``(kind, runner)`` graphs to verify, best first."""
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
                fused(example)  # profiles
                fused(example)  # compiles the fused kernels
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
            # the first calls of a scripted graph run its profiling passes
            optimized(example)
            optimized(example)
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


def _channels_last_copy(module: torch.nn.Module, channels_last: bool = True) -> Optional[torch.nn.Module]:
    """A (channels_last) copy for the candidates; its parameters do not
    require grad (a traced graph may only hold such tensors as constants)."""
    import copy

    try:
        module = copy.deepcopy(module)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        return module.requires_grad_(False)
    except Exception:
        return None
