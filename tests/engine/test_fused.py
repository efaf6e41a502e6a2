"""Stacks of identical layers as ONE fused multi-layer kernel (RecurrentStack.fused) on
the steps that record no taps, and the timing that picks how those run (StepPathTuner)."""
from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import DEVICE, preset
from workbench.engine.model import RecurrentStack
from workbench.engine.trainer import StepPathTuner, Trainer
from workbench.spec import LayerSpec, Preset

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def _run(stack: RecurrentStack, x: torch.Tensor, initial):
    out, finals = stack(x, initial)
    flat = [t for f in finals for t in (f if isinstance(f, tuple) else (f,))]
    loss = out.pow(2).sum() + sum((t * t.detach().sign()).sum() for t in flat)  # every final state counts
    grads = torch.autograd.grad(loss, [x, *stack.parameters()])
    return [out, *flat, *grads]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_initial", [False, True])
def test_the_fused_kernel_gives_the_stacks_outputs_states_and_gradients(cell, bidirectional, with_initial):
    torch.manual_seed(0)
    stack = RecurrentStack([LayerSpec(cell=cell, hidden_size=6, bidirectional=bidirectional)] * 3, 5)
    stack = stack.to(DEVICE, torch.float64)
    assert stack.fusable
    D = 2 if bidirectional else 1
    x = torch.randn(4, 9, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    initial = None
    if with_initial:
        h = [torch.randn(D, 4, 6, dtype=torch.float64, device=DEVICE) for _ in range(3)]
        initial = [(hh, torch.randn_like(hh)) for hh in h] if cell == "lstm" else h
    stack.fused = False
    expected = _run(stack, x, initial)
    stack.fused = True
    got = _run(stack, x, initial)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_taps_and_the_unrolled_probe_still_see_every_layer_when_fused():
    stack = RecurrentStack([LayerSpec(cell="gru", hidden_size=6)] * 3, 5)
    stack.fused = True
    x = torch.randn(2, 4, 5)
    taps: list = []
    stack(x, taps=taps)
    assert len(taps) == 3  # a tapped forward runs layer by layer
    states: list = []
    stack(x, unrolled_states=states)
    assert len(states) == 3


@pytest.mark.parametrize("layers, fusable", [
    ([LayerSpec(cell="lstm", hidden_size=6)], False),  # one layer: nothing to fuse
    ([LayerSpec(cell="lstm", hidden_size=6), LayerSpec(cell="lstm", hidden_size=7)], False),
    ([LayerSpec(cell="lstm", hidden_size=6), LayerSpec(cell="gru", hidden_size=6)], False),
    ([LayerSpec(cell="gru", hidden_size=6, bidirectional=True), LayerSpec(cell="gru", hidden_size=6)], False),
    ([LayerSpec(cell="gru", hidden_size=6, dropout=0.1), LayerSpec(cell="gru", hidden_size=6, dropout=0.2),
      LayerSpec(cell="gru", hidden_size=6)], False),  # the kernel takes one dropout rate between layers
    ([LayerSpec(cell="gru", hidden_size=6, dropout=0.1), LayerSpec(cell="gru", hidden_size=6, dropout=0.1),
      LayerSpec(cell="gru", hidden_size=6, dropout=0.3)], True),  # the top layer's own is applied after
])
def test_only_stacks_of_identical_layers_are_fused(layers, fusable):
    assert RecurrentStack(layers, 5).fusable is fusable


def _two_layer_preset(*overrides: str) -> Preset:
    raw = preset("adding_lstm", "train.steps=9", "train.log_every=3", "train.probe_every=0",
                 *overrides).to_dict()
    raw["model"]["layers"] = [{"cell": "lstm", "hidden_size": 16}] * 2
    return Preset.from_dict(raw)


def test_untapped_steps_train_the_same_fused_or_not_and_taps_still_come_every_log_every_steps(monkeypatch):
    fused_calls = []
    real = RecurrentStack._fused_forward

    def counted(self, x, initial):
        fused_calls.append(torch.is_grad_enabled())
        return real(self, x, initial)

    monkeypatch.setattr(RecurrentStack, "_fused_forward", counted)
    runs = {}
    for fused in (False, True):
        fused_calls.clear()
        trainer = Trainer(_two_layer_preset(), fused_stacks=fused)
        records = list(trainer.run())
        assert trainer.model.encoder.fused is fused
        # the six untapped training steps (with gradients) and the evaluation ran fused
        assert fused_calls.count(True) == (6 if fused else 0) and (False in fused_calls) is fused
        steps = [r for r in records if r["kind"] == "step"]
        assert [r["step"] for r in steps if "timestep_grad_norms" in r] == [3, 6, 9]
        assert records[-1]["fused_stacks"] is fused and records[-1]["untapped_graphs"] is False
        runs[fused] = [r["loss"] for r in steps]
    assert runs[True] == pytest.approx(runs[False], rel=1e-5, abs=1e-7)


def test_on_the_cpu_nothing_is_fused_or_timed_unless_asked():
    trainer = Trainer(_two_layer_preset("train.device=cpu"))
    end = list(trainer.run())[-1]
    assert trainer._path_tuner is None and end["fused_stacks"] is False


def test_the_path_tuner_warms_every_path_up_then_takes_turns_and_keeps_the_fastest():
    paths = [(False, True), (True, True), (True, False)]
    for fast in paths:
        tuner = StepPathTuner(paths, warmup_rounds=2, samples=3)
        order = []
        while tuner.choice is None:
            path = tuner.next_path()
            order.append(path)
            tuner.timed(1.0 if path == fast else 2.0 + len(order) % 3)  # the others: slower, and noisy
        assert order == paths * 5  # two untimed rounds, then three timed
        assert tuner.choice == fast and tuner.next_path() == fast
        assert all(len(times) == 3 for times in tuner.times.values())  # the warm-up rounds not counted
        assert tuner.times[fast] == [1.0] * 3


def test_one_outlier_does_not_decide():
    tuner = StepPathTuner([(False, False), (True, False)], warmup_rounds=0, samples=3)
    for seconds in (1.0, 1.5, 9.0, 1.5, 1.0, 1.5):  # the first path's 9 s step: a hiccup
        tuner.timed(seconds)
    assert tuner.choice == (False, False)


def test_a_probe_the_kernel_route_refuses_falls_back_to_the_unrolled_replica(monkeypatch):
    import workbench.engine.model as model_module

    def refuse(*args, **kwargs):
        raise RuntimeError("no kernel route here")

    monkeypatch.setattr(model_module, "kernel_probe_layer", refuse)
    trainer = Trainer(_two_layer_preset("train.probe_every=3"), probe_budget=None)
    records = list(trainer.run())
    probes = [r for r in records if r["kind"] == "probe"]
    assert records[-1]["status"] == "finished" and len(probes) == 4  # at init, then steps 3, 6, 9
    assert records[-1]["probe_unrolled"] == "RuntimeError: no kernel route here"
    assert all(p["hidden_grad_norms"]["layers.1"].shape == (12,) for p in probes)
