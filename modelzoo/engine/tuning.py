"""Choices the engine makes when the user does not: loader workers and torch threads.

On the CPU, when neither ``num_workers`` nor ``num_threads`` is given, the
engine measures instead of guessing: it loads and predicts the first batch in
the main process on one thread and picks the counts for the rest of the run
with :func:`choose_from_costs`. The static rules below (:func:`default_workers`,
:func:`default_threads`) serve CUDA runs, models not fed by a DataLoader, and
the case where nothing in the first batch could be predicted.

On the CPU the forward pass (``T`` torch intra-op threads in the main
process) and the decoding (``W`` DataLoader worker processes, one core each
while busy) share the machine's ``C`` cores. The rules, measured with
``benchmarks/bench_apply.py`` (1,000 640x480 JPEGs, batch 32):

* **Never oversubscribe the forward pass.** An OpenMP team waits at every
  barrier for its slowest thread, so when a decoding worker takes one of the
  team's cores the whole forward stalls. On 2 cores, resnet18 with 1 worker
  ran 1.9x slower with 2 threads than with 1, and mobilenet_v3_small with 2
  workers ran 10x slower with 2 threads than with 1. So ``T = C - W``, at
  least 1: a lone thread cannot wait for a sibling.
* **Decoding needs more cores than the forward of a light model.** Decoding
  and resizing a 640x480 JPEG costs ~5 ms of one core; mobilenet_v3_small's
  forward ~3 ms, resnet18's ~30 ms. Light models (under ~5 M parameters, a
  proxy for compute per image) get half the cores for decoding, heavier
  ones a quarter.
* **Two cores or fewer: a light model gets every core for decoding and one
  forward thread; a heavy one gets one worker and two threads.** A
  single-threaded forward may share its core with a worker through the OS
  scheduler (no barrier to stall), which pays for a decoding-bound model. A
  compute-bound model's single worker decodes ~1/3 of the time, so its
  forward takes both cores. Measured on a 2-core VM (1,000 images, median
  of 3): mobilenet_v3_small (W, T) = (2, 1) 4.4 s, (1, 1) 6.0 s, (1, 2)
  6.8 s, (2, 2) 47 s; resnet18 (1, 2) 17.5 s, (1, 1) 28.3 s.
  Caveat: on that shared VM there were also stretches where any two-thread
  forward beside a busy worker stalled (resnet18 (1, 2) 65 s against (2, 1)
  35 s); no static rule is best in both states, and the one here is the
  quiet-host optimum. Pass ``num_threads=1`` to ``apply_model`` on a host
  with noisy neighbours.

On CUDA the forward runs on the device, so the CPU is the decoders': up to
8 workers. Models not fed by a DataLoader decode in threads of the main
process (the GIL is released while PIL decodes).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any, Iterator

__all__ = ["cpu_count", "uses_cuda", "is_light", "default_workers", "default_threads", "parameter_count", "choose_from_costs"]

#: models with fewer parameters than this count as light (decoding-bound on the CPU)
LIGHT_MODEL_PARAMS = 5_000_000


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def uses_cuda(model: Any) -> bool:
    return str(getattr(model, "device", None)).startswith("cuda")


def _modules(model: Any) -> Iterator[Any]:
    """The torch modules a model holds as attributes (one level deep)."""
    torch = sys.modules.get("torch")
    if torch is None:  # a model without torch modules never imported it
        return
    if isinstance(model, torch.nn.Module):
        yield model
        return
    for value in vars(model).values() if hasattr(model, "__dict__") else ():
        if isinstance(value, torch.nn.Module):
            yield value


def parameter_count(model: Any) -> int:
    """The number of distinct torch parameters (and frozen-graph buffers) a
    model holds; 0 when it holds no torch module."""
    seen = set()
    total = 0
    for module in _modules(model):
        try:
            tensors = list(module.parameters()) + list(module.buffers())
        except Exception:  # a scripted module without introspection
            continue
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel()
    return total


def is_light(model: Any) -> bool:
    """Whether a model counts as light (decoding-bound on the CPU): fewer than
    :data:`LIGHT_MODEL_PARAMS` parameters, a proxy for compute per image."""
    n = parameter_count(model)
    return n == 0 or n < LIGHT_MODEL_PARAMS


def default_workers(model: Any) -> int:
    """DataLoader worker processes (or decoding threads for non-torch models)."""
    cores = cpu_count()
    if uses_cuda(model):
        return min(8, cores)
    from ..mixins import TorchModelMixin

    if not isinstance(model, TorchModelMixin):
        return max(1, cores // 2)  # decoding threads beside the model's own predict
    light = is_light(model)
    if cores <= 2:
        return cores if light else 1
    return min(cores - 1, max(1, round(cores / (2 if light else 4))))


def default_threads(model: Any, num_workers: int) -> int:
    """torch intra-op threads for the forward pass on the CPU: the cores the
    workers leave free, at least one; a heavy model whose workers leave it
    a single core takes two (its lone worker is mostly idle). See the module
    docstring."""
    cores = cpu_count()
    workers = max(0, int(num_workers))
    free = max(1, cores - workers)
    if free < 2 and workers < cores and not is_light(model):
        return min(cores, 2)
    return free


def choose_from_costs(load_s: float, model_s: float, cores: int) -> "tuple[int, int]":
    """Workers and threads from measured per-sample costs (both on one core).

    The first batch of a run is loaded and predicted in the main process on
    one thread, which measures ``load_s`` (decode + transforms) and
    ``model_s`` (forward + output processing) per sample at no extra cost.
    Decoding then needs ``d = cores * load / (load + model)`` cores to keep
    pace with the forward: ``ceil(d)`` workers. The forward gets the cores
    the workers leave free, where a worker busy more than a quarter of the
    time counts as taking its core: ``cores - ceil(d - 1/4)`` threads. Two
    reasons for erring that way:

    * an OpenMP team stalls at every barrier while one of its cores decodes
      (see the module docstring), which costs more than the thread gains;
    * the first batch overstates a compiled model's cost: a frozen graph
      profiles and compiles itself on its first calls with a new shape.
      TorchImageModel's fused mobilenet_v3_small measures 4-6 ms/sample on
      its first batch and ~1.1 steady, so ``d`` reads ~0.4 for a true ~1.0.

    Measured with benchmarks/bench_apply.py on 2 cores: eager
    mobilenet_v3_small (d ~ 1.2) -> (2, 1); TorchImageModel's fused
    mobilenet_v3_small (d ~ 0.4 measured) -> (1, 1), 1.85 s where (1, 2)
    takes 2.8 s; resnet18 (d ~ 0.1) -> (1, 2), each the best hand-set
    choice.
    """
    cores = max(1, int(cores))
    load_s = max(float(load_s), 1e-9)
    model_s = max(float(model_s), 1e-9)
    demand = cores * load_s / (load_s + model_s)
    workers = min(cores, max(1, math.ceil(demand - 1e-9)))
    threads = max(1, cores - max(0, math.ceil(demand - 0.25)))
    return workers, threads
