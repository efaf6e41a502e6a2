"""Gradient-through-time instrumentation.

Two views, both reduced on the device to [T] per layer before anything moves to the host:

- ``timestep_grad_norms`` (every logged step, nearly free): mean over the batch of
  ||dL/dx_t^l||, from ``retain_grad`` on each recurrent layer's input sequence. The fused
  kernel's backward computes that gradient anyway, recurrent path included.
- ``hidden_grad_norms`` (the exact probe, sampled): mean over the batch of ||dL/dh_t^l||,
  the total gradient with respect to each layer's hidden state at each step. It needs
  the recurrence unrolled, so the model's unrolled replica (same parameters, a Python
  loop over t) runs on one batch; ``torch.autograd.grad`` with respect to the recorded
  h_t gives exactly the total gradient and leaves the parameters' .grad untouched.
  Bidirectional layers report the norm of the concatenated state [h_fwd_t; h_bwd_t];
  for an LSTM h_t is the hidden state (the cell state c_t is not included).

Both are means over every row of the batch, padded rows included (a padded step's
gradient is zero, which is what it is).

The ``*_tensors`` functions leave their results on the device so that the trainer can
move everything a step produces to the host in one transfer (see ``to_host``).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from workbench.engine.model import RecurrentModel

# ----------------------------------------------------------------------------- taps


def tap_grad_norm_tensors(model: RecurrentModel) -> list[tuple[str, torch.Tensor]]:
    """After backward on a forward with ``model.tap_inputs`` (taps retain_grad'ed):
    [(layer name, mean_b ||dL/dx_t|| as a [T] tensor (>= float32) on the device)]."""
    probe = model.probe
    if probe is None or not probe.taps:
        return []
    out = []
    for name, tap in zip(probe.layer_names, probe.taps):
        if tap.grad is None:  # the loss does not depend on this layer's input
            out.append((name, torch.zeros(tap.shape[1], device=tap.device)))
        else:
            # [B, T, In] -> [B, T] -> [T], in at least float32 (bf16/fp16 grads would round)
            dtype = torch.promote_types(tap.grad.dtype, torch.float32)
            norms = torch.linalg.vector_norm(tap.grad, dim=-1, dtype=dtype)
            out.append((name, norms.mean(dim=0)))
    return out


class TapNormHooks:
    """The trainer's way to the same numbers as ``tap_grad_norm_tensors`` without
    retain_grad: a hook on each tap reduces dL/dx^l [B, T, In] to its [T] profile the
    moment backward produces it, so no copy of the gradient is kept (retain_grad clones
    it) and nothing is read back later. Attach after the forward, before backward."""

    def __init__(self, model: RecurrentModel):
        probe = model.probe
        self.names = list(probe.layer_names) if probe is not None else []
        taps = list(probe.taps) if probe is not None else []
        # Only the taps' lengths and devices are kept, never the taps: a tap holds a hook
        # that holds this object, and a tap held here would close that cycle and keep the
        # step's whole autograd graph alive until Python's cycle collector came round.
        self.lengths = [(tap.shape[1], tap.device) for tap in taps]
        self.norms: list[torch.Tensor | None] = [None] * len(taps)
        for i, tap in enumerate(taps):
            if tap.requires_grad:
                tap.register_hook(self._reducer(i))

    def _reducer(self, i: int):
        def hook(grad: torch.Tensor) -> None:
            dtype = torch.promote_types(grad.dtype, torch.float32)
            self.norms[i] = torch.linalg.vector_norm(grad, dim=-1, dtype=dtype).mean(dim=0)  # [B,T,In] -> [T]
        return hook

    def tensors(self) -> list[tuple[str, torch.Tensor]]:
        """After backward: [(layer name, [T] on the device)], zeros where no gradient came."""
        return [(name, n if n is not None else torch.zeros(length, device=device))
                for name, (length, device), n in zip(self.names, self.lengths, self.norms)]


def tap_grad_norms(model: RecurrentModel) -> dict[str, np.ndarray]:
    """Host version of ``tap_grad_norm_tensors``: layer -> [T] numpy."""
    return to_host(dict(tap_grad_norm_tensors(model)))


# ----------------------------------------------------------------------------- parameters

PARAM_GROUPS = ("forward", "recurrent", "bias")


def _param_group(pname: str) -> str:
    if pname.startswith("weight_ih"):
        return "forward"  # W_f
    if pname.startswith("weight_hh"):
        return "recurrent"  # W_r
    return "bias"


class ParamGradNorms:
    """Per recurrent layer and group (forward W_ih / recurrent W_hh / bias), the L2 norm
    of the gradients, both directions together. Made once per model (the walk over its
    modules and the group index are per-step Python and host-to-device work otherwise);
    calling it gives (keys [(layer, group)], float32 [K] on the device, or None)."""

    def __init__(self, model: RecurrentModel):
        self.keys = [(layer, group) for layer, _spec, _rnn in model.recurrent_layers() for group in PARAM_GROUPS]
        self.params, index = [], []
        for li, (_layer, _spec, rnn) in enumerate(model.recurrent_layers()):
            for pname, p in rnn.named_parameters():
                self.params.append(p)
                index.append(li * len(PARAM_GROUPS) + PARAM_GROUPS.index(_param_group(pname)))
        self.device = next(model.parameters()).device
        self.index = torch.tensor(index, dtype=torch.long, device=self.device)  # [P] -> group slot

    @torch.no_grad()
    def __call__(self) -> tuple[list[tuple[str, str]], torch.Tensor | None]:
        if not self.keys:
            return [], None
        present = [i for i, p in enumerate(self.params) if p.grad is not None]
        squares = torch.zeros(len(self.keys), device=self.device, dtype=torch.float32)
        if present:
            index = self.index if len(present) == len(self.params) else self.index[present]
            # one multi-tensor kernel for all norms, then sum the squares per group
            norms = torch.stack(torch._foreach_norm([self.params[i].grad for i in present])).float()
            squares.index_add_(0, index, norms.pow(2))
        return self.keys, squares.sqrt()


def param_grad_norm_tensors(model: RecurrentModel) -> tuple[list[tuple[str, str]], torch.Tensor | None]:
    """ParamGradNorms, once: (keys [(layer, group)], float32 [K] on the device, or None)."""
    return ParamGradNorms(model)()


def param_grad_norms(model: RecurrentModel) -> dict[str, dict[str, float]]:
    """Host version: layer -> {"forward": ..., "recurrent": ..., "bias": ...}."""
    keys, values = param_grad_norm_tensors(model)
    if values is None:
        return {}
    return unpack_param_norms(keys, values.cpu().numpy())


def unpack_param_norms(keys: list[tuple[str, str]], values: np.ndarray) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (layer, group), v in zip(keys, values):
        out.setdefault(layer, {})[group] = float(v)
    return out


# ----------------------------------------------------------------------------- exact probe


def exact_hidden_grad_norm_tensors(model: RecurrentModel, compute_loss: Callable[[], torch.Tensor],
                                   inputs: dict | None = None) -> dict[str, torch.Tensor]:
    """``compute_loss()`` runs the model with ``unrolled=True`` (its last forward call is
    the one probed) and returns the loss. Returns layer -> mean_b ||dL/dh_t|| [T] on the
    device. Parameters' .grad are not touched. ``inputs``: a dict that receives what
    that forward fed each layer (engine/dynamics.py reads it instead of a forward of its
    own): "names", "taps" (each layer's input [B, T, In], detached), "initials" (its
    initial state or None), "lengths" (its rows' true lengths [B] or None)."""
    was_tapping = model.tap_inputs
    model.tap_inputs = False
    model.record_inputs = inputs is not None
    try:
        with torch.enable_grad():
            loss = compute_loss()
            probe = model.probe
            if probe is None or not probe.states:
                raise RuntimeError("the probe's loss must come from a forward with unrolled=True")
            if inputs is not None:
                inputs.update(names=list(probe.layer_names), taps=[x.detach() for x in probe.taps],
                              initials=list(probe.initials), lengths=list(probe.lengths))
            per_layer = [layer.targets() for layer in probe.states]
            flat = [t for targets in per_layer for t in targets]
            grads = torch.autograd.grad(loss, flat, allow_unused=True)
    finally:
        model.tap_inputs = was_tapping
        model.record_inputs = False
        model.probe = None
    norms, k = {}, 0
    for name, layer, targets in zip(probe.layer_names, probe.states, per_layer):
        squared = None
        for stacked in layer.hidden_grads(list(grads[k:k + len(targets)])):  # per direction [B, T, H]
            # at least fp32: squares of bf16/fp16 gradients underflow or overflow
            stacked = stacked.to(torch.promote_types(stacked.dtype, torch.float32))
            sq = stacked.pow(2).sum(dim=-1)  # [B, T]
            squared = sq if squared is None else squared + sq
        k += len(targets)
        norms[name] = squared.sqrt().mean(dim=0)  # [T]
    return norms


def exact_hidden_grad_norms(model: RecurrentModel, loss_fn, batch) -> dict[str, np.ndarray]:
    """Run the unrolled replica on ``batch``; layer -> [T] mean_b ||dL/dh_t|| (numpy).
    ``loss_fn(output, batch)`` is the task's loss."""
    def compute_loss():
        output = model(batch.x, batch.y_in, batch.lengths, unrolled=True)
        return loss_fn(output, batch)

    return to_host(exact_hidden_grad_norm_tensors(model, compute_loss))


# ----------------------------------------------------------------------------- host


def to_host(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """{name: [n_i] device tensor} -> {name: numpy float64 [n_i]} in a single transfer."""
    if not tensors:
        return {}
    names = list(tensors)
    flat = torch.cat([tensors[n].reshape(-1).double() for n in names]).cpu().numpy()
    out, at = {}, 0
    for n in names:
        size = tensors[n].numel()
        out[n] = flat[at:at + size]
        at += size
    return out
