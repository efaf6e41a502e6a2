"""An independent route to the gradients the probes report, for tests (CPU or CUDA).

It shares nothing with workbench.engine.probe or the model's unrolled replica: each
recurrent layer module of a deep copy of the model is replaced by a stand-in that runs
PyTorch's own nn.RNNCell / nn.LSTMCell / nn.GRUCell (weights copied in) step by step,
keeping every h_t and the layer's input sequence as graph nodes. One
torch.autograd.grad(loss, inputs + states) then gives dL/dx_t^l and the total dL/dh_t^l,
reduced here with plain torch ops in float64.

The linear-recurrence cells (minGRU, minLSTM, LRU) have no nn.*Cell: ``_ModernCell``
writes their equations out here once more from the papers (the LRU in complex
arithmetic, where the workbench's step uses real pairs), sharing no code with
workbench.engine.scan. The LRU's recorded state is its complex s_t (the probe's dL/dh_t
is dL/ds_t, whose norm is that of the gradient of (Re s_t, Im s_t)).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

_CELL = {
    "rnn_tanh": lambda i, h: nn.RNNCell(i, h, nonlinearity="tanh"),
    "rnn_relu": lambda i, h: nn.RNNCell(i, h, nonlinearity="relu"),
    "lstm": nn.LSTMCell,
    "gru": nn.GRUCell,
}


class _ModernCell(nn.Module):
    """One direction of a minGRU / minLSTM / LRU layer, its parameters copied in:
    forward(x_t [B, In], state) -> (output [B, H], state); the state is (h,) or, for the
    LRU, (s,) complex."""

    def __init__(self, rnn: nn.Module, cell: str, sfx: str):
        super().__init__()
        self.cell = cell
        self.p = {name[:-len("_l0" + sfx)]: value.detach().clone()
                  for name, value in rnn.named_parameters() if name.endswith("_l0" + sfx)}
        for name, value in self.p.items():  # parameters here, so a dtype cast reaches them
            self.register_parameter(name, nn.Parameter(value))

    def forward(self, x, state):
        p = {name: getattr(self, name) for name in self.p}
        if self.cell == "lru":
            lam = torch.exp(torch.complex(-torch.exp(p["weight_hh_nu"]), torch.exp(p["weight_hh_theta"])))
            B = torch.complex(p["weight_ih_re"], p["weight_ih_im"])  # [H, In]
            C = torch.complex(p["out_re"], p["out_im"])  # [H, H]
            s = lam * state[0] + torch.exp(p["gamma_log"]) * (x.to(B.dtype) @ B.T)
            return torch.nn.functional.gelu((s @ C.T).real + x @ p["skip"].T), (s,)
        H = p["weight_ih"].shape[0] // (2 if self.cell == "mingru" else 3)
        pre = x @ p["weight_ih"].T + p["bias_ih"]
        cand_pre = pre[:, -H:]
        cand = torch.where(cand_pre >= 0, cand_pre + 0.5, torch.sigmoid(cand_pre))
        if self.cell == "mingru":
            z = torch.sigmoid(pre[:, :H])
            h = (1 - z) * state[0] + z * cand
        else:
            f, i = torch.sigmoid(pre[:, :H]), torch.sigmoid(pre[:, H:2 * H])
            h = f / (f + i) * state[0] + i / (f + i) * cand
        return h, (h,)


class CellStepped(nn.Module):
    """Stands in for a single-layer nn.RNN/LSTM/GRU (batch_first): same call, same
    returns, computed with nn.*Cell copies of its weights, one step at a time."""

    def __init__(self, rnn: nn.RNNBase, cell: str):
        super().__init__()
        self.cell = cell
        self.bidirectional = rnn.bidirectional
        self.hidden_size = rnn.hidden_size
        self.cells = nn.ModuleList()
        for sfx in ("", "_reverse") if rnn.bidirectional else ("",):
            if cell not in _CELL:
                self.cells.append(_ModernCell(rnn, cell, sfx))
                continue
            c = _CELL[cell](rnn.input_size, rnn.hidden_size).to(device=rnn.weight_hh_l0.device,
                                                                 dtype=rnn.weight_hh_l0.dtype)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(c, name).copy_(getattr(rnn, f"{name}_l0{sfx}"))
            self.cells.append(c)
        self.inputs: list[torch.Tensor] = []  # one per call
        self.states: list[list[list[torch.Tensor]]] = []  # per call, per direction, per t

    def forward(self, x, state=None, align=None):
        """``align`` (a RowAlignment: the rows are padded): only its mask is read, for the
        lengths; the reverse direction then starts at each row's last real step from the
        initial state, and its output on the padding is zero (no state is there)."""
        self.inputs.append(x)
        B, T, _ = x.shape
        lengths = None if align is None else align.mask[:, :, 0].sum(dim=1)  # [B]
        D, H = len(self.cells), self.hidden_size
        if self.cell not in _CELL:
            return self._modern(x, state, lengths, D, H)
        if state is None:
            h0 = x.new_zeros(D, B, H)
            c0 = x.new_zeros(D, B, H)
        elif self.cell == "lstm":
            h0, c0 = state
        else:
            h0, c0 = state, None
        outs, hn, cn, per_dir = [], [], [], []
        for d, cell in enumerate(self.cells):
            h, c = h0[d], (c0[d] if c0 is not None else None)
            hs = [None] * T
            padded = d == 1 and lengths is not None
            out_t = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                if padded:  # a row's reverse direction starts at its last real step, from h0
                    starts = (t + 1 >= lengths)[:, None]  # [B, 1]
                    h = torch.where(starts, h0[d], h)
                    c = torch.where(starts, c0[d], c) if c is not None else None
                if self.cell == "lstm":
                    h, c = cell(x[:, t], (h, c))
                else:
                    h = cell(x[:, t], h)
                hs[t] = h
                out_t[t] = torch.where((t < lengths)[:, None], h, torch.zeros_like(h)) if padded else h
            per_dir.append(hs)
            outs.append(torch.stack(out_t, dim=1))
            hn.append(h)
            cn.append(c)
        self.states.append(per_dir)
        out = torch.cat(outs, dim=-1)
        final = (torch.stack(hn), torch.stack(cn)) if self.cell == "lstm" else torch.stack(hn)
        return out, final


    def _modern(self, x, state, lengths, D, H):
        B, T, _ = x.shape
        lru = self.cell == "lru"
        if state is None:
            zero = x.new_zeros(D, B, H)
            state = (zero, zero) if lru else zero
        s0 = torch.complex(state[0], state[1]) if lru else state  # [D, B, H]
        outs, finals, per_dir = [], [], []
        for d, cell in enumerate(self.cells):
            st = (s0[d],)
            hs, out_t = [None] * T, [None] * T
            padded = d == 1 and lengths is not None
            for t in (range(T - 1, -1, -1) if d else range(T)):
                if padded:  # a row's reverse direction starts at its last real step, from the initial state
                    st = (torch.where((t + 1 >= lengths)[:, None], s0[d], st[0]),)
                y, st = cell(x[:, t], st)
                hs[t] = st[0]
                out_t[t] = torch.where((t < lengths)[:, None], y, torch.zeros_like(y)) if padded else y
            per_dir.append(hs)
            outs.append(torch.stack(out_t, dim=1))
            finals.append(st[0])
        self.states.append(per_dir)
        last = torch.stack(finals)  # [D, B, H]
        return torch.cat(outs, dim=-1), ((last.real, last.imag) if lru else last)


def stepped_copy(model, dtype=torch.float64):
    """A deep copy of ``model`` in ``dtype`` whose recurrent layers are CellStepped."""
    ref = copy.deepcopy(model).to(dtype)
    ref.tap_inputs = False
    layers = []
    for prefix, stack in ref.named_stacks():
        for i, (spec, rnn) in enumerate(zip(stack.specs, stack.rnns)):
            stand_in = CellStepped(rnn, spec.cell)
            stack.rnns[i] = stand_in
            layers.append((f"{prefix}.{i}", stand_in))
    return ref, layers


def reference_norms(model, compute_loss, dtype=torch.float64):
    """compute_loss(ref_model) -> loss, run once. Returns (taps, hidden): layer -> [T]
    float64 tensors of mean_b ||dL/dx_t|| and mean_b ||dL/dh_t|| (bidirectional: the
    norm of the concatenated [h_fwd; h_bwd])."""
    ref, layers = stepped_copy(model, dtype)
    loss = compute_loss(ref)
    inputs = [layer.inputs[-1] for _, layer in layers]
    states = [h for _, layer in layers for hs in layer.states[-1] for h in hs]
    grads = torch.autograd.grad(loss, inputs + states, allow_unused=True)
    g_in, g_h = grads[:len(inputs)], list(grads[len(inputs):])
    taps, hidden = {}, {}
    for (name, layer), x, g in zip(layers, inputs, g_in):
        g = torch.zeros_like(x) if g is None else g
        taps[name] = g.double().pow(2).sum(-1).sqrt().mean(0)
        total = None
        for hs in layer.states[-1]:
            parts = []
            for h in hs:
                gh = g_h.pop(0)
                parts.append(torch.zeros_like(h) if gh is None else gh)
            g = torch.stack(parts, dim=1)
            sq = (g.abs() if g.is_complex() else g).double().pow(2).sum(-1)  # [B, T]
            total = sq if total is None else total + sq
        hidden[name] = total.sqrt().mean(0)
    return taps, hidden


def run_against_reference(trainer, monkeypatch, forward):
    """Run ``trainer`` to the end and hold every record to the float64 stand-in.

    ``forward(model, batch)`` is the model's output for a batch (a conv model wants its
    input as a fresh leaf). Each step record's dL/dx_t taps are compared with the
    reference at the weights *before* that step (the training forward's), each probe
    record's dL/dh_t with the reference at the weights of the moment, both rtol 1e-6.
    Returns (kinds compared in order, step losses, probe records)."""
    import numpy as np

    loss_fn, last, seen = trainer.task.loss, {}, []

    def spying_loss(output, batch):
        last["batch"] = batch
        if trainer.model.tap_inputs:  # a training forward, not the probe's
            seen.append((batch, {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}))
        return loss_fn(output, batch)

    monkeypatch.setattr(trainer.task, "loss", spying_loss)
    compared, losses, probes = [], [], []
    for record in trainer.run():
        if record["kind"] == "step":
            losses.append(record["loss"])
            batch, before = seen[record["step"] - 1]
            after = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            trainer.model.load_state_dict(before)
            ref_taps, _ = reference_norms(trainer.model, lambda m, b=batch: loss_fn(forward(m, b), b))
            trainer.model.load_state_dict(after)
            assert set(ref_taps) == set(record["timestep_grad_norms"])
            for name, ref in ref_taps.items():
                np.testing.assert_allclose(record["timestep_grad_norms"][name], ref.numpy(), rtol=1e-6)
            compared.append("step")
        if record["kind"] == "probe":
            batch = last["batch"]
            _, ref_hidden = reference_norms(trainer.model, lambda m, b=batch: loss_fn(forward(m, b), b))
            assert set(ref_hidden) == set(record["hidden_grad_norms"])
            for name, ref in ref_hidden.items():
                got = record["hidden_grad_norms"][name]
                assert np.isfinite(got).all()
                np.testing.assert_allclose(got, ref.numpy(), rtol=1e-6)
            probes.append(record)
            compared.append("probe")
    return compared, losses, probes
