"""Choices the engine makes when the user does not: loader workers, torch threads
and the batch size.

The batch size (CPU runs over images where the user set none): the best one
depends on the model and the input size more than on anything a rule can
see. At 640x480 on 2 threads eager mobilenet_v2 runs 219 ms/image at batch
16 and 65 ms/image at batch 1 (a batch's activations no longer fit in the
caches), while at 224x224 larger batches are the faster. So the engine
tries a few sizes on the run's first batches (:class:`BatchSizeSearch`:
4, then 1, then the default unless 1 already won, each until its
per-sample time settles) and keeps the fastest, never above
:func:`memory_bound`.

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

import dataclasses
import math
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

__all__ = [
    "BatchSizeSearch",
    "batch_size_candidates",
    "first_batch_size",
    "memory_bound",
    "cpu_count",
    "uses_cuda",
    "is_light",
    "default_workers",
    "default_threads",
    "parameter_count",
    "choose_from_costs",
    "decoding_demand",
    "predict_streams",
    "Calibration",
    "available_memory",
    "input_elements",
]

#: models with fewer parameters than this count as light (decoding-bound on the CPU)
LIGHT_MODEL_PARAMS = 5_000_000


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def uses_cuda(model: Any) -> bool:
    """Whether ``model`` (a :class:`~modelzoo.Model`) runs on a CUDA device (its declared ``device``)."""
    return str(model.device).startswith("cuda")


def _torch_submodules(model: Any) -> Iterator[Any]:
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
    for module in _torch_submodules(model):
        try:
            tensors = list(module.parameters()) + list(module.buffers())
        except Exception:  # a scripted module without introspection
            continue
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel()
    return total


def warmup_batches(model: Any) -> int:
    """The model's batches at a new input shape before its time per batch is
    steady (its ``warmup_batches``; 0 when it declares none): what the
    calibration leaves out of its measurements."""
    try:
        return max(0, int(getattr(model, "warmup_batches", 0) or 0))
    except (TypeError, ValueError):
        return 0


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


def decoding_demand(load_s: float, model_s: float, cores: int) -> float:
    """The cores decoding needs to keep pace with the forward: ``cores * load
    / (load + model)``, from per-sample costs on one core (each at least 1 ns)."""
    load_s = max(float(load_s), 1e-9)
    model_s = max(float(model_s), 1e-9)
    return cores * load_s / (load_s + model_s)


def choose_from_costs(load_s: float, model_s: float, cores: int, margin: float = 0.15) -> "tuple[int, int]":
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

    A worker more is taken only when the demand passes a whole number by
    more than ``margin``: a demand measured at 0.95 one run and 1.05 the
    next (noise of a few percent) gives the same count both times, where a
    bare ``ceil`` flipped between 1 and 2 workers run to run. Near the
    boundary either count is about as fast, so the deadband costs little.

    Measured with benchmarks/bench_apply.py on 2 cores: eager
    mobilenet_v3_small (d ~ 1.2) -> (2, 1); TorchImageModel's fused
    mobilenet_v3_small (d ~ 0.4 measured) -> (1, 1), 1.85 s where (1, 2)
    takes 2.8 s; resnet18 (d ~ 0.1) -> (1, 2), each the best hand-set
    choice.
    """
    cores = max(1, int(cores))
    demand = decoding_demand(load_s, model_s, cores)
    workers = min(cores, max(1, math.ceil(demand - max(margin, 1e-9))))
    threads = max(1, cores - max(0, math.ceil(demand - 0.25)))
    return workers, threads


def predict_streams(load_s: float, model_s: float, cores: int, threads: int, margin: float = 0.15) -> int:
    """How many batches to predict at once, each in its own thread, for a
    model that is :attr:`~modelzoo.Model.thread_safe` (costs as in
    :func:`choose_from_costs`).

    Only a one-thread forward gains. When :func:`choose_from_costs` gives
    the forward one thread (on 2 cores, a decoding demand ``d`` of 0.25 or
    more), the cores the decoding leaves, ``cores - d``, are more than the
    one the forward uses while ``d`` is below ``cores - 1``: one more
    batch in flight takes that share, with no OpenMP barrier between the two
    (two forwards of one thread each, where a second intra-op thread would
    stall at every barrier while a worker decodes). ``ceil(cores - d -
    margin)`` streams, the same deadband as the workers.

    Measured on 2 cores, TorchImageModel's fused mobilenet_v3_small, 1,000
    640x480 photos, batch 32, d ~ 0.7 (the case of
    ``benchmarks/bench_vs_fiftyone.py``): ``apply_model`` median 3.62 s with
    2 streams against 3.98 s with one, 8 interleaved pairs, pairwise ratio
    0.91 (7 of 8 faster); the forward alone on decoded batches, beside a
    process decoding ~60% of the time, 2.0 against 2.5 ms/sample. The one
    loader worker then limits the run (it shares the cores with both
    streams); a second worker made it slower (4.2-4.6 s against 3.7-4.1).
    """
    if threads != 1 or cores < 2:
        return 1
    demand = decoding_demand(load_s, model_s, cores)
    return max(1, min(cores, math.ceil(cores - demand - max(margin, 1e-9))))


#: an input batch's bytes times this bounds a CPU forward's working set (activations
#: of a convolutional net peak at a few times its input, several layers live at once)
ACTIVATION_FACTOR = 32
#: the share of the available memory a batch's working set may take
MEMORY_SHARE = 0.25


def available_memory() -> Optional[int]:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def input_elements(inputs: Any) -> int:
    """The elements of the arrays / tensors in a collated batch (in lists,
    tuples, dicts and dataclasses such as :class:`~modelzoo.transforms.ImageBatch`;
    0 when it holds none)."""
    if isinstance(inputs, (list, tuple)):
        return sum(input_elements(x) for x in inputs)
    if isinstance(inputs, dict):
        return sum(input_elements(x) for x in inputs.values())
    if dataclasses.is_dataclass(inputs) and not isinstance(inputs, type):
        return sum(input_elements(getattr(inputs, f.name)) for f in dataclasses.fields(inputs))
    size = getattr(inputs, "size", None)
    if isinstance(size, int):  # numpy
        return size
    numel = getattr(inputs, "numel", None)
    return int(numel()) if callable(numel) else 0


def memory_bound(bytes_per_sample: float, available: Optional[int] = None) -> Optional[int]:
    """The largest batch whose working set (:data:`ACTIVATION_FACTOR` times its
    input's bytes as float32, ``4 * input_elements``) fits in
    :data:`MEMORY_SHARE` of the available memory; None when either is
    unknown. At least 1."""
    available = available_memory() if available is None else available
    if not available or bytes_per_sample <= 0:
        return None
    return max(1, int(available * MEMORY_SHARE // (bytes_per_sample * ACTIVATION_FACTOR)))


def batch_size_candidates(default: int, total: int, bound: Optional[int] = None) -> List[int]:
    """The batch sizes a run may try: 1, 4 and ``default``, each at most
    ``bound``, when two batches of each fit in the run (``total`` samples);
    else ``[default]`` (capped at the bound). A search of one size still
    measures its per-sample cost, which the worker / thread choice needs."""
    top = min(default, bound) if bound else default
    sizes = sorted({s for s in (1, 4, default) if s <= top} | {top})
    if 2 * sum(sizes) > total:
        return [top]
    return sizes


def first_batch_size(default: int) -> int:
    """The size of a searching run's first batch (the search starts there): 4,
    or the default when smaller."""
    return min(4, default)


class BatchSizeSearch:
    """Tries batch sizes on a run's first batches and keeps the fastest per sample.

    It starts at ``start`` (4: the first batch, also the one the load time
    is measured on), then tries the smaller sizes (1); when one of them is
    faster by more than ``margin`` it stops there (a larger batch only
    thrashes the caches more: at 640x480 eager mobilenet_v2 runs 65
    ms/image at batch 1, ~75 at 4, 219 at 16), else it goes on upwards to
    the default. Each size runs until two consecutive per-sample predict
    times are within ``settle`` of each other (the stop rule of
    :class:`Calibration`) or after ``max_batches`` batches (the default,
    ``default_max_batches``: an optimized graph profiles itself on its
    first calls at a shape). The default is kept unless another size is
    faster by more than ``margin`` (so that noise does not change the batch
    size run to run). Batches of other sizes (loaded ahead before the size
    changed, or a run's last, shorter batch) are ignored, and so are the
    first ``warmup`` batches of each size: a compiled graph profiles and
    optimizes itself on its first calls at a new input shape (TorchScript's
    profiling executor: two calls), and those calls, equally slow, would
    look settled (measured on timm's resnet18, frozen: 37, 37 ms/sample at
    batch 4, then 20 at batch 1 after its own two, 17-18 steady at either;
    counted, they made batch 1 win and the run 24% slower).
    """

    def __init__(
        self,
        sizes: List[int],
        default: int,
        settle: float = 0.15,
        max_batches: int = 4,
        margin: float = 0.1,
        default_max_batches: int = 8,
        start: Optional[int] = None,
        warmup: int = 0,
    ):
        sizes = sorted(set(sizes))
        self.warmup = max(0, int(warmup))
        self._seen: Dict[int, int] = {}
        self.default = default if default in sizes else max(sizes)
        start = start if start in sizes else self.default
        self.order = [start] + sorted((s for s in sizes if s < start), reverse=True) + [s for s in sizes if s > start]
        self.settle, self.max_batches, self.margin = settle, max_batches, margin
        self.default_max_batches = max(default_max_batches, max_batches)
        self.times: Dict[int, List[float]] = {s: [] for s in self.order}
        self.costs: Dict[int, float] = {}
        self.chosen: Optional[int] = None
        self._start = start

    @property
    def current(self) -> int:
        """The size to load next."""
        if self.chosen is not None:
            return self.chosen
        return next(s for s in self.order if s not in self.costs)

    def observe(self, size: int, seconds_per_sample: float) -> Optional[int]:
        """Records one batch of ``size``; returns the chosen size once decided."""
        if self.chosen is not None or size != self.current:
            return self.chosen
        self._seen[size] = self._seen.get(size, 0) + 1
        if self._seen[size] <= self.warmup:
            return None
        times = self.times[size]
        times.append(seconds_per_sample)
        last = times[-2:]
        settled = len(last) == 2 and abs(last[1] - last[0]) <= self.settle * max(last)
        limit = self.default_max_batches if size == self.default else self.max_batches
        if not settled and len(times) < limit:
            return None
        self.costs[size] = min(last)
        best = min(self.costs, key=self.costs.__getitem__)
        smaller_wins = best < self._start and self.costs[best] < (1 - self.margin) * self.costs[self._start]
        if smaller_wins or len(self.costs) == len(self.order):
            if self.default in self.costs and self.costs[best] > (1 - self.margin) * self.costs[self.default]:
                best = self.default
            self.chosen = best
        return self.chosen

    #: the memory bound the sizes were capped at (for the log), when known
    bound: Optional[int] = None

    def reason(self) -> str:
        """Why :attr:`chosen` was chosen, for the log."""
        if self.chosen == self.default:
            return "the default" if len(self.costs) == 1 else f"no other size beat the default by more than {self.margin:.0%}"
        if self.default not in self.costs:
            return f"faster than batch {self._start} by more than {self.margin:.0%}; larger sizes not tried"
        return f"faster than the default {self.default} by more than {self.margin:.0%}"

    def explain(self) -> str:
        """The measured per-sample costs, for the log."""
        text = ", ".join(f"{self.costs[s] * 1e3:.2f} ms/sample at batch {s}" for s in sorted(self.costs))
        return text + ("" if self.bound is None else f"; memory bound {self.bound}")


class Calibration:
    """Picks loader workers and torch threads from measured costs (CPU runs
    where the user set neither).

    The engine loads the run's first batch in the main process (timing the
    load), then predicts batches on :attr:`provisional` counts, reporting
    each batch's predict time to :meth:`observe`, which returns the counts
    for the rest of the run once the times have settled (the first calls
    of an optimized graph profile and compile it: on mobilenet_v3_small the
    first batches of 32 measured 19, 14, 8, 5, then 3.1-3.3 ms/sample), or
    after :attr:`max_batches`. The counts follow from the steady-state cost
    with :func:`choose_from_costs`.

    A light model is predicted on one thread beside one loader worker while
    it is measured (the least any choice has, so no core idles); a heavy
    one on every core, its cost per core taken as the measured time times
    the cores (perfect scaling: it overstates the cost, leaning towards
    threads), with no workers.

    The first :func:`warmup_batches` batches are left out of the
    measurement (a compiled graph's first calls at a shape: two profiling
    calls that read alike, hence "settled", at several times the steady
    cost).

    Args:
        model: the model of the run.
        cores: the cores to share (default: :func:`cpu_count`).
        settle: two consecutive per-sample times within this fraction of
            each other count as settled.
        max_batches: decide after this many batches whatever the times.
    """

    def __init__(
        self,
        model: Any,
        cores: Optional[int] = None,
        settle: float = 0.15,
        max_batches: int = 8,
        counts: Optional[Tuple[int, int]] = None,
    ):
        self.cores = cores or cpu_count()
        self._params = parameter_count(model)
        self.light = self._params == 0 or self._params < LIGHT_MODEL_PARAMS
        self.fixed = counts
        if counts is not None:
            self.provisional: Tuple[int, int] = counts
        else:
            self.provisional = (1, 1) if self.light else (0, self.cores)
        self.settle = settle
        self.max_batches = max_batches
        self.load_s: Optional[float] = None
        self.times: List[float] = []
        self.search: Optional[BatchSizeSearch] = None
        self.warmup = warmup_batches(model)
        self._warm = 0
        #: (load, model) seconds per sample on one core, once decided
        self.costs: Optional[Tuple[float, float]] = None

    def reconsider(self, elements_per_sample: float) -> bool:
        """Seen the first batch: a light model (by parameters) whose inputs are
        much larger than 224x224 is heavy after all (its compute grows with
        the pixels: mobilenet_v2 at 640x480 costs ~65 ms/image on 2 threads,
        resnet18's ballpark at 224x224), so it is measured on every core with
        no worker instead. Returns whether the provisional counts changed."""
        if self.fixed is not None or not self.light or elements_per_sample <= 0:
            return False
        pixels = elements_per_sample / 3
        if self._params * max(1.0, pixels / (224 * 224)) < LIGHT_MODEL_PARAMS:
            return False
        self.light = False
        self.provisional = (0, self.cores)
        return True

    @property
    def tunes_counts(self) -> bool:
        """Whether the workers and threads are measured (else they were given)."""
        return self.fixed is None

    def search_batch_size(self, search: BatchSizeSearch) -> None:
        """Chooses the batch size too: :meth:`observe` then feeds ``search``
        (with each batch's size) and decides once it has chosen."""
        self.search = search

    def observe_load(self, seconds_per_sample: float) -> None:
        """The cost of loading one sample in the main process, on one core."""
        self.load_s = seconds_per_sample

    def observe(self, seconds_per_sample: float, size: Optional[int] = None) -> Optional[Tuple[int, int]]:
        """Records one batch's predict time (on the provisional counts; ``size``:
        the batch's size, for the batch-size search); returns ``(workers,
        threads)`` once decided, else None."""
        if self.search is not None:
            if size is None or self.search.observe(size, seconds_per_sample) is None:
                return None
            return self.decide()
        if self._warm < self.warmup:
            self._warm += 1
            return None
        self.times.append(seconds_per_sample)
        last = self.times[-2:]
        settled = len(last) == 2 and abs(last[1] - last[0]) <= self.settle * max(last)
        if not settled and len(self.times) < self.max_batches:
            return None
        return self.decide()

    @property
    def batches_measured(self) -> int:
        """The batches whose predict time was recorded."""
        if self.search is not None:
            return sum(len(t) for t in self.search.times.values())
        return len(self.times)

    @property
    def batch_size(self) -> Optional[int]:
        """The batch size the search chose (None without one, or before it chose)."""
        return None if self.search is None else self.search.chosen

    def decide(self) -> Tuple[int, int]:
        """The counts from what was measured so far (the steady state: the
        least of the last two per-sample times; at the chosen batch size
        when the batch size is searched too)."""
        if self.fixed is not None:
            return self.fixed
        if self.search is not None and self.search.chosen is not None:
            per_sample = self.search.costs.get(self.search.chosen, min(self.search.costs.values()))
        else:
            per_sample = min(self.times[-2:])
        model_s = per_sample * self.provisional[1]  # on one core
        self.costs = (self.load_s or 0.0, model_s)
        return choose_from_costs(self.load_s or 0.0, model_s, self.cores)

    def split(self, threads: int, max_streams: Optional[int] = None) -> Tuple[int, int]:
        """``(threads, streams)`` for a :attr:`~modelzoo.Model.thread_safe`
        model after :meth:`decide` chose ``threads``: each stream predicts a
        batch at once with that many torch threads. ``max_streams``: how
        many batches memory holds at once (None: no bound).

        * One thread chosen: :func:`predict_streams` may add a stream.
        * More than one chosen: that many one-thread streams instead of one
          forward on that many threads. Two reasons, both measured on 2 cores:

          - An intra-op team waits at every barrier for its slowest
            thread, and the loader worker beside it takes a core now and
            then; one-thread streams share no barrier. The zoo's
            mobilenet_v2 (plain frozen graph, 640x480, batch 1, 1 worker),
            300 photos, the whole process: median 17.8 s with two streams
            against 19.9 s on two threads (4 interleaved pairs, pairwise
            0.88-0.91). resnet18's fused graph at batch 32, 1,000 photos:
            27.4 s against 28.7 s (3 pairs, 0.93-0.97).
          - A light model was measured on one thread, and a fused oneDNN
            graph keeps the thread count its kernels were compiled with
            (:class:`~modelzoo.optimize.OneDNNFused`): a second torch
            thread would not be used. Fused mobilenet_v3_small on 224x224
            JPEGs (the calibration chose 1 worker and 2 threads), 1,000
            photos, batch 32: 3.07-3.32 s with two one-thread streams
            against 3.94-4.23 s (4 interleaved pairs, 4 of 4 faster).

          With fewer streams allowed than threads, each stream gets an
          equal share of the threads (one for a light model).
        """
        if self.costs is None:
            return threads, 1
        if threads == 1:
            streams = predict_streams(self.costs[0], self.costs[1], self.cores, threads)
        else:
            streams = threads
        if max_streams is not None:
            streams = max(1, min(streams, max_streams))
        if streams == 1:
            return threads, 1
        per_stream = 1 if self.provisional[1] == 1 else max(1, threads // streams)
        return per_stream, streams
