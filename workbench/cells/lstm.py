"""The LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):
PyTorch's nn.LSTM and its fused kernels; gate order i, f, g, o."""
from __future__ import annotations

from workbench.cells import Cell, Gate, OnnxRule, ScriptRule


def _ops():
    import torch

    from workbench.cells.fused import FusedOps

    def step(gi_t, h, c, w_hh_t, b_hh, gates=None):
        """Written with as few ops as the equations allow (addmm, addcmul, one sigmoid over
        all gates): the probe's replica costs mostly per-op overhead, step after step."""
        H = h.shape[-1]
        pre = torch.addmm(gi_t, h, w_hh_t)  # [B, 4H]: i, f, g, o
        i, f, _g, o = torch.sigmoid(pre).chunk(4, dim=-1)  # (the sigmoid of g is not used)
        g = torch.tanh(pre[:, 2 * H:3 * H])
        c = torch.addcmul(f * c, i, g)  # f*c + i*g
        if gates is not None:
            gates.update(input=i, forget=f, cell=g, output=o)
        return o * torch.tanh(c), c

    return FusedOps("LSTM", torch._VF.lstm, step)


CELL = Cell(name="lstm", label="LSTM", short="LSTM", colour="#4f86c6",
            gate_info=(Gate("input", "input gate i_t"), Gate("forget", "forget gate f_t"),
                       Gate("cell", "candidate g_t", "tanh"), Gate("output", "output gate o_t")),
            states=("h", "c"), gates=4, forget_gate=1,
            onnx=OnnxRule(native=True), script=ScriptRule("nn.LSTM"), ops=_ops)
