"""optimize="auto" keeps its decision for the next process (modelzoo.optimize_cache).

Every test points ``MODELZOO_OPTIMIZE_CACHE`` at its own directory (the
session turns it off for every other test). The decisions are measured with
the real timer; the tests check what was kept and reused, never which kind
won, and compare the reused model's predictions with eager's."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from typing import Any, List

import numpy as np
import pytest
import skimage.data

from modelzoo import optimize_cache
from modelzoo.testing import tiny_model

PHOTOS = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "optimize-cache"
    monkeypatch.setenv(optimize_cache.ENV, str(path))
    return path


def _prepared(**overrides: Any) -> Any:
    model = tiny_model("classification", **overrides)
    model.prepare(10**6)
    return model


def _entries(path) -> List[Any]:
    return sorted(path.glob("*.json")) if path.is_dir() else []


def _assert_predicts_like_eager(model: Any, **overrides: Any) -> None:
    eager = tiny_model("classification", optimize=False, **overrides).predict_all(PHOTOS)
    got = model.predict_all(PHOTOS)
    assert [c.label for c in got] == [c.label for c in eager]
    np.testing.assert_allclose([c.confidence for c in got], [c.confidence for c in eager], rtol=1e-4)


def test_a_decision_is_kept_privately_and_the_next_model_reuses_it(cache):
    first = _prepared()
    assert first.optimization_decision.kept_at is None  # measured now
    (entry,) = _entries(cache)
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(entry).st_mode) == 0o600
    data = json.loads(entry.read_text())
    assert data["kind"] == first.optimization
    assert set(data["timings"]) == set(first.optimization_decision.timings)

    second = _prepared()
    decision = second.optimization_decision
    assert decision.kept_at == pytest.approx(data["measured_at"])
    assert second.optimization == first.optimization
    assert decision.timings == {k: tuple(v) for k, v in data["timings"].items()}
    assert "as measured on" in second.optimization_reason
    _assert_predicts_like_eager(second)
    assert len(_entries(cache)) == 1  # reused, not measured again


def test_other_weights_reuse_the_decision_but_are_verified_with_their_own(cache):
    _prepared()
    other = _prepared(entrypoint_args={"num_classes": 10, "seed": 7})
    assert other.optimization_decision.kept_at is not None
    _assert_predicts_like_eager(other, entrypoint_args={"num_classes": 10, "seed": 7})


def test_another_structure_or_input_size_is_measured_on_its_own(cache):
    _prepared()
    wider = _prepared(entrypoint_args={"num_classes": 5}, classes=[str(i) for i in range(5)])
    larger = _prepared(image_size=96)
    assert wider.optimization_decision.kept_at is None
    assert larger.optimization_decision.kept_at is None
    assert len(_entries(cache)) == 3


def test_a_kept_eager_builds_no_graph(cache):
    first = _prepared()
    (entry,) = _entries(cache)
    data = json.loads(entry.read_text())
    data["kind"] = "eager"
    entry.write_text(json.dumps(data))
    model = _prepared()
    assert model.optimization == "eager" and model.optimization_decision.kept_at is not None
    assert model._runner is model._net  # the eager module itself
    assert first.optimization_decision.kept_at is None
    _assert_predicts_like_eager(model)


@pytest.mark.parametrize("content", [
    "not json",
    json.dumps({"format": 1, "kind": "__import__('os').system('false')", "measured_at": 0, "timings": {}}),
    json.dumps({"format": 1, "kind": "compiled", "measured_at": "now", "timings": {}}),
])
def test_an_unreadable_or_foreign_entry_is_ignored_and_replaced(cache, content):
    _prepared()
    (entry,) = _entries(cache)
    entry.write_text(content)
    model = _prepared()
    assert model.optimization_decision.kept_at is None  # measured again
    assert json.loads(entry.read_text())["kind"] == model.optimization
    _assert_predicts_like_eager(model)


def test_a_kept_kind_this_build_cannot_make_is_measured_again(cache):
    _prepared()
    (entry,) = _entries(cache)
    data = json.loads(entry.read_text())
    data["kind"] = "compiled"  # never a candidate of optimize="auto" (it traces)
    entry.write_text(json.dumps(data))
    model = _prepared()
    assert model.optimization_decision.kept_at is None
    assert json.loads(entry.read_text())["kind"] == model.optimization


def test_an_old_entry_is_measured_again(cache):
    key = "k" * 40
    assert optimize_cache.write(key, "frozen", {"frozen": (2.0, 1.0)}) is not None
    kept = optimize_cache.read(key)
    assert kept is not None and kept.kind == "frozen" and kept.timings == {"frozen": (2.0, 1.0)}
    assert optimize_cache.read(key, now=kept.measured_at + optimize_cache.MAX_AGE_S - 1) is not None
    assert optimize_cache.read(key, now=kept.measured_at + optimize_cache.MAX_AGE_S + 1) is None


def test_the_oldest_entries_past_the_limit_are_removed(cache, monkeypatch):
    monkeypatch.setattr(optimize_cache, "MAX_ENTRIES", 3)
    paths = [optimize_cache.write(f"{i:040d}", "frozen", {}) for i in range(3)]
    now = time.time()
    for age, path in zip((300, 200, 100), paths):  # the first written is the oldest
        os.utime(path, (now - age, now - age))
    newest = optimize_cache.write("9" * 40, "eager", {})
    assert sorted(p.name for p in _entries(cache)) == sorted(os.path.basename(p) for p in [*paths[1:], newest])
    stale = paths[1]
    os.utime(stale, (now - optimize_cache.MAX_AGE_S - 10,) * 2)
    optimize_cache.write("8" * 40, "eager", {})
    assert not os.path.exists(stale) and len(_entries(cache)) == 3


def test_off_and_a_test_timer_keep_nothing(cache, monkeypatch):
    monkeypatch.setenv(optimize_cache.ENV, "off")
    _prepared()
    monkeypatch.setenv(optimize_cache.ENV, str(cache))
    model = tiny_model("classification")
    model.optimize_timer = lambda eager_fn, ex, graph_fn, gx: (1.0, 0.5)
    model.prepare(10**6)
    assert not cache.exists() or not _entries(cache)


def test_a_linked_directory_is_not_used(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv(optimize_cache.ENV, str(link))
    assert optimize_cache.write("k" * 40, "frozen", {}) is None
    model = _prepared()
    assert model.optimization_decision.kept_at is None
    assert not list(real.iterdir())


_CHILD = """
import json, sys
from modelzoo.testing import tiny_model
model = tiny_model("classification")
model.prepare(10**6)
print(json.dumps({"kind": model.optimization, "kept_at": model.optimization_decision.kept_at}))
"""


def test_the_next_process_reuses_the_decision(cache):
    env = {**os.environ, optimize_cache.ENV: str(cache)}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    assert runs[0]["kept_at"] is None
    assert runs[1]["kind"] == runs[0]["kind"]
    assert runs[1]["kept_at"] is not None and runs[1]["kept_at"] <= time.time()
    assert len(_entries(cache)) == 1
