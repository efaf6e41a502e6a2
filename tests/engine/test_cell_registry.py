"""A cell added through the registry alone (workbench.cells): a throwaway "leaky tanh"
cell defined here, h_t = (1 - a) h_{t-1} + a tanh(W x_t + U h_{t-1} + b), a = sigmoid(p),
registered for the test only. It validates, builds, trains with the real Trainer, gives
exact dL/dh_t probe records that match autograd through an independent stand-in, is
looked inside by the try-out, and is refused by name by the exporters that cannot carry
it. And the built-in cells are described the same way."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import tests.engine.reference as reference
from tests.engine.helpers import preset
from workbench import cells
from workbench.cells import Cell, Gate
from workbench.engine.model import build_model, unrolled_layer
from workbench.engine.trainer import Trainer
from workbench.spec import SpecError, parameter_report, validate

LEAKY_SHAPES = lambda n_in, H: {"weight_ih": (H, n_in), "weight_hh": (H, H), "bias": (H,), "leak": (H,)}  # noqa: E731


def _leaky_ops():
    from workbench.cells.generic import StepOps

    def step(p, x_t, state):
        (h,) = state  # [B, H]
        a = torch.sigmoid(p["leak"])  # [H]
        cand = torch.tanh(x_t @ p["weight_ih"].t() + h @ p["weight_hh"].t() + p["bias"])  # [B, H]
        h = (1 - a) * h + a * cand
        return h, (h,), {"candidate": cand}

    return StepOps(step)


LEAKY = Cell(name="leaky", label="Leaky tanh", short="leaky", colour="#8a6fb0",
             gate_info=(Gate("candidate", "candidate", "tanh"),), params=LEAKY_SHAPES, ops=_leaky_ops)


@pytest.fixture
def leaky():
    with cells.registered(LEAKY):
        yield LEAKY


class LeakyStepped(torch.nn.Module):
    """The independent route for a leaky layer (as tests.engine.reference.CellStepped for
    the built-ins): its own loop over the cell's equations with copies of the weights,
    keeping the layer's input and every h_t. Rows are not padded (the adding task)."""

    def __init__(self, layer):
        super().__init__()
        self.bidirectional, self.hidden_size = layer.bidirectional, layer.hidden_size
        self.weights = [{n: getattr(layer, f"{n}_l0{sfx}").detach().clone() for n in ("weight_ih", "weight_hh",
                                                                                     "bias", "leak")}
                        for sfx in (("", "_reverse") if layer.bidirectional else ("",))]
        self.inputs, self.states = [], []

    def forward(self, x, state=None, align=None):
        assert align is None
        self.inputs.append(x)
        B, T, _ = x.shape
        outs, finals, per_dir = [], [], []
        for d, w in enumerate(self.weights):
            h = x.new_zeros(B, self.hidden_size) if state is None else state[d]
            hs = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                a = 1.0 / (1.0 + torch.exp(-w["leak"]))
                h = h + a * (torch.tanh(torch.nn.functional.linear(x[:, t], w["weight_ih"], w["bias"])
                                        + torch.nn.functional.linear(h, w["weight_hh"])) - h)
                hs[t] = h
            per_dir.append(hs)
            outs.append(torch.stack(hs, dim=1))
            finals.append(h)
        self.states.append(per_dir)
        return torch.cat(outs, dim=-1), torch.stack(finals)


def test_a_registered_cell_validates_and_an_unknown_one_names_the_field(leaky):
    p = preset("adding_lstm", model_layers=[dict(cell="leaky", hidden_size=6)])
    validate(p)  # registered: a valid cell
    assert "leaky" in cells.names() and cells.names()[:4] == ("rnn_tanh", "rnn_relu", "lstm", "gru")
    cells.unregister("leaky")
    with pytest.raises(SpecError) as err:
        validate(p)
    assert err.value.field == "model.layers.0.cell" and "'leaky' is not one of" in str(err.value)
    cells.register(LEAKY)  # (the fixture unregisters it)
    with pytest.raises(ValueError, match="already registered"):
        cells.register(LEAKY)


def test_a_registered_cell_trains_and_its_probe_matches_autograd(leaky, monkeypatch):
    """The real Trainer on the adding task with a bidirectional leaky layer under a GRU:
    finite losses, and the exact probe's dL/dh_t and the taps' dL/dx_t at the weights of
    the moment match the independent stand-in's autograd (float64)."""
    torch.set_default_dtype(torch.float64)
    stand_in = reference.CellStepped
    monkeypatch.setattr(reference, "CellStepped",
                        lambda rnn, cell: LeakyStepped(rnn) if cell == "leaky" else stand_in(rnn, cell))
    try:
        p = preset("adding_lstm", "train.steps=3", "train.probe_every=1", "train.optimizer=sgd",
                   model_layers=[dict(cell="leaky", hidden_size=6, bidirectional=True, dropout=0.0),
                                 dict(cell="gru", hidden_size=5, bidirectional=False, dropout=0.0)])
        trainer = Trainer(p, probe_budget=None)
        compared, losses, probes = reference.run_against_reference(trainer, monkeypatch, lambda m, b: m(b.x))
        for record in probes:
            assert set(record["hidden_grad_norms"]) == {"layers.0", "layers.1"}
            assert all(got.shape == (12,) for got in record["hidden_grad_norms"].values())
            assert record["hidden_grad_norms"]["layers.0"][0] > 0  # the leaky layer's first step gets gradient
        assert compared == ["probe", "step", "probe", "step", "probe", "step", "probe"]
        assert all(np.isfinite(losses)) and len(losses) == 3
        layer = trainer.model.encoder.rnns[0]
        assert {n for n, _ in layer.named_parameters()} == {
            f"{n}_l0{sfx}" for n in ("weight_ih", "weight_hh", "bias", "leak") for sfx in ("", "_reverse")}
        report = parameter_report(p.model, trainer.task.model_io())
        assert report.layers[0].total == sum(t.numel() for t in layer.parameters())
    finally:
        torch.set_default_dtype(torch.float32)


def test_a_registered_cell_is_looked_inside_and_refused_by_the_exporters(leaky):
    from workbench.export.onnx import ExportError, export_model
    from workbench.export.script import ScriptExportError, check_supported

    p = preset("adding_lstm", model_layers=[dict(cell="leaky", hidden_size=4, bidirectional=True)])
    from workbench.tasks import make_task

    model = build_model(p.model, make_task(p).model_io())
    _name, layer, rnn = model.recurrent_layers()[0]
    x = torch.randn(2, 5, rnn.input_size)
    gates: list[dict] = []
    out, final, states = unrolled_layer(rnn, "leaky", x, gates=gates)
    assert [list(g) for g in gates] == [["candidate"], ["candidate"]] and gates[0]["candidate"].shape == (2, 5, 4)
    assert out.shape == (2, 5, 8) and final.shape == (2, 2, 4)
    assert torch.equal(out[:, -1, :4], final[0]) and torch.equal(out[:, 0, 4:], final[1])  # reverse ends at t=0
    assert torch.allclose(rnn(x)[0], out)  # the layer's forward is the same loop
    assert cells.get("leaky").series == ["hidden", "candidate"]
    with pytest.raises(ExportError, match=r"model\.layers\.0\.cell: the 'leaky' cell is not exported to ONNX"):
        export_model(model, "/nonexistent/model.onnx")
    with pytest.raises(ScriptExportError, match=r"'leaky' cell \(model\.layers\.0\.cell\)"):
        check_supported(p)


def test_a_scan_form_runs_the_forward_and_the_step_the_replica():
    """A cell with a parallel form (a diagonal linear recurrence h_t = a h_{t-1} + (1-a) u_t,
    u_t = W x_t + b, as minGRU/LRU have): the layer's forward uses the scan, the replica
    the step; both give the same outputs and finals, in both directions."""
    def build():
        from workbench.cells.generic import StepOps

        def step(p, x_t, state):
            a = torch.sigmoid(p["decay"])  # [H]
            h = a * state[0] + (1 - a) * torch.nn.functional.linear(x_t, p["weight_ih"], p["bias"])
            return h, (h,), {}

        def scan(p, x, state):  # x [B, T, In] -> ([B, T, H], final); closed form of the recurrence
            a = torch.sigmoid(p["decay"])
            u = (1 - a) * torch.nn.functional.linear(x, p["weight_ih"], p["bias"])  # [B, T, H]
            powers = a ** torch.arange(1, x.shape[1] + 1, dtype=x.dtype)[:, None]  # [T, H]: a^(t+1)
            # h_t = a^(t+1) (h0 + sum_{s<=t} u_s / a^(s+1))
            out = powers * (state[0][:, None] + torch.cumsum(u / powers, dim=1))
            return out, (out[:, -1],)

        scan.calls = 0

        def counted(p, x, state):
            scan.calls += 1
            return scan(p, x, state)

        ops = StepOps(step, sequence=counted)
        ops.scan = scan
        return ops

    cell = Cell(name="decay", label="Decay", short="decay", colour="#888888",
                params=lambda n_in, H: {"weight_ih": (H, n_in), "bias": (H,), "decay": (H,)}, ops=build)
    from workbench.spec import LayerSpec

    with cells.registered(cell):
        torch.manual_seed(0)
        ops = cells.ops("decay")
        layer = ops.make_layer(LayerSpec(cell="decay", hidden_size=3, bidirectional=True), 2)
        x, h0 = torch.randn(4, 6, 2), torch.randn(2, 4, 3)
        out, final = layer(x, h0)
        assert ops.scan.calls == 2  # one per direction
        ref_out, ref_final, _ = unrolled_layer(layer, "decay", x, h0)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(final, ref_final)
    assert "decay" not in cells.names()


def test_built_in_cells_are_described_once_and_metadata_needs_no_torch():
    # the built-ins first, in the designer's order, then the other registered cells by name
    assert cells.names() == ("rnn_tanh", "rnn_relu", "lstm", "gru", "conv_gru", "conv_lstm", "lru", "mingru",
                             "minlstm")
    lstm = cells.get("lstm")
    assert (lstm.states, lstm.gates, lstm.forget_gate, lstm.gate_names) == (
        ("h", "c"), 4, 1, ("input", "forget", "cell", "output"))
    assert lstm.series == ["hidden", "cell_state", "input", "forget", "cell", "output"]
    assert [cells.get(c).gates for c in ("rnn_tanh", "rnn_relu", "gru")] == [1, 1, 3]
    with pytest.raises(KeyError, match="unknown cell 'nope'"):
        cells.get("nope")
    import subprocess

    code = ("import sys; from workbench import cells, spec; cells.get('gru').label; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_registered_cell_reads_padded_rows_as_the_rows_alone(leaky):
    """tests/engine/test_padding.py's check, run on a stack of leaky layers (bidirectional
    ones included): outputs, taps and exact dL/dh_t of each padded row are the row's alone."""
    from tests.engine import test_padding

    test_padding.test_a_padded_row_of_a_bidirectional_stack_is_the_row_alone("leaky", kernel_probe=None)
    # and the ordinary forward (no probe: the layer module's own call) as well
    from tests.engine.helpers import DEVICE, layers, small_model

    model, batch = small_model("many_to_many", layers(("leaky", True), ("leaky", False)))
    lengths = torch.tensor(test_padding.LENGTHS, device=DEVICE)
    x = test_padding._padded_input(model, batch, junk_seed=1)
    with torch.no_grad():
        out = model(x, None, lengths)
        for b, n in enumerate(test_padding.LENGTHS):
            alone = model(x[b:b + 1, :n], None, lengths[b:b + 1])
            torch.testing.assert_close(out[b, :n], alone[0], rtol=1e-9, atol=1e-12)
