#!/usr/bin/env python
"""What a VESSL-style model costs over the code it wraps.

(1) Per-call overhead: ``RunnerModel.predict`` (the three hooks plus the
    answer's conversion to a Classification) against calling
    ``postprocess_data(predict(model, preprocess_data(x)))`` directly and
    building the Classification by hand (with ``Label.from_trusted``, the
    constructor the adapter uses; ``Classification(...)`` costs ~50 us more). Median over ``--rounds`` rounds of
    ``--calls`` calls, in microseconds per call, the two interleaved.
(2) A zoo lookup (``get_zoo_model_info``) with the local zoo holding 0, 10
    and ``--entries`` models: every lookup checks the local zoo's directory
    for changes (another process may have registered a model), so its cost
    grows with the number of entries. Medians over interleaved rounds.

Usage::

    .venv/bin/python benchmarks/bench_vessl.py            # ~1 min on 2 busy cores
    .venv/bin/python benchmarks/bench_vessl.py --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import modelzoo as mz  # noqa: E402
import modelzoo.vessl as vessl  # noqa: E402


class Lengths(vessl.RunnerBase):
    @staticmethod
    def load_model(props, artifacts):  # type: ignore[no-untyped-def]
        return 100

    @staticmethod
    def preprocess_data(data):  # type: ignore[no-untyped-def]
        return len(data)

    @staticmethod
    def predict(model, data):  # type: ignore[no-untyped-def]
        return {"label": "long" if data > model else "short", "confidence": min(data / (2 * model), 1.0)}


def _per_call_us(fn: Callable[[], Any], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def bench_overhead(calls: int, rounds: int) -> None:
    vessl.register_model("bench-lengths", runner_cls=Lengths)
    model = mz.load_zoo_model("bench-lengths")
    data = b"x" * 150

    def direct() -> Any:
        out = Lengths.postprocess_data(Lengths.predict(100, Lengths.preprocess_data(data)))
        return mz.Classification.from_trusted(label=out["label"], confidence=float(out["confidence"]))

    assert model.predict(data) == direct()
    times: Dict[str, List[float]] = {"direct": [], "RunnerModel.predict": []}
    for _ in range(rounds):
        times["direct"].append(_per_call_us(direct, calls))
        times["RunnerModel.predict"].append(_per_call_us(lambda: model.predict(data), calls))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"## per-call overhead ({calls} calls x {rounds} rounds, median)")
    for k, v in med.items():
        print(f"  {k:22s} {v:8.2f} us/call")
    print(f"  RunnerModel / direct = {med['RunnerModel.predict'] / med['direct']:.3f} "
          f"(+{med['RunnerModel.predict'] - med['direct']:.2f} us)")


def bench_lookup(entries: int, calls: int, rounds: int) -> None:
    sizes = sorted({0, 10, entries})
    results: Dict[int, List[float]] = {n: [] for n in sizes}
    homes = {}
    base = os.environ["MODELZOO_HOME"]
    for n in sizes:  # one zoo home per size, filled once
        os.environ["MODELZOO_HOME"] = homes[n] = os.path.join(base, f"lookup-{n}")
        for _ in range(n):
            vessl.register_model("bench-lookup", runner_cls=Lengths)
    target = "mobilenet-v2-imagenet-torch"
    for _ in range(rounds):
        for n in sizes:
            os.environ["MODELZOO_HOME"] = homes[n]
            mz.get_zoo_model_info(target)  # the local zoo is read once per change
            results[n].append(_per_call_us(lambda: mz.get_zoo_model_info(target), calls))
    os.environ["MODELZOO_HOME"] = base
    print(f"\n## get_zoo_model_info({target!r}) with the local zoo holding N models ({calls} calls x {rounds} rounds)")
    for n in sizes:
        print(f"  N = {n:4d}  {statistics.median(results[n]):8.2f} us/lookup")


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.rounds, args.entries = 2000, 3, 30
    tmp = tempfile.mkdtemp(prefix="modelzoo-bench-vessl-")
    os.environ["MODELZOO_HOME"] = os.path.join(tmp, "home")
    os.environ[vessl.ENV_TRUST_KEY] = os.path.join(tmp, "trust.key")
    try:
        bench_overhead(args.calls, args.rounds)
        bench_lookup(args.entries, max(args.calls // 20, 100), args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
