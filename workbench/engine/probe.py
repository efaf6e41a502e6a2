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
"""
from __future__ import annotations

import numpy as np
import torch

from workbench.engine.model import RecurrentModel


def tap_grad_norms(model: RecurrentModel) -> dict[str, np.ndarray]:
    """After backward on a forward with ``model.tap_inputs``: layer -> [T] numpy."""
    probe = model.probe
    if probe is None or not probe.taps:
        return {}
    norms = []
    for tap in probe.taps:
        if tap.grad is None:
            norms.append(torch.zeros(tap.shape[1], device=tap.device))
        else:
            norms.append(tap.grad.float().norm(dim=-1).mean(dim=0))  # [B, T, In] -> [T]
    # One transfer for all layers where lengths agree; else one per layer.
    host = _to_host(norms)
    return dict(zip(probe.layer_names, host))


def _to_host(tensors: list[torch.Tensor]) -> list[np.ndarray]:
    if len({t.shape[0] for t in tensors}) == 1:
        return list(torch.stack(tensors).cpu().numpy())
    return [t.cpu().numpy() for t in tensors]


def exact_hidden_grad_norms(model: RecurrentModel, loss_fn, batch) -> dict[str, np.ndarray]:
    """Run the unrolled replica on ``batch``; layer -> [T] mean_b ||dL/dh_t|| (numpy).

    ``loss_fn(output, batch)`` is the task's loss. Bidirectional layers report the norm
    of the concatenated state [h_fwd_t; h_bwd_t]."""
    was_tapping = model.tap_inputs
    model.tap_inputs = False
    try:
        with torch.enable_grad():
            output = model(batch.x, batch.y_in, batch.lengths, unrolled=True)
            probe = model.probe
            loss = loss_fn(output, batch)
            flat = [h for layer in probe.states for direction in layer for h in direction]
            grads = torch.autograd.grad(loss, flat, allow_unused=True)
    finally:
        model.tap_inputs = was_tapping
        model.probe = None
    norms, k = [], 0
    for layer in probe.states:
        squared = None
        for direction in layer:
            g = [grads[k + t] if grads[k + t] is not None else torch.zeros_like(direction[t])
                 for t in range(len(direction))]
            k += len(direction)
            sq = torch.stack(g, dim=1).float().pow(2).sum(dim=-1)  # [B, T]
            squared = sq if squared is None else squared + sq
        norms.append(squared.sqrt().mean(dim=0))  # [T]
    return dict(zip(probe.layer_names, _to_host(norms)))


@torch.no_grad()
def param_grad_norms(model: RecurrentModel) -> dict[str, dict[str, float]]:
    """Per recurrent layer: norms of the forward (W_f = W_ih), recurrent (W_r = W_hh) and
    bias gradients, both directions together."""
    names, values = [], []
    for layer_name, _spec, rnn in model.recurrent_layers():
        groups = {"forward": [], "recurrent": [], "bias": []}
        for pname, p in rnn.named_parameters():
            if p.grad is None:
                continue
            key = "forward" if pname.startswith("weight_ih") else "recurrent" if pname.startswith("weight_hh") else "bias"
            groups[key].append(p.grad.float().pow(2).sum())
        for key, parts in groups.items():
            names.append((layer_name, key))
            values.append(torch.stack(parts).sum().sqrt() if parts else torch.zeros((), device=_device(model)))
    if not values:
        return {}
    host = torch.stack(values).cpu().numpy()
    out: dict[str, dict[str, float]] = {}
    for (layer_name, key), v in zip(names, host):
        out.setdefault(layer_name, {})[key] = float(v)
    return out


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
