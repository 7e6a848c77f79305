"""optimize="auto": a graph runs only when it is verified against eager AND
measured faster; a model that cannot be traced runs eager quietly.

The decision is a pure function of measured numbers (``keeps_graph``), and
the timer is a parameter: these tests give it fixed numbers (while the
candidates still run, so verification is real), or, with the real timer,
check only that the decision agrees with the numbers it recorded. Nothing
here depends on the host's speed."""

from __future__ import annotations

import logging
from typing import Any, List, Sequence, Tuple

import numpy as np
import pytest
import skimage.data
import torch

from modelzoo.optimize import MIN_GAIN, decided, interleaved_seconds, keeps_graph, optimize_module
from modelzoo.testing import tiny_classifier, tiny_model

PHOTOS = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()]


class _FixedTimer:
    """Runs eager and the candidate once each (so a candidate that cannot
    run still fails) and reports the given seconds: ``graph`` holds one
    figure per candidate timed, in order (the last one repeats)."""

    def __init__(self, eager: float, graph: Sequence[float]):
        self.eager, self.graph = eager, list(graph)
        self.calls: List[Any] = []

    def __call__(self, eager_fn, eager_x, graph_fn, graph_x) -> Tuple[float, float]:
        with torch.inference_mode():
            eager_fn(eager_x)
            graph_fn(graph_x)
        self.calls.append(graph_fn)
        return self.eager, self.graph[min(len(self.calls), len(self.graph)) - 1]


def _same_predictions(a, b, rtol):
    assert [c.label for c in a] == [c.label for c in b]
    np.testing.assert_allclose([c.confidence for c in a], [c.confidence for c in b], rtol=rtol)


def _prepared(timer, **overrides):
    model = tiny_model("classification", **overrides)
    model.optimize_timer = timer
    model.prepare(10**6)
    return model


def test_keeps_graph_needs_the_margin():
    assert MIN_GAIN == 0.05
    assert keeps_graph(10.0, 9.0)  # 10% faster
    assert keeps_graph(10.0, 9.5)  # exactly the margin
    assert not keeps_graph(10.0, 9.6)  # 4%: within the noise
    assert not keeps_graph(10.0, 10.0) and not keeps_graph(10.0, 12.0)
    assert keeps_graph(10.0, 9.6, min_gain=0.02) and not keeps_graph(10.0, 9.0, min_gain=0.2)
    assert not keeps_graph(0.0, 0.0)  # nothing measured: nothing kept


def test_a_verified_faster_graph_is_kept():
    reference = tiny_model("classification", optimize=False).predict_all(PHOTOS)
    timer = _FixedTimer(eager=0.004, graph=[0.002])
    model = _prepared(timer)
    assert model.optimization == "frozen+onednn"
    decision = model.optimization_decision
    assert decision.kind == "frozen+onednn" and len(timer.calls) == 1
    assert decision.timings == {"frozen+onednn": pytest.approx((2.0, 1.0))}  # ms per sample: batch of 2
    assert decision.speedup == pytest.approx(2.0)
    assert model.optimization_reason.startswith("running frozen+onednn: 1 ms/sample against eager's 2")
    _same_predictions(model.predict_all(PHOTOS), reference, rtol=1e-4)


def test_a_graph_that_is_not_faster_is_dropped():
    reference = tiny_model("classification", optimize=False).predict_all(PHOTOS)
    timer = _FixedTimer(eager=0.010, graph=[0.0097])  # 3% faster: under the margin, every candidate
    model = _prepared(timer)
    assert model.optimization == "eager" and not model._channels_last
    assert len(timer.calls) == 3  # frozen+onednn, frozen, channels_last: each verified, timed, dropped
    assert set(model.optimization_decision.timings) == {"frozen+onednn", "frozen", "channels_last"}
    assert sum("not 5% faster" in n for n in model.optimization_notes) == 3
    assert model.optimization_reason.startswith("running eager: no candidate was verified and faster")
    _same_predictions(model.predict_all(PHOTOS), reference, rtol=1e-6)  # the eager module itself

    second = _prepared(_FixedTimer(eager=0.010, graph=[0.012, 0.008]))  # fused slower, plain frozen 20% faster
    assert second.optimization == "frozen"
    assert "frozen+onednn: verified, not 5% faster" in second.optimization_notes[0]
    _same_predictions(second.predict_all(PHOTOS), reference, rtol=1e-4)


def test_forced_optimize_is_not_timed():
    model = tiny_model("classification", optimize=True)
    assert model.optimization == "frozen+onednn" and model.optimization_decision is None
    off = tiny_model("classification", optimize=False)
    off.prepare(10**6)
    assert off.optimization == "eager" and off.optimization_decision is None and off.optimization_reason == "optimize=False"


class _DataDependent(torch.nn.Module):
    """Scales its logits by the batch's mean pixel, read as a Python float:
    a trace bakes in the first batch's value (with a TracerWarning)."""

    def __init__(self):
        super().__init__()
        self.net = tiny_classifier()

    def forward(self, x):
        return self.net(x) * (1.0 + float(x.mean()))


def test_a_model_that_cannot_be_traced_runs_eager_quietly(recwarn, caplog):
    reference = tiny_model("classification", entrypoint_fcn=_DataDependent, entrypoint_args=None,
                           embeddings_layer=None, optimize=False).predict_all(PHOTOS)
    recwarn.clear()
    with caplog.at_level(logging.DEBUG, logger="modelzoo"):
        model = _prepared(_FixedTimer(eager=0.010, graph=[0.010]), entrypoint_fcn=_DataDependent,
                          entrypoint_args=None, embeddings_layer=None)
    assert model.optimization == "eager"
    assert [str(w.message) for w in recwarn] == []  # no TracerWarning, no deprecation storm
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(info) == 1 and info[0].levelno == logging.INFO, [r.getMessage() for r in info]
    notes = model.optimization_notes
    assert any(n.startswith("frozen+onednn: outputs differ from eager") for n in notes), notes
    assert any(n.startswith("frozen: outputs differ from eager") for n in notes), notes
    assert list(model.optimization_decision.timings) == ["channels_last"]  # the only candidate verified
    assert "frozen: outputs differ" in model.optimization_reason and "frozen: outputs differ" in info[0].getMessage()
    _same_predictions(model.predict_all(PHOTOS), reference, rtol=1e-6)


class _NotTensors(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = tiny_classifier()

    def forward(self, x):
        return {"logits": self.net(x), "note": "not a tensor"}


def test_outputs_that_cannot_be_traced(recwarn):
    examples = [torch.rand(2, 3, 64, 64), torch.rand(1, 3, 64, 64)]
    result = optimize_module(_NotTensors().eval(), examples, timer=_FixedTimer(eager=0.01, graph=[0.01]))
    assert result.kind == "eager" and not result.channels_last
    assert any(n.startswith("frozen: cannot trace the model") for n in result.notes), result.notes
    assert [str(w.message) for w in recwarn] == []


def _consistent(model) -> None:
    """The decision agrees with the numbers it recorded, whatever they are."""
    decision = model.optimization_decision
    assert decision is not None and decision.kind == model.optimization
    for kind, (eager_ms, ms) in decision.timings.items():
        assert eager_ms > 0 and ms > 0
        assert keeps_graph(eager_ms, ms, decision.min_gain) == (kind == decision.kind), (kind, eager_ms, ms)
    if decision.kind != "eager":
        assert decision.kind in decision.timings


def test_the_real_timer_decides_by_its_own_numbers():
    reference = tiny_model("classification", optimize=False).predict_all(PHOTOS)
    model = tiny_model("classification")
    model.prepare(10**6)
    _consistent(model)
    _same_predictions(model.predict_all(PHOTOS), reference, rtol=1e-4)
    model.prepare(10**6)  # decided once per model
    assert model.optimization_decision.kind == model.optimization


def test_interleaved_seconds_times_both_in_alternating_rounds():
    calls: List[str] = []

    def eager(x):
        calls.append("e")
        return x

    def graph(x):
        calls.append("g")
        return x

    e, g = interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2), rounds=4)
    assert calls == ["e", "g", "g", "e", "e", "g", "g", "e"]
    assert e >= 0 and g >= 0
    calls.clear()
    interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2))  # instant calls: 5 rounds
    assert calls.count("e") == calls.count("g") == 5


def _clocked(eager_s: float, graph_s: float):
    """eager and graph callables that advance a clock of their own by fixed seconds per call."""
    now = [0.0]
    calls: List[str] = []

    def run(name: str, seconds: float):
        def fn(x):
            calls.append(name)
            now[0] += seconds
            return x
        return fn

    return run("e", eager_s), run("g", graph_s), (lambda: now[0]), calls


def test_interleaved_seconds_stops_after_three_rounds_that_decide():
    eager, graph, clock, calls = _clocked(0.030, 0.010)  # 3x apart: decided
    e, g = interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2), clock=clock)
    assert (e, g) == (pytest.approx(0.030), pytest.approx(0.010))
    assert calls.count("e") == calls.count("g") == 3
    eager, graph, clock, calls = _clocked(0.010, 0.030)  # the graph 3x slower: decided for eager
    interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2), clock=clock)
    assert calls.count("e") == calls.count("g") == 3
    eager, graph, clock, calls = _clocked(0.012, 0.010)  # a close call: every round
    interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2), clock=clock)
    assert calls.count("e") == calls.count("g") == 5
    eager, graph, clock, calls = _clocked(0.030, 0.010)  # rounds given: all of them
    interleaved_seconds(eager, torch.zeros(2), graph, torch.zeros(2), rounds=4, clock=clock)
    assert calls.count("e") == calls.count("g") == 4


def test_decided_needs_every_round_of_one_side_apart_from_every_round_of_the_other():
    assert decided([0.030, 0.031, 0.032], [0.010, 0.012, 0.019])
    assert not decided([0.030, 0.031, 0.032], [0.010, 0.012, 0.021])  # one slow graph round: undecided
    assert decided([0.010], [0.020])  # the graph 2x slower
    assert not decided([0.010, 0.011], [0.014, 0.015])
    assert not decided([], [0.01])


def test_onednn_fusion_stays_on_while_any_call_runs_and_is_restored_after_the_last():
    # Two calls overlap: the first ends while the second still runs (the
    # engine's two prediction streams). The switch is process-wide.
    import threading

    from modelzoo.optimize import OneDNNFused

    inside = {"first": threading.Event(), "second": threading.Event()}
    release = {"first": threading.Event(), "second": threading.Event()}
    seen = {}

    class Frozen:  # stands for a frozen graph: records the switch while it runs
        def __call__(self, x):
            name = threading.current_thread().name
            seen[name] = torch.jit.onednn_fusion_enabled()
            inside[name].set()
            assert release[name].wait(timeout=60)
            return x

    fused = OneDNNFused(Frozen())
    before = torch.jit.onednn_fusion_enabled()
    first = threading.Thread(target=fused, args=(torch.zeros(1),), name="first")
    second = threading.Thread(target=fused, args=(torch.zeros(1),), name="second")
    try:
        first.start()
        assert inside["first"].wait(timeout=60)
        second.start()
        assert inside["second"].wait(timeout=60)
        release["first"].set()
        first.join(timeout=60)
        assert not first.is_alive()
        assert torch.jit.onednn_fusion_enabled()  # the second call still runs
    finally:
        release["first"].set()
        release["second"].set()
        first.join(timeout=60)
        second.join(timeout=60)
    assert seen == {"first": True, "second": True}
    assert torch.jit.onednn_fusion_enabled() == before
