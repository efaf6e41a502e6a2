"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural
Networks for Long Sequences"): a complex diagonal linear recurrence
s_t = lambda * s_{t-1} + gamma * (B x_t), y_t = GELU(Re(C s_t) + D x_t) (the GELU: the
position-wise nonlinearity of the paper's block, without which LRU stacks are linear), with the eigenvalues
lambda = exp(-exp(nu) + i exp(theta)) initialised uniformly on a ring r_min <= |lambda|
<= r_max (model.init.lru_r_min, lru_r_max) and gamma = sqrt(1 - |lambda|^2)
(workbench.engine.scan). The layer's output is y_t; it carries s_t as its real and
imaginary parts (states "re", "im"); the exact probe's dL/dh_t is dL/ds_t."""
from __future__ import annotations

from dataclasses import dataclass

from workbench.cells import Cell, Gate, OnnxRule, ScriptRule


def _ops():
    from workbench.cells._scan_ops import LRUOps

    return LRUOps()


def _params(n_in: int, H: int) -> dict[str, tuple[int, ...]]:
    # weight_ih_*: B (forward weights), weight_hh_*: the eigenvalues' nu and theta (the
    # recurrence); C, D and gamma count with the rest
    return {"weight_ih_re": (H, n_in), "weight_ih_im": (H, n_in), "weight_hh_nu": (H,), "weight_hh_theta": (H,),
            "gamma_log": (H,), "out_re": (H, H), "out_im": (H, H), "skip": (H, n_in)}


@dataclass(frozen=True)
class _LRUCell(Cell):
    @property
    def series(self) -> list[str]:
        # y_t, then |s_t| per unit: its two carried parts are not shown one by one
        return ["hidden"] + list(self.gate_names)


CELL = _LRUCell(name="lru", label="LRU", short="LRU", colour="#9b5de5",
                gate_info=(Gate("modulus", "state modulus |s_t|", "free"),), states=("re", "im"), gates=2, params=_params, bounded=False,
                onnx=OnnxRule(loop=True), script=ScriptRule("ScanLayer", (("cell", "lru"),), "scan_layer.py.txt"), ops=_ops)
