"""The torch side of the built-in cells (rnn_tanh, rnn_relu, lstm, gru): PyTorch's own
single-layer nn.RNN/LSTM/GRU modules, whose fused cuDNN/ATen kernels run the layers and
the stack, and the same equations step by step (each cell's ``step``) for the replica.

Imports torch; imported only through ``workbench.cells.ops``.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from workbench.cells.generic import CellOps
from workbench.engine.model import LayerProbe, RowAlignment, layer_kernel

# cuDNN copies parameters that do not share one buffer into one at each such call, and
# says so each time; here that is by design (the copy costs about one optimizer read of
# the weights), so the warning would only alarm the user.
warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous chunk")


class _PaddingAware:
    """A single-layer nn.RNN/LSTM/GRU whose forward also takes a RowAlignment: then a
    bidirectional layer's reverse direction reads each padded row from its last real
    step (``layer_kernel``). Without one, or unidirectional, it is the module's own call.
    The parameters and their names are the module's own."""

    cell_name = ""

    def forward(self, input, hx=None, align: RowAlignment | None = None):
        if align is None or not self.bidirectional:
            return super().forward(input, hx)
        out, final, _ = layer_kernel(self, self.cell_name, input, hx, align)
        return out, final


class RNNLayer(_PaddingAware, nn.RNN):
    pass


class LSTMLayer(_PaddingAware, nn.LSTM):
    pass


class GRULayer(_PaddingAware, nn.GRU):
    pass


LAYER_CLASSES = {"RNN": RNNLayer, "LSTM": LSTMLayer, "GRU": GRULayer}


class FusedOps(CellOps):
    """A built-in cell. ``module``: "RNN", "LSTM" or "GRU" (with ``kwargs``, e.g. the
    nonlinearity); ``kernel``: its torch._VF function; ``step(gi_t, h, c, w_hh_t, b_hh,
    gates) -> (h, c)``: one step of the cell's equations, gi_t = x_t W_ih^T + b_ih [B, G*H]
    with b_hh folded in when ``fold_bias`` (the cells whose equations only ever add it;
    then b_hh is None), w_hh_t = W_hh^T [H, G*H]; ``gates`` a dict that receives each
    gate activation [B, H] by name, or None. ``probe_via_gates``: the exact probe's zero
    input enters the gate pre-activations through the identity (GRU) rather than through
    W_hh (see LayerProbe). ``cpu_kernel_probe``: whether the probe takes the kernel route
    on the CPU by default (PyTorch's CPU GRU kernel is itself a loop of operators and the
    probe's identity input makes it dearer than the replica: bench/probe_cost.py, 1.9 vs
    0.7 training steps for a 2x128 GRU)."""

    fusable = True

    def __init__(self, module: str, kernel: Callable, step: Callable, fold_bias: bool = True,
                 probe_via_gates: bool = False, cpu_kernel_probe: bool = True, **kwargs):
        self.module, self.kwargs = module, kwargs
        self.kernel_fn, self.step = kernel, step
        self.fold_bias, self.probe_via_gates, self.cpu_kernel_probe = fold_bias, probe_via_gates, cpu_kernel_probe

    def make_layer(self, layer, input_size: int) -> nn.Module:
        rnn = LAYER_CLASSES[self.module](input_size=input_size, hidden_size=layer.hidden_size, num_layers=1,
                                         batch_first=True, bidirectional=layer.bidirectional, **self.kwargs)
        rnn.cell_name = self.cell.name
        return rnn

    def directions(self, rnn: nn.RNNBase) -> list[tuple]:
        """Per direction (w_ih, w_hh, b_ih, b_hh) of a single-layer module."""
        return [tuple(getattr(rnn, f"{n}_l0{sfx}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for sfx in (("", "_reverse") if rnn.bidirectional else ("",))]

    def input_part(self, direction: tuple, x: torch.Tensor) -> torch.Tensor:
        w_ih, _w_hh, b_ih, b_hh = (p.detach() for p in direction)
        return F.linear(x, w_ih, b_ih + b_hh if self.fold_bias else b_ih)  # [..., G*H]

    def transition(self, direction: tuple) -> Callable:
        _w_ih, w_hh, _b_ih, b_hh = (p.detach() for p in direction)
        w_hh_t, b = w_hh.t(), None if self.fold_bias else b_hh  # [H, G*H]
        multi, step = self.multi, self.step

        def f(gi, state):
            gates: dict = {}
            h, c = step(gi, state[0], state[1] if multi else None, w_hh_t, b, gates)
            return ((h, c) if multi else (h,)), gates
        return f

    def recurrent_weights(self, direction: tuple) -> dict[str, torch.Tensor]:
        return {"weight_hh": direction[1]}

    def probe_through_kernel(self, device: torch.device) -> bool:
        return self.cpu_kernel_probe or device.type != "cpu"

    def unrolled(self, directions: list[tuple], x: torch.Tensor, state, gates: list | None):
        B, T, _ = x.shape
        H = directions[0][1].shape[1]
        D = len(directions)
        multi = self.multi
        if state is None:
            h0 = x.new_zeros(D, B, H)
            c0 = x.new_zeros(D, B, H) if multi else None
        elif multi:
            h0, c0 = state
        else:
            h0, c0 = state, None
        outputs, finals_h, finals_c, all_states = [], [], [], []
        fold = self.fold_bias
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(directions):
            gi = F.linear(x, w_ih, b_ih + b_hh if fold else b_ih)  # [B, T, G*H], all steps at once
            # unbind, not gi[:, t]: the backward of T selects would build T zero tensors of gi's size
            gi_steps = gi.unbind(1)  # T x [B, G*H]
            w_hh_t = w_hh.t()  # [H, G*H]
            # A carried state may come from an autocast pass (bf16/fp16): match gi's dtype.
            h, c = h0[d].to(gi.dtype), (c0[d].to(gi.dtype) if c0 is not None else None)
            order = range(T - 1, -1, -1) if d else range(T)
            states: list[torch.Tensor | None] = [None] * T
            seen: list[dict[str, torch.Tensor] | None] = [None] * T
            for t in order:
                recorded: dict[str, torch.Tensor] | None = {} if gates is not None else None
                h, c = self.step(gi_steps[t], h, c, w_hh_t, None if fold else b_hh, recorded)
                if recorded is not None:
                    seen[t] = {**recorded, "cell_state": c} if c is not None else recorded
                states[t] = h
            if gates is not None:
                names = list(seen[0]) if T else []
                gates.append({name: torch.stack([seen[t][name] for t in range(T)], dim=1) for name in names})
            outputs.append(torch.stack(states, dim=1))  # [B, T, H]
            finals_h.append(h)
            finals_c.append(c)
            all_states.append(states)
        out = torch.cat(outputs, dim=-1)
        hn = torch.stack(finals_h, dim=0)  # [D, B, H]
        final = (hn, torch.stack(finals_c, dim=0)) if multi else hn
        return out, final, all_states

    def kernel(self, directions: list[tuple], x: torch.Tensor, state, train: bool, probe: bool):
        """The fused kernel of one layer with these directions' (w_ih, w_hh, b_ih, b_hh): x
        [B, T, In] -> (output [B, T, D*H], final state as a module returns it, LayerProbe
        when ``probe``: then the input is widened with the zero probe input z, see LayerProbe)."""
        B, T, _ = x.shape
        D, H = len(directions), directions[0][1].shape[1]
        via_gates = self.probe_via_gates
        multi = self.multi
        G = directions[0][1].shape[0] // H
        width = G * H if via_gates else H  # per direction: what z feeds
        z = x.new_zeros(B, T, D * width, requires_grad=True) if probe else None
        weights, kept = [], []
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(directions):
            if probe:
                # [G*H, In + D*width]: this direction reads its own block of z (through W_hh, or
                # for a GRU the identity), zeros the other direction's
                own = torch.eye(G * H, dtype=w_ih.dtype, device=w_ih.device) if via_gates else w_hh
                w_ih = torch.cat([w_ih] + [own if e == d else own.new_zeros(own.shape[0], width) for e in range(D)],
                                 dim=1)
            weights += [w_ih, w_hh, b_ih, b_hh]
            kept.append(tuple(p.detach() for p in directions[d]))
        if state is None:
            h0 = x.new_zeros(D, B, H)
            hx = (h0, torch.zeros_like(h0)) if multi else h0
        else:  # a carried state may come from an autocast pass (bf16/fp16): match x's dtype
            hx = tuple(s.to(x.dtype) for s in state) if multi else state.to(x.dtype)
        x_in = torch.cat([x, z], dim=-1) if probe else x  # [B, T, In (+ D*width)]
        if multi:
            out, hn, cn = self.kernel_fn(x_in, hx, weights, True, 1, 0.0, train, D == 2, True)
            final = (hn, cn)
        else:
            out, hn = self.kernel_fn(x_in, hx, weights, True, 1, 0.0, train, D == 2, True)
            final = hn
        if not probe:
            return out, final, None
        extra = (x.detach(), hx.detach(), kept) if via_gates else None
        return out, final, LayerProbe(hidden=H, directions=D, out=out, z=z, final=hn, gru=extra)

    def fused_stack(self, stack, x: torch.Tensor, initial: list | None):
        """The whole RecurrentStack in one multi-layer kernel call. x [B, T, In] -> as its forward()."""
        first = stack.specs[0]
        L, D, H = len(stack.rnns), 2 if first.bidirectional else 1, first.hidden_size
        multi = self.multi
        zeros = x.new_zeros(D, x.shape[0], H)
        states = list(initial) if initial is not None else [None] * L
        h0 = torch.cat([(s[0] if multi else s) if s is not None else zeros for s in states])  # [L*D, B, H]
        weights = [w for rnn in stack.rnns for w in rnn._flat_weights]  # layer by layer, as the kernel wants
        p = first.dropout
        kernel = self.kernel_fn
        if multi:
            c0 = torch.cat([s[1] if s is not None else zeros for s in states])
            out, hn, cn = kernel(x, (h0, c0), weights, True, L, p, stack.training, first.bidirectional, True)
            finals = [(hn[l * D:(l + 1) * D], cn[l * D:(l + 1) * D]) for l in range(L)]
        else:
            out, hn = kernel(x, h0, weights, True, L, p, stack.training, first.bidirectional, True)
            finals = [hn[l * D:(l + 1) * D] for l in range(L)]
        return (stack.dropouts[-1](out) if stack.dropouts[-1].p else out), finals
