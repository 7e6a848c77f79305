#!/usr/bin/env python
"""Are this machine's cores independent? A one-thread forward alone, and beside a busy core.

Every floor in ``docs/performance.md`` adds per-sample core-milliseconds
(decoding on one core, the forward on another) as if the cores ran
independently. This measures whether they do: one process, pinned to the
first CPU, runs a fixed one-thread workload (a seeded mobilenet_v3_small's
eager forward on a batch of 8 at 224x224, or a pure-Python loop); a second
process, pinned to another CPU, is either absent or busy with a pure-Python
spin loop (no memory traffic to speak of) or with JPEG decoding (what a
loader worker does). Rounds alternate alone / busy, and the script prints
the median time of each and the slowdown, busy / alone. On independent
cores it reads about 1.0; on two hyperthreads of one core, or vCPUs the
host runs on one, it reads well above.

    .venv/bin/python benchmarks/bench_cores.py [--rounds 5] [--busy spin decode]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SPIN = "while True: pass"
DECODE = (
    "import itertools, sys\n"
    "from PIL import Image\n"
    "for p in itertools.cycle(sys.argv[1:]):\n"
    "    Image.open(p).convert('RGB').resize((224, 224))\n"
)


def _busy(kind: str, cpu: int, photos: List[str]) -> subprocess.Popen:
    code = SPIN if kind == "spin" else DECODE
    args = [] if kind == "spin" else photos
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    os.sched_setaffinity(proc.pid, {cpu})
    return proc


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _until_busy(proc: subprocess.Popen, seconds: float = 0.3) -> None:
    """Returns once ``proc`` has run ``seconds`` of CPU (its imports done, its loop going)."""
    while _cpu_seconds(proc.pid) < seconds:
        if proc.poll() is not None:
            raise SystemExit(f"the busy process exited ({proc.returncode})")
        time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--busy", nargs="*", choices=["spin", "decode"], default=["spin", "decode"])
    args = p.parse_args(argv)
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("needs two CPUs in this process's affinity mask")
    import bench_apply as ba
    import torch

    torch.set_num_threads(1)
    os.sched_setaffinity(0, {cpus[0]})
    net = ba.build_net("mobilenet_v3_small")
    x = torch.randn(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    photos = ba.list_photos(ba.photo_dir(100))

    def forward() -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for _ in range(10):
                net(x)
        return time.perf_counter() - t

    def python_loop() -> float:
        t = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        return time.perf_counter() - t

    work = {"forward": forward, "python": python_loop}
    for fn in work.values():
        fn()  # warm-up
    times: Dict[str, List[float]] = {f"{w} {b}": [] for w in work for b in ["alone", *args.busy]}
    for _ in range(args.rounds):
        for busy in ["alone", *args.busy]:
            proc = None if busy == "alone" else _busy(busy, cpus[1], photos)
            try:
                if proc is not None:
                    _until_busy(proc)
                for name, fn in work.items():
                    times[f"{name} {busy}"].append(fn())
            finally:
                if proc is not None:
                    proc.kill()
                    proc.wait()
    print(f"# {len(cpus)} cpus ({os.uname().machine}), workload pinned to cpu {cpus[0]}, busy process to cpu "
          f"{cpus[1]}; {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    for name in work:
        alone = statistics.median(times[f"{name} alone"])
        line = f"{name:8s} alone {alone * 1e3:7.1f} ms"
        for busy in args.busy:
            t = statistics.median(times[f"{name} {busy}"])
            line += f" | beside {busy} {t * 1e3:7.1f} ms ({t / alone:.2f}x)"
        print(line)


if __name__ == "__main__":
    main()
