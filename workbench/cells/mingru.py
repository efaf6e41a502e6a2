"""minGRU (Feng et al. 2024, "Were RNNs All We Needed?"): the GRU with its gates read
from the input only, so the recurrence is linear in the state and trains by a parallel
scan in log space:  z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t),
h_t = (1 - z_t) h_{t-1} + z_t h~_t  (workbench.engine.scan)."""
from __future__ import annotations

from workbench.cells import Cell, Gate, OnnxRule, ScriptRule


def _ops():
    from workbench.cells._scan_ops import ScanOps

    return ScanOps("mingru")


def _params(n_in: int, H: int) -> dict[str, tuple[int, ...]]:
    return {"weight_ih": (2 * H, n_in), "bias_ih": (2 * H,)}  # rows: z, h~


CELL = Cell(name="mingru", label="minGRU", short="minGRU", colour="#2a9d8f",
            gate_info=(Gate("update", "update gate z_t"), Gate("candidate", "candidate g(W_h x_t)", "free")), gates=2, params=_params, bounded=False,
            onnx=OnnxRule(loop=True), script=ScriptRule("ScanLayer", (("cell", "mingru"),), "scan_layer.py.txt"), ops=_ops)
