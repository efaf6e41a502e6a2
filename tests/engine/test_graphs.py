"""CUDA graphs of the step's device work (workbench/engine/graphs.py). On the CPU they are
off and the step runs eagerly; gpu.sh runs this file on CUDA too
(WORKBENCH_TEST_DEVICE=cuda), where replayed steps must train exactly as launched ones."""
from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import DEVICE, preset
from workbench.engine.graphs import batch_signature
from workbench.engine.trainer import Trainer
from workbench.spec import Preset
from workbench.tasks.base import Batch


def _preset(*overrides: str) -> Preset:
    raw = preset("adding_lstm", "train.steps=10", f"train.device={DEVICE.type}", *overrides).to_dict()
    raw["model"]["layers"] = [{"cell": "lstm", "hidden_size": 16}] * 2
    return Preset.from_dict(raw)


def test_batch_signature_tells_shapes_and_dtypes_apart_and_ignores_missing_fields():
    a = Batch(x=torch.zeros(4, 7, 2), y=torch.zeros(4, 1))
    assert batch_signature(a) == batch_signature(Batch(x=torch.ones(4, 7, 2), y=torch.ones(4, 1)))
    assert batch_signature(a) != batch_signature(Batch(x=torch.zeros(4, 8, 2), y=torch.zeros(4, 1)))
    assert batch_signature(a) != batch_signature(Batch(x=torch.zeros(4, 7, 2, dtype=torch.float64),
                                                       y=torch.zeros(4, 1)))
    assert len(batch_signature(a)) == 2


@pytest.mark.skipif(DEVICE.type == "cuda", reason="the CPU side of the contract")
def test_on_the_cpu_no_graphs_are_made_even_when_asked():
    trainer = Trainer(_preset(), cuda_graphs=True)
    end = list(trainer.run())[-1]
    assert trainer._graphs is None and end["graph_replays"] == 0 and end["status"] == "finished"


@pytest.mark.skipif(DEVICE.type != "cuda", reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("log_every", [1, 3])
def test_replayed_steps_train_exactly_as_launched_ones(log_every):
    runs = {}
    for graphs in (False, True):
        records = list(Trainer(_preset(f"train.log_every={log_every}"), cuda_graphs=graphs,
                               fused_stacks=False).run())
        runs[graphs] = records
    end = runs[True][-1]
    assert "graphs_off" not in end, end["graphs_off"]
    assert end["status"] == "finished" and end["graph_replays"] >= 4, end
    eager = [r for r in runs[False] if r["kind"] == "step"]
    graphed = [r for r in runs[True] if r["kind"] == "step"]
    assert len(eager) == len(graphed) == 10
    for a, b in zip(eager, graphed):
        for key in ("loss", "grad_norm", "grad_norm_clipped"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
        assert a.keys() == b.keys()
        for layer, profile in a.get("timestep_grad_norms", {}).items():
            torch.testing.assert_close(torch.from_numpy(b["timestep_grad_norms"][layer]),
                                       torch.from_numpy(profile), rtol=1e-5, atol=0)


def test_a_tapped_steps_autograd_graph_dies_with_the_step_not_with_the_cycle_collector():
    """Nothing of a step may keep its autograd graph alive after it: a CUDA graph capture
    that meets a live one fails (its gradient accumulators sit on another stream), and
    until then it holds the step's activations."""
    import gc
    import weakref

    trainer = Trainer(_preset("train.steps=2", "train.device=cpu"), cuda_graphs=False)
    captured = []
    real = trainer._reduce_step

    def watch(loss_fn, instrument, graph_safe=False):
        def loss():
            value = loss_fn()
            tap = trainer.model.probe.taps[-1]  # the top layer's input: a tensor inside this step's graph
            assert tap.requires_grad
            captured.append(weakref.ref(tap))
            return value
        return real(loss, instrument, graph_safe)

    trainer._reduce_step = watch
    gc.disable()
    try:
        records = list(trainer.run())
        assert records[-1]["status"] == "finished" and len(captured) == 2
        assert all(ref() is None for ref in captured), "a step's autograd graph outlived the step"
    finally:
        gc.enable()
