"""The torch side of a cell (imports torch; imported only through ``workbench.cells.ops``).

``CellOps`` is what the model asks of a cell; ``StepOps`` implements it for a cell that
gives only a Python step function (see the registry's docstring): its layer module holds
the parameters the cell's ``param_shapes`` names (``NAME_l0`` and ``NAME_l0_reverse``,
as PyTorch names them), and runs the step over time, one direction after the other.

States: a one-state cell's layer takes and returns h [D, B, H]; a cell with more states
(an LSTM's (h, c)) a tuple of them, in ``Cell.states`` order, as nn.LSTM does.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class CellOps:
    """What the model needs of a cell's torch side. ``cell`` (the registry's Cell) is set
    by ``workbench.cells.ops``."""

    cell = None
    # a multi-layer kernel for a stack of identical layers (RecurrentStack.fused)
    fusable = False

    def make_layer(self, layer, input_size: int) -> nn.Module:
        """The layer module of a LayerSpec: forward(x [B, T, In], state=None, align=None)
        -> (output [B, T, D*H], final state); attributes hidden_size, bidirectional."""
        raise NotImplementedError

    def directions(self, module: nn.Module) -> list:
        """Per direction (forward, then reverse) what ``unrolled``/``kernel`` read."""
        raise NotImplementedError

    def unrolled(self, directions: list, x: torch.Tensor, state, gates: list | None):
        """The step-by-step replica: x [B, T, In] -> (output [B, T, D*H], final state,
        per direction the list over t of h_t [B, H], graph nodes). ``gates``: a list that
        receives per direction {series name: [B, T, H]} (the try-out's look inside)."""
        raise NotImplementedError

    # the exact probe through a kernel (workbench.engine.model.LayerProbe); None: the
    # replica is the only route
    kernel = None

    def probe_through_kernel(self, device: torch.device) -> bool:
        """The probe's default route on this device (RecurrentStack.kernel_probe = None)."""
        return self.kernel is not None

    # -- one step as a map of the carried state (workbench.engine.dynamics) -----------
    def input_part(self, direction, x: torch.Tensor) -> torch.Tensor:
        """What a step reads of its input, computed for all rows and steps at once: x
        [..., In] -> u [..., U] (the fused cells: x W_ih^T + biases; a step cell: x)."""
        raise NotImplementedError

    def transition(self, direction) -> Callable:
        """One step as a function of the carried state, its parameters detached:
        ``f(u [N, U], state tuple of [N, H]) -> (next state tuple, gates {name: [N, H]})``,
        each of the N rows independent of the others (a row may be a (row, t) pair)."""
        raise NotImplementedError

    def recurrent_weights(self, direction) -> dict[str, torch.Tensor]:
        """This direction's recurrent weights by parameter name ([G*H, H] each)."""
        raise NotImplementedError

    def recurrent_blocks(self, direction, hidden: int) -> dict[str, torch.Tensor]:
        """The recurrent weights cut into their [H, H] gate blocks, named by the cell's gate
        (an LSTM's input/forget/cell/output, a GRU's reset/update/new) where the blocks
        are as many as its gates, else "W_hh" (one block) or "NAME[k]"."""
        gate_names = self.cell.gate_names if self.cell is not None else ()
        weights = {n: w for n, w in self.recurrent_weights(direction).items()
                   if w.dim() == 2 and w.shape[1] == hidden and w.shape[0] % hidden == 0}
        out = {}
        for name, w in weights.items():
            blocks = w.detach().view(-1, hidden, hidden)  # [G, H, H]
            if len(blocks) == 1:
                out["W_hh" if len(weights) == 1 else name] = blocks[0]
            elif len(weights) == 1 and len(blocks) == len(gate_names):
                out.update(zip(gate_names, blocks))
            else:
                out.update((f"{name}[{k}]", b) for k, b in enumerate(blocks))
        return out

    # -- states: one tensor [D, B, H], or a tuple of them ------------------------------
    @property
    def multi(self) -> bool:
        return self.cell.state_count > 1

    def state_parts(self, state) -> tuple:
        return tuple(state) if self.multi else (state,)

    def state_of(self, parts):
        return tuple(parts) if self.multi else parts[0]


@dataclass
class _Direction:
    params: dict  # name -> tensor, this direction's
    hidden: int


class StepLayer(nn.Module):
    """A layer of a step cell; parameters ``NAME_l0`` (and ``NAME_l0_reverse``)."""

    def __init__(self, ops: StepOps, cell_name: str, shapes: dict, input_size: int, hidden_size: int,
                 bidirectional: bool):
        super().__init__()
        self.ops, self.cell_name = ops, cell_name
        self.input_size, self.hidden_size, self.bidirectional = input_size, hidden_size, bidirectional
        self.names = list(shapes)
        for sfx in ("", "_reverse") if bidirectional else ("",):
            for name, shape in shapes.items():
                self.register_parameter(f"{name}_l0{sfx}", nn.Parameter(torch.empty(shape)))
        with torch.no_grad():
            for d in range(2 if bidirectional else 1):
                ops.init(self.direction_params(d), hidden_size)

    def direction_params(self, d: int) -> dict:
        sfx = "_reverse" if d else ""
        return {name: getattr(self, f"{name}_l0{sfx}") for name in self.names}

    def forward(self, input: torch.Tensor, hx=None, align=None):
        from workbench.engine.model import layer_sequence

        return layer_sequence(self, self.cell_name, input, hx, align)


def default_init(params: dict, hidden: int) -> None:
    """PyTorch's own for its RNNs: every parameter uniform in +-1/sqrt(H)."""
    bound = 1.0 / math.sqrt(hidden) if hidden > 0 else 0.0
    for p in params.values():
        nn.init.uniform_(p, -bound, bound)


class StepOps(CellOps):
    """A cell given as ``step(params, x_t [B, In], state) -> (h_t [B, H], state, gates)``
    (state: a tuple of [B, H], one per Cell.states; gates: {name: [B, H]}).

    ``sequence(params, x [B, T, In], state) -> (out [B, T, H], final state)``: a parallel
    (scan) form of one forward direction, used for the layer's ordinary forward; without
    it the step runs over time. ``init(params, hidden)``: initialises one direction's
    parameters in place (default: uniform in +-1/sqrt(H)); model.init.recurrent's
    orthogonal/spectral options then apply to a parameter named ``weight_hh``."""

    def __init__(self, step: Callable, sequence: Callable | None = None, init: Callable | None = None):
        self.step = step
        self.sequence = sequence
        self.init = init or default_init

    def make_layer(self, layer, input_size: int) -> nn.Module:
        shapes = self.cell.param_shapes(input_size, layer.hidden_size)
        return StepLayer(self, self.cell.name, shapes, input_size, layer.hidden_size, layer.bidirectional)

    def directions(self, module: StepLayer) -> list:
        return [_Direction(module.direction_params(d), module.hidden_size)
                for d in range(2 if module.bidirectional else 1)]

    def _initial(self, x: torch.Tensor, state, D: int, H: int) -> list[tuple]:
        """Per direction the state tuple (each [B, H]) to start from."""
        B = x.shape[0]
        if state is None:
            return [tuple(x.new_zeros(B, H) for _ in range(self.cell.state_count)) for _ in range(D)]
        parts = self.state_parts(state)  # each [D, B, H]; a carried one may be bf16: match x
        return [tuple(p[d].to(x.dtype) for p in parts) for d in range(D)]

    def _final(self, finals: list[tuple]):
        parts = [torch.stack([f[i] for f in finals], dim=0) for i in range(self.cell.state_count)]  # [D, B, H]
        return self.state_of(parts)

    def run(self, directions: list, x: torch.Tensor, state):
        """The layer's ordinary forward: the scan form where there is one. -> (out, final)."""
        if self.sequence is None:
            out, final, _ = self.unrolled(directions, x, state, None)
            return out, final
        D, H = len(directions), directions[0].hidden
        outs, finals = [], []
        for d, (direction, start) in enumerate(zip(directions, self._initial(x, state, D, H))):
            seq = x.flip(1) if d else x  # the reverse direction reads x backwards
            out, final = self.sequence(direction.params, seq, start)
            outs.append(out.flip(1) if d else out)
            finals.append(tuple(final))
        return torch.cat(outs, dim=-1), self._final(finals)

    def input_part(self, direction: _Direction, x: torch.Tensor) -> torch.Tensor:
        return x

    def transition(self, direction: _Direction) -> Callable:
        params = {n: p.detach() if isinstance(p, torch.Tensor) else p  # (a conv cell's grid is a tuple)
                  for n, p in direction.params.items()}
        step = self.step

        def f(u, state):
            _h, state, gates = step(params, u, tuple(state))
            return tuple(state), gates
        return f

    def recurrent_weights(self, direction: _Direction) -> dict[str, torch.Tensor]:
        return {n: p for n, p in direction.params.items() if n.startswith("weight_hh")}

    def unrolled(self, directions: list, x: torch.Tensor, state, gates: list | None):
        T = x.shape[1]
        D, H = len(directions), directions[0].hidden
        steps = x.unbind(1)  # T x [B, In]
        extra = [n for n in self.cell.series[1:] if n not in self.cell.gate_names]  # "cell_state"...
        outputs, finals, all_states = [], [], []
        for d, (direction, st) in enumerate(zip(directions, self._initial(x, state, D, H))):
            order = range(T - 1, -1, -1) if d else range(T)
            states: list = [None] * T
            seen: list = [None] * T
            for t in order:
                h, st, g = self.step(direction.params, steps[t], st)
                states[t] = h
                if gates is not None:
                    seen[t] = {**dict(zip(extra, st[1:])), **g}
            if gates is not None:
                gates.append({name: torch.stack([seen[t][name] for t in range(T)], dim=1)
                              for name in (list(seen[0]) if T else [])})
            outputs.append(torch.stack(states, dim=1))  # [B, T, H]
            finals.append(tuple(st))
            all_states.append(states)
        return torch.cat(outputs, dim=-1), self._final(finals), all_states
