"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): forget and input gates read
from the input only and normalised to sum to one, no output gate, so the recurrence is
linear in the state and trains by a parallel scan in log space:
f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t), h_t = f'_t h_{t-1} + i'_t g(W_h x_t)
(workbench.engine.scan)."""
from __future__ import annotations

from workbench.cells import Cell, Gate, OnnxRule, ScriptRule


def _ops():
    from workbench.cells._scan_ops import ScanOps

    return ScanOps("minlstm")


def _params(n_in: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"weight_ih": (3 * H, n_in), "bias_ih": (3 * H,)}  # rows: f, i, h~


CELL = Cell(name="minlstm", label="minLSTM", short="minLSTM", colour="#8ab17d",
            gate_info=(Gate("forget", "normalised forget gate f'_t"), Gate("input", "normalised input gate i'_t"),
                       Gate("candidate", "candidate g(W_h x_t)", "free")), gates=3, params=_params, bounded=False,
            onnx=OnnxRule(loop=True), script=ScriptRule("ScanLayer", (("cell", "minlstm"),), "scan_layer.py.txt"), ops=_ops)
