"""The GRU (Cho et al. 2014), PyTorch's variant (the reset gate applied after W_hn):
nn.GRU and its fused kernels; gate order r, z, n."""
from __future__ import annotations

from workbench.cells import Cell, Gate, OnnxRule, ScriptRule


def _ops():
    import torch

    from workbench.cells.fused import FusedOps

    def step(gi_t, h, c, w_hh_t, b_hh, gates=None):
        # b_hn sits inside r * (W_hn h + b_hn), so b_hh is added here, not folded into gi_t
        H = h.shape[-1]
        gh = torch.addmm(b_hh, h, w_hh_t)  # [B, 3H]: r, z, n
        r, z = torch.sigmoid(gi_t[:, :2 * H] + gh[:, :2 * H]).chunk(2, dim=-1)
        n = torch.tanh(torch.addcmul(gi_t[:, 2 * H:], r, gh[:, 2 * H:]))  # in + r * hn
        if gates is not None:
            gates.update(reset=r, update=z, new=n)
        return torch.lerp(n, h, z), None  # (1 - z) * n + z * h

    # the probe's zero input enters the three gates through the identity (see LayerProbe)
    return FusedOps("GRU", torch._VF.gru, step, fold_bias=False, probe_via_gates=True, cpu_kernel_probe=False)


CELL = Cell(name="gru", label="GRU", short="GRU", colour="#5fad56", gates=3,
            gate_info=(Gate("reset", "reset gate r_t"), Gate("update", "update gate z_t"),
                       Gate("new", "candidate n_t", "tanh")),
            onnx=OnnxRule(native=True), script=ScriptRule("nn.GRU"), ops=_ops)
