"""The vanilla RNN (Elman): h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), with act tanh
(rnn_tanh) or ReLU (rnn_relu); PyTorch's nn.RNN and its fused kernels."""
from __future__ import annotations

from workbench.cells import Cell, OnnxRule, ScriptRule


def _ops(nonlinearity: str):
    def build():
        import torch

        from workbench.cells.fused import FusedOps

        act = torch.tanh if nonlinearity == "tanh" else torch.relu

        def step(gi_t, h, c, w_hh_t, b_hh, gates=None):
            return act(torch.addmm(gi_t, h, w_hh_t)), None  # b_hh is folded into gi_t

        kernel = torch._VF.rnn_tanh if nonlinearity == "tanh" else torch._VF.rnn_relu
        return FusedOps("RNN", kernel, step, nonlinearity=nonlinearity)
    return build


CELLS = (
    Cell(name="rnn_tanh", label="RNN (tanh)", short="tanh", colour="#f2a65a", identity_init=True,
         onnx=OnnxRule(native=True), script=ScriptRule("nn.RNN", (("nonlinearity", "tanh"),)), ops=_ops("tanh")),
    Cell(name="rnn_relu", label="RNN (ReLU)", short="ReLU", colour="#e4572e", identity_init=True, bounded=False,
         onnx=OnnxRule(native=True), script=ScriptRule("nn.RNN", (("nonlinearity", "relu"),)), ops=_ops("relu")),
)
