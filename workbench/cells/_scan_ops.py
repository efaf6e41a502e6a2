"""The torch side of the linear-recurrence cells (minGRU, minLSTM, LRU): their layer is a
StepLayer whose ordinary forward is the parallel scan and whose step is the sequential
form (workbench.engine.scan), with an exact dL/dh_t probe route of their own.

Imports torch; imported only through the cells' ``ops`` factories.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workbench.cells.generic import StepOps
from workbench.engine import scan


@dataclass
class ScanProbe:
    """The probe's record of one layer run by the scan with its zero probe input z (per
    direction [B, T, H]; the reverse direction's in its reading order, i.e. flipped):
    dL/dz_t is the total dL/dh_t (workbench.engine.scan). The LRU's z is complex; the
    modulus per unit of dL/dz_t has the norm of the gradient with respect to the state's
    real and imaginary parts."""

    z: list

    def targets(self) -> list[torch.Tensor]:
        return list(self.z)

    @torch.no_grad()
    def hidden_grads(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        out = []
        for d, (z, g) in enumerate(zip(self.z, grads)):
            g = torch.zeros_like(z) if g is None else g
            g = g.abs() if g.is_complex() else g
            out.append(g.flip(1) if d else g)  # the reverse direction back in row order
        return out


class ScanOps(StepOps):
    """One of workbench.engine.scan's cells (``name``: "mingru", "minlstm", "lru")."""

    def __init__(self, name: str, init=None):
        self.name = name
        forward = scan.SEQUENCE[name]
        super().__init__(scan.STEP[name], sequence=lambda p, x, st: forward(p, x, st)[:2], init=init)

    def run(self, directions: list, x: torch.Tensor, state):
        """One step (generation, streaming) takes the sequential form; longer inputs the scan."""
        if x.shape[1] == 1 and not torch.jit.is_tracing():
            out, final, _ = self.unrolled(directions, x, state, None)
            return out, final
        return super().run(directions, x, state)

    def probe_through_kernel(self, device: torch.device) -> bool:
        return True  # the scan with its probe input: one more scan, no loop over t

    def kernel(self, directions: list, x: torch.Tensor, state, train: bool, probe: bool):
        """The scan of every direction: x [B, T, In] -> (output [B, T, D*H], final state,
        ScanProbe when ``probe``)."""
        D, H = len(directions), directions[0].hidden
        outs, finals, zs = [], [], []
        for d, (direction, start) in enumerate(zip(directions, self._initial(x, state, D, H))):
            seq = x.flip(1) if d else x  # the reverse direction reads x backwards
            out, final, z = scan.SEQUENCE[self.name](direction.params, seq, start, probe=probe)
            outs.append(out.flip(1) if d else out)
            finals.append(tuple(final))
            zs.append(z)
        return torch.cat(outs, dim=-1), self._final(finals), ScanProbe(zs) if probe else None


def _lru_init(params: dict, hidden: int) -> None:
    scan.lru_init(params)  # the paper's defaults; model.init.lru_r_min/max re-initialise (initialise_layer)


class LRUOps(ScanOps):
    """The LRU: its carried state (re, im) is not its output y_t, so the replica records
    the state s_t (as one [B, 2H] node: re and im side by side) for the probe, and the
    ring initialisation reads model.init."""

    def __init__(self):
        super().__init__("lru", init=_lru_init)

    def initialise_layer(self, module: nn.Module, init) -> None:
        for direction in self.directions(module):
            scan.lru_init(direction.params, r_min=init.lru_r_min, r_max=init.lru_r_max)

    def unrolled(self, directions: list, x: torch.Tensor, state, gates: list | None):
        T = x.shape[1]
        D, H = len(directions), directions[0].hidden
        steps = x.unbind(1)  # T x [B, In]
        outputs, finals, all_states = [], [], []
        for d, (direction, st) in enumerate(zip(directions, self._initial(x, state, D, H))):
            p = direction.params
            order = range(T - 1, -1, -1) if d else range(T)
            ys: list = [None] * T
            states: list = [None] * T
            moduli: list = [None] * T
            for t in order:
                s = torch.cat(scan.lru_state_step(p, steps[t], st), dim=-1)  # [B, 2H]: a graph node
                st = tuple(s.split(H, dim=-1))
                ys[t] = scan.lru_output(p, st[0], st[1], steps[t])
                states[t] = s
                if gates is not None:
                    moduli[t] = torch.sqrt(st[0] ** 2 + st[1] ** 2)
            if gates is not None:
                gates.append({"modulus": torch.stack(moduli, dim=1)} if T else {})
            outputs.append(torch.stack(ys, dim=1))  # [B, T, H]
            finals.append(tuple(st))
            all_states.append(states)
        return torch.cat(outputs, dim=-1), self._final(finals), all_states
