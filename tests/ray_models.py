"""Models for tests/test_ray.py that the Ray workers import (module-level, picklable)."""

from __future__ import annotations

import os
import time

import numpy as np

import modelzoo as mz
from modelzoo.loaders import ImageLoader


class PidImageLoader(ImageLoader):
    """The decoded image, and the pid of the process that decoded it."""

    def load(self, item):
        return os.getpid(), super().load(item)


class Barrier(mz.Model):
    """Labels an image by its mean pixel (rounded) in ``value``, and in
    ``pids`` which process decoded it and which predicted it, after waiting
    until ``parties`` processes have each predicted a batch: a run whose work
    never reaches ``parties`` replicas fails with a timeout instead of
    passing. Each process marks itself with a file in ``directory``."""

    def __init__(self, directory: str, parties: int, timeout: float = 120.0):
        super().__init__()
        self.directory, self.parties, self.timeout = directory, parties, timeout

    def build_loader(self):
        return PidImageLoader()

    def predict(self, arg):
        pid, image = arg
        return {
            "value": mz.Classification(label=str(int(round(float(np.asarray(image).mean()))))),
            "pids": mz.Classification(label=f"{pid}:{os.getpid()}"),
        }

    def predict_all(self, args):
        open(os.path.join(self.directory, str(os.getpid())), "w").close()
        deadline = time.monotonic() + self.timeout
        while len(os.listdir(self.directory)) < self.parties:
            if time.monotonic() > deadline:
                raise mz.ModelError(f"only {os.listdir(self.directory)} of {self.parties} replicas got work")
            time.sleep(0.05)
        return [self.predict(a) for a in args]


class KillOnce(mz.Model):
    """Labels an image by its mean pixel (rounded). The first replica to
    reach its second batch kills its own actor with ``ray.kill`` (once per
    ``marker`` file), as a worker lost mid-run."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker, self.calls = marker, 0

    def predict(self, arg):
        return mz.Classification(label=str(int(round(float(np.asarray(arg).mean())))))

    def predict_all(self, args):
        self.calls += 1
        if self.calls == 2 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            import ray

            ray.kill(ray.get_runtime_context().current_actor)
        return [self.predict(a) for a in args]
