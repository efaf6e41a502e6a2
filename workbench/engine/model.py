"""build_model: turn a validated ModelSpec (plus the task's ModelIO) into an nn.Module.

Each recurrent layer is its own module, built by its cell (workbench.cells): for the
built-in cells a single-layer ``nn.RNN``/``nn.LSTM``/``nn.GRU``, so that cuDNN runs it on a
GPU; for a step cell a Python loop over time. Every layer boundary is a tensor the
trainer can observe:

- ``model.taps``: when ``model.tap_inputs`` is set, the forward pass records each
  recurrent layer's input sequence x^l [B, T, In_l]. The trainer calls ``retain_grad``
  on them; after backward, ``tap.grad`` is dL/dx_t^l for every t, which the fused
  kernel's backward computed anyway (it includes the recurrent path inside the layer).
- ``unrolled=True``: the exact probe's forward, on one sampled batch. Each layer records
  what gives the total dL/dh_t, recurrent path included (LayerProbe): it runs its fused
  kernel with a zero extra input that enters the gates (through W_hh for RNN/LSTM, the
  identity for a GRU), whose gradient carries the recurrent part. With a stack's
  ``kernel_probe`` off, the layers instead run the cell equations step by step with the
  very same parameters and record every h_t (graph nodes): the slow reference replica
  (a Python loop over time), which the tests hold the kernel route to. A step cell has
  no kernel: the replica is its route.
- padded rows (``lengths``): a bidirectional layer's reverse direction starts at each
  row's last real step (RowAlignment), so a row gives what it gives alone, unpadded
  (tests/engine/test_padding.py); unidirectional layers need nothing for that.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from workbench import cells
from workbench.cells import conv as conv_cells
from workbench.spec import CHAR_CONV_WIDTH, LayerSpec, ModelIO, ModelSpec, conv_output_shape, spatial_head

# ----------------------------------------------------------------------------- layers


@dataclass
class RowAlignment:
    """How a bidirectional layer reads padded rows: its reverse direction must start at
    each row's last real step, not at the padding after it.

    The reverse direction then runs as a forward direction over each row reversed within
    its length (``flip``: steps len-1 .. 0, then the padding, which comes last and touches
    nothing real); its outputs are reversed back (``unflip``) and are zero on the padding,
    where that direction has no state. The forward direction reads the row as it is, as a
    unidirectional layer does (padding after the real steps changes nothing before them).
    Made once per batch from the lengths, on the device: gathers only, no host sync, the
    same shapes for every batch of a size (CUDA graphs)."""

    flip_index: torch.Tensor  # [B, T]: len-1-t on the real steps, t on the padding (its own inverse)
    mask: torch.Tensor  # [B, T, 1] bool: the real steps

    @staticmethod
    def of(lengths: torch.Tensor, T: int, device: torch.device) -> RowAlignment:
        lengths = lengths.to(device).long().clamp(0, T)[:, None]  # [B, 1]
        steps = torch.arange(T, device=device)[None, :]  # [1, T]
        real = steps < lengths
        return RowAlignment(flip_index=torch.where(real, lengths - 1 - steps, steps), mask=real.unsqueeze(-1))

    def flip(self, seq: torch.Tensor) -> torch.Tensor:
        """[B, T, F]: each row's real steps in reverse order, its padding where it was."""
        return seq.gather(1, self.flip_index.unsqueeze(-1).expand(-1, -1, seq.shape[-1]))

    def unflip(self, seq: torch.Tensor) -> torch.Tensor:
        """A reverse direction's [B, T, F] from its flipped run back in row order, zero on
        the padding."""
        return self.flip(seq) * self.mask.to(seq.dtype)


def _make_rnn(layer: LayerSpec, input_size: int) -> nn.Module:
    """The layer module of one LayerSpec, as its cell builds it (workbench.cells)."""
    return cells.ops(layer.cell).make_layer(layer, input_size)


def _split_directions(state, cell: str) -> tuple:
    """A [2, B, H] state (or a tuple of them: an LSTM's (h, c)) -> (forward's, reverse's), each [1, B, H]."""
    if state is None:
        return None, None
    if cells.get(cell).state_count > 1:
        return tuple(s[:1] for s in state), tuple(s[1:] for s in state)
    return state[:1], state[1:]


def _join_directions(forward, reverse, cell: str):
    if cells.get(cell).state_count > 1:
        return tuple(torch.cat([f, r]) for f, r in zip(forward, reverse))
    return torch.cat([forward, reverse])


def _by_halves(run, cell: str, directions: list[tuple], x: torch.Tensor, state, align: RowAlignment):
    """A bidirectional layer over padded rows as two forward runs: ``run(directions, x,
    state) -> (output, final, extra)`` over the rows as they are (the forward direction)
    and over them flipped by ``align`` (the reverse one). Returns (output [B, T, 2H] in
    row order, final state as the module returns it, (forward's extra, reverse's extra))."""
    state_f, state_r = _split_directions(state, cell)
    out_f, final_f, extra_f = run(directions[:1], x, state_f)
    out_r, final_r, extra_r = run(directions[1:], align.flip(x), state_r)
    out = torch.cat([out_f, align.unflip(out_r)], dim=-1)
    return out, _join_directions(final_f, final_r, cell), (extra_f, extra_r)


# ----------------------------------------------------------------------------- cells, unrolled


def unrolled_layer(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state=None, gates: list | None = None,
                   align: RowAlignment | None = None):
    """Run a single-layer RNN module step by step with its own parameters.

    x: [B, T, In]. Returns (output [B, T, D*H], final state as the module returns it,
    hidden states: list over directions of lists over t of h_t [B, H]). The h_t are
    graph nodes: torch.autograd.grad(loss, h_t) is the total dL/dh_t, recurrent path
    included (the probe asks for exactly that; no retain_grad needed).

    gates: if a list, one dict per direction is appended to it: series name (the cell's
    gate_names, plus "cell_state" for an LSTM; workbench.cells.Cell.series) -> [B, T, H],
    in time order for both directions (the try-out's look inside the network).

    align (padded rows, bidirectional): the reverse direction runs forwards over the
    flipped rows (RowAlignment); its outputs and gates come back in row order, its hidden
    states stay in the flipped order (``align.unflip`` of a [B, T, H] stack of them).
    """
    ops = cells.ops(cell)
    directions = ops.directions(rnn)
    if align is None or len(directions) == 1:
        return ops.unrolled(directions, x, state, gates)

    def half(dirs, seq, st):
        seen = [] if gates is not None else None
        out, final, states = ops.unrolled(dirs, seq, st, seen)
        return out, final, (states, seen)

    out, final, ((states_f, gates_f), (states_r, gates_r)) = _by_halves(half, cell, directions, x, state, align)
    if gates is not None:
        gates += gates_f + [{name: align.unflip(g) for name, g in gates_r[0].items()}]
    return out, final, states_f + states_r


def layer_sequence(rnn: nn.Module, cell: str, x: torch.Tensor, state=None, align: RowAlignment | None = None):
    """The ordinary forward of a layer without a fused kernel (a step cell: its scan form,
    or its step over time; workbench.cells.generic): x [B, T, In] -> (output [B, T, D*H],
    final state). Over padded rows a bidirectional layer runs as two forward halves."""
    ops = cells.ops(cell)
    directions = ops.directions(rnn)
    if align is None or len(directions) == 1:
        return ops.run(directions, x, state)
    out, final, _ = _by_halves(lambda dirs, seq, st: (*ops.run(dirs, seq, st), None), cell, directions, x, state,
                               align)
    return out, final


@dataclass
class LayerProbe:
    """What the exact dL/dh_t probe recorded of one layer's forward, one of two ways.

    unrolled (``states``): h_t per direction and step, graph nodes of the step-by-step
    replica; autograd.grad(loss, h_t) is the total dL/dh_t. The reference route.

    through the layer's fused kernel (``out``, ``z``, ``final``; every cell): the layer
    ran as its cuDNN/ATen kernel on a widened input [x_t, z_t] with z = 0, so dL/dz_t
    tells what reaches step t's gates.
      RNN, LSTM: z [B, T, D*H] enters each direction's gate pre-activations a_t through
        that direction's own W_hh, so dL/dz_t = W_hh^T dL/da_t: exactly the recurrent part
        of the gradient of the state that feeds step t (h_{t-1} enters step t only through
        W_hh h_{t-1}; an LSTM's cell-state path is inside the kernel). The total is
            forward:  dL/dh_t = dL/dout_t[:H] + dL/dz_{t+1}[:H]   (h_t feeds step t+1)
            reverse:  dL/dh_t = dL/dout_t[H:] + dL/dz_{t-1}[H:]   (h_t feeds step t-1)
        plus dL/dh_n for the direction's last state.
      GRU: h_{t-1} also enters through r_t * (W_hn h_{t-1} + b_hn) and z_t * h_{t-1}, so z
        [B, T, D*3H] enters the three gates' pre-activations through the identity:
        dL/dz_t = (da_r, da_z, da_n) at step t. With r_t, u_t (the update gate)
        recomputed from x and the outputs, the gradient of the state feeding step t is
        [da_r, da_z, r_t * da_n] W_hh + u_t * dL/dh(step t's output), a recurrence run
        backwards over t (one fused multiply-add per step).
    One kernel call per layer instead of a Python loop of cell equations over time: on a
    GPU the probe costs about a training step instead of tens."""

    hidden: int
    directions: int
    states: list[list[torch.Tensor]] | None = None
    out: torch.Tensor | None = None  # [B, T, D*H]
    z: torch.Tensor | None = None  # [B, T, D*H] (D*3H for a GRU), zeros
    final: torch.Tensor | None = None  # h_n [D, B, H]
    gru: tuple | None = None  # GRU: (x [B, T, In], h0 [D, B, H], per direction (w_ih, w_hh, b_ih, b_hh)), detached

    def targets(self) -> list[torch.Tensor]:
        """The tensors whose gradients the probe needs."""
        if self.states is not None:
            return [h for direction in self.states for h in direction]
        return [self.out, self.z, self.final]

    @torch.no_grad()
    def hidden_grads(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        """From the gradients of targets() (same order; None = no gradient reached it):
        per direction, dL/dh_t [B, T, H]."""
        if self.states is not None:
            out, k = [], 0
            for direction in self.states:
                g = [grads[k + t] if grads[k + t] is not None else torch.zeros_like(h)
                     for t, h in enumerate(direction)]
                k += len(direction)
                out.append(torch.stack(g, dim=1))
            return out
        d_out, d_z, d_final = (g if g is not None else torch.zeros_like(t)
                               for g, t in zip(grads, (self.out, self.z, self.final)))
        if self.gru is not None:
            return self._gru_hidden_grads(d_out, d_z, d_final)
        H = self.hidden
        forward = d_out[..., :H].clone()
        forward[:, :-1] += d_z[:, 1:, :H]  # h_t feeds a_{t+1}
        forward[:, -1] += d_final[0]
        result = [forward]
        if self.directions == 2:
            reverse = d_out[..., H:].clone()
            reverse[:, 1:] += d_z[:, :-1, H:]  # read backwards: h_t feeds a_{t-1}
            reverse[:, 0] += d_final[1]
            result.append(reverse)
        return result

    def _gru_hidden_grads(self, d_out, d_z, d_final) -> list[torch.Tensor]:
        x, h0, weights = self.gru
        H, T = self.hidden, x.shape[1]
        out = self.out.detach()
        result = []
        for d, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            own = out[..., d * H:(d + 1) * H]  # [B, T, H]: this direction's h_t
            # the state each step reads: forward h_{t-1} (h0 first), reverse h_{t+1} (h0 last)
            if d == 0:
                prev = torch.cat([h0[d].unsqueeze(1), own[:, :-1]], dim=1)
            else:
                prev = torch.cat([own[:, 1:], h0[d].unsqueeze(1)], dim=1)
            gi = F.linear(x, w_ih, b_ih)  # [B, T, 3H]: r, z, n
            gh = F.linear(prev, w_hh, b_hh)
            reset = torch.sigmoid(gi[..., :H] + gh[..., :H])
            update = torch.sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
            da = d_z[..., d * 3 * H:(d + 1) * 3 * H]  # [B, T, 3H]: dL/d pre-activations at each step
            gates = torch.cat([da[..., :2 * H], reset * da[..., 2 * H:]], dim=-1)
            through_gates = gates @ w_hh  # [B, T, H]: into the state step t read, via the gates
            g = d_out[..., d * H:(d + 1) * H].clone()  # dL/dout_t: the direct part
            if d == 0:  # h_t is read by step t+1
                g[:, :-1] += through_gates[:, 1:]
                g[:, -1] += d_final[d]
                for t in range(T - 2, -1, -1):  # the z * h path: a recurrence, one op a step
                    g[:, t].addcmul_(update[:, t + 1], g[:, t + 1])
            else:  # read backwards: h_t is read by step t-1
                g[:, 1:] += through_gates[:, :-1]
                g[:, 0] += d_final[d]
                for t in range(1, T):
                    g[:, t].addcmul_(update[:, t - 1], g[:, t - 1])
            result.append(g)
        return result


@dataclass
class PairedProbe:
    """The exact probe's record of a bidirectional layer over padded rows: its directions
    ran as two forward runs (``reverse`` over the rows flipped by ``align``), each with
    a one-direction LayerProbe; the reverse one's dL/dh_t is flipped back to row order."""

    forward: LayerProbe
    reverse: LayerProbe
    align: RowAlignment

    def targets(self) -> list[torch.Tensor]:
        return self.forward.targets() + self.reverse.targets()

    @torch.no_grad()
    def hidden_grads(self, grads: list[torch.Tensor | None]) -> list[torch.Tensor]:
        n = len(self.forward.targets())
        return self.forward.hidden_grads(grads[:n]) + [self.align.unflip(self.reverse.hidden_grads(grads[n:])[0])]


def layer_kernel(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state=None, align: RowAlignment | None = None,
                 probe: bool = False):
    """A single-layer module's fused kernel called with its own parameters: for the exact
    probe (``probe``, see LayerProbe) and for a bidirectional layer over padded rows
    (``align``: the reverse direction runs forwards over the flipped rows, in a second
    call; see RowAlignment). x [B, T, In] -> (output [B, T, D*H] in row order, final state
    as the module returns it, LayerProbe / PairedProbe or None). Over padded rows the
    finals are those after the padding; nothing reads them (summaries read the outputs)."""
    ops = cells.ops(cell)
    directions = ops.directions(rnn)
    if align is None or len(directions) == 1:
        return ops.kernel(directions, x, state, rnn.training, probe)
    out, final, (probe_f, probe_r) = _by_halves(
        lambda dirs, seq, st: ops.kernel(dirs, seq, st, rnn.training, probe), cell, directions, x, state, align)
    return out, final, PairedProbe(probe_f, probe_r, align) if probe else None


def kernel_probe_layer(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state=None, align: RowAlignment | None = None):
    """The exact probe's forward of one layer through its kernel (see LayerProbe): x [B, T,
    In] -> (output [B, T, D*H], final state as the module returns it, its probe record)."""
    return layer_kernel(rnn, cell, x, state, align, probe=True)


def unrolled_probe_layer(rnn: nn.RNNBase, cell: str, x: torch.Tensor, state=None,
                         align: RowAlignment | None = None):
    """The exact probe's forward of one layer as the step-by-step replica: as
    kernel_probe_layer, the record holding every h_t."""
    out, final, states = unrolled_layer(rnn, cell, x, state, align=align)
    H = rnn.hidden_size
    if align is not None and len(states) == 2:
        recorded = PairedProbe(LayerProbe(hidden=H, directions=1, states=states[:1]),
                               LayerProbe(hidden=H, directions=1, states=states[1:]), align)
    else:
        recorded = LayerProbe(hidden=H, directions=len(states), states=states)
    return out, final, recorded


# ----------------------------------------------------------------------------- stacks


class RecurrentStack(nn.Module):
    """A stack of single-layer recurrent modules with dropout after each.

    ``fused``: when set, a forward that records nothing (no taps, not unrolled) of a
    stack of identical layers runs as ONE multi-layer kernel over the same parameters,
    as ``nn.LSTM(num_layers=L)`` would. On a GPU the fused cuDNN kernel overlaps the
    layers (layer l+1 reads step t while layer l computes step t+1), which a stack of
    single-layer calls cannot; the trainer sets it for the steps where that is faster
    and nothing at the layer boundaries is observed. The numbers are the same up to
    rounding; with dropout, the masks between layers are drawn by the kernel instead."""

    def __init__(self, layers: list[LayerSpec], input_size: int):
        super().__init__()
        self.specs = list(layers)
        self.rnns = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        for layer in layers:
            self.rnns.append(_make_rnn(layer, input_size))
            self.dropouts.append(nn.Dropout(layer.dropout))
            input_size = layer.hidden_size * (2 if layer.bidirectional else 1)
        self.output_size = input_size
        self.fused = False
        # The exact probe's route: True = every layer through its kernel, False = every
        # layer unrolled (the reference replica), None = each cell's default for the
        # device (CellOps.probe_through_kernel: the kernel, except GRU layers on the CPU).
        # A cell without a kernel (a step cell) always takes the replica.
        self.kernel_probe: bool | None = None
        first = self.specs[0]
        # one multi-layer kernel: same cell, width and direction everywhere, and one
        # dropout rate between the layers (the kernel takes one); the top layer's own
        # dropout is applied after it, as in the stack
        self.fusable = len(self.specs) > 1 and cells.ops(first.cell).fusable and all(
            (l.cell, l.hidden_size, l.bidirectional) == (first.cell, first.hidden_size, first.bidirectional)
            for l in self.specs) and len({l.dropout for l in self.specs[:-1]}) == 1
        self.bidirectional = any(l.bidirectional for l in self.specs)

    def _fused_forward(self, x: torch.Tensor, initial: list | None):
        """The whole stack in one multi-layer kernel call (its cell's). x [B, T, In] -> as forward()."""
        return cells.ops(self.specs[0].cell).fused_stack(self, x, initial)

    def alignment(self, x: torch.Tensor, lengths: torch.Tensor | None) -> RowAlignment | None:
        """What forward needs to read x [B, T, In] with rows of these lengths [B] (None:
        nothing, when there are no lengths or no bidirectional layer)."""
        if lengths is None or not self.bidirectional:
            return None
        return RowAlignment.of(lengths, x.shape[1], x.device)

    def forward(self, x: torch.Tensor, initial: list | None = None, taps: list | None = None,
                unrolled_states: list | None = None, align: RowAlignment | None = None,
                initials: list | None = None):
        """x: [B, T, In] -> (output [B, T, D*H_top], final states per layer).

        taps: if a list, each layer's input sequence is appended to it.
        initials: if a list, each layer's initial state (None: zeros) is appended to it.
        unrolled_states: if a list, the exact probe's forward: each layer's LayerProbe is
        appended to it (through the layer's kernel with the probe input, or step by
        step: see ``kernel_probe``).
        align: the rows are padded (RowAlignment): bidirectional layers read each row's
        reverse direction from its last real step."""
        if self.fused and self.fusable and taps is None and unrolled_states is None and align is None:
            return self._fused_forward(x, initial)
        finals = []
        for i, (rnn, drop) in enumerate(zip(self.rnns, self.dropouts)):
            if taps is not None:
                taps.append(x)
            state = initial[i] if initial is not None else None
            if initials is not None:
                initials.append(state)
            if unrolled_states is not None:
                cell = self.specs[i].cell
                ops = cells.ops(cell)
                through_kernel = self.kernel_probe
                if through_kernel is None:
                    through_kernel = ops.probe_through_kernel(x.device)
                through_kernel = through_kernel and ops.kernel is not None  # a step cell: the replica
                probe_layer = kernel_probe_layer if through_kernel else unrolled_probe_layer
                x, final, recorded = probe_layer(rnn, cell, x, state, align)
                unrolled_states.append(recorded)
            else:  # (a unidirectional layer ignores the alignment: it is its own module call)
                x, final = rnn(x, state, align=align)
            if drop.p:  # (a zero-rate dropout is still a dispatched op)
                x = drop(x)
            finals.append(final)
        return x, finals


def summarise(outputs: torch.Tensor, bidirectional: bool, lengths: torch.Tensor | None) -> torch.Tensor:
    """The sequence's summary vector from a stack's output [B, T, D*H] -> [B, D*H].

    Forward direction: the state after the last real step; backward direction: its state
    after reading back to step 0 (which has then seen the whole sequence)."""
    B, T, W = outputs.shape
    if lengths is None:
        last = outputs[:, -1]
    else:
        index = (lengths.to(outputs.device).long() - 1).clamp(0, T - 1)
        last = outputs[torch.arange(B, device=outputs.device), index]
    if not bidirectional:
        return last
    H = W // 2
    return torch.cat([last[:, :H], outputs[:, 0, H:]], dim=-1)


# ----------------------------------------------------------------------------- input side


class FrameEncoder(nn.Module):
    """Frames [..., C, H, W] -> vectors [..., P]: flatten + linear, or a small conv stack;
    'frames_grid': the frames as they are, flattened [..., C*H*W] (convolutional cells)."""

    def __init__(self, kind: str, frame_shape: tuple[int, int, int], projection: int, channels: list[int]):
        super().__init__()
        self.frame_shape = tuple(frame_shape)
        c, h, w = frame_shape
        blocks: list[nn.Module] = []
        if kind == "frames_grid":
            self.conv = nn.Sequential()
            self.proj = nn.Identity()
            return
        if kind == "frames_conv":
            prev, hh, ww = c, h, w
            for ch in channels:
                blocks += [nn.Conv2d(prev, ch, 3, padding=1), nn.ReLU(),
                           nn.MaxPool2d((2 if hh >= 2 else 1, 2 if ww >= 2 else 1))]
                prev, hh, ww = ch, max(hh // 2, 1), max(ww // 2, 1)
            oc, oh, ow = conv_output_shape(frame_shape, channels)
            flat = oc * oh * ow
        else:
            flat = c * h * w
        self.conv = nn.Sequential(*blocks)
        self.proj = nn.Linear(flat, projection)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        lead = frames.shape[:-3]
        x = frames.reshape(-1, *frames.shape[-3:])  # [N, C, H, W]
        x = self.conv(x).flatten(1)
        return self.proj(x).reshape(*lead, -1)


class WordCharEmbedding(nn.Module):
    """The 'embedding_chars' input: x [B, T, 1 + C] long (column 0 the word id, columns
    1.. the word's character ids, 0 = padding) -> [B, T, E + P]: the word's embedding
    next to a char-CNN summary (max over the word's characters of a width-3 convolution
    with P filters; Ma & Hovy 2016), which gives rare and unseen words a vector from
    their spelling (suffixes, capitals, digits, hyphens)."""

    def __init__(self, vocab_size: int, embedding_dim: int, char_vocab_size: int, char_dim: int, filters: int):
        super().__init__()
        self.words = nn.Embedding(vocab_size, embedding_dim)
        # padding_idx: the pad character's vector is zero, exactly what the convolution's
        # own zero padding puts at a word's ends, so how wide x is padded never matters
        self.chars = nn.Embedding(char_vocab_size, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, CHAR_CONV_WIDTH, padding=CHAR_CONV_WIDTH // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C1 = x.shape
        words = self.words(x[..., 0])  # [B, T, E]
        chars = x[..., 1:].reshape(B * T, C1 - 1)  # [N, C]
        feats = self.conv(self.chars(chars).transpose(1, 2))  # [N, P, C]
        real = (chars != 0).unsqueeze(1)  # [N, 1, C]: padding never wins the max
        feats = feats.masked_fill(~real, float("-inf")).amax(dim=-1)  # [N, P]
        feats = torch.where(torch.isfinite(feats), feats, torch.zeros_like(feats))  # all-padding words -> 0
        return torch.cat([words, feats.reshape(B, T, -1)], dim=-1)


def input_width(spec: ModelSpec, io: ModelIO | None = None) -> int:
    """Width of the vectors the input side feeds to the first recurrent layer."""
    inp = spec.input
    if inp.kind == "frames_grid":
        c, h, w = io.frame_shape
        return c * h * w
    if inp.kind == "embedding":
        return inp.embedding_dim
    if inp.kind == "embedding_chars":
        return inp.embedding_dim + inp.projection_size
    return inp.projection_size


def _input_module(model: ModelSpec, io: ModelIO) -> nn.Module:
    inp = model.input
    if inp.kind == "embedding":
        return nn.Embedding(io.vocab_size, inp.embedding_dim)
    if inp.kind == "embedding_chars":
        return WordCharEmbedding(io.vocab_size, inp.embedding_dim, io.char_vocab_size,
                                 inp.char_embedding_dim, inp.projection_size)
    if inp.kind == "linear":
        return nn.Linear(io.feature_size, inp.projection_size)
    return FrameEncoder(inp.kind, io.frame_shape, inp.projection_size, inp.conv_channels)


class StateBridge(nn.Module):
    """A vector [B, S] -> initial state(s) of each layer of a stack: tanh(W v + b).

    ``normalise``: v is layer-normalised first (no parameters of its own), so the scale of
    whatever produced it (an image encoder's features, a class embedding) cannot push
    tanh into saturation, where the states carry little of v and pass back almost no
    gradient. On the built-in captioning preset that takes exact-match captions from 17%
    to 93% (mean of three seeds; bench/quality.py --only captions --seeds 3)."""

    def __init__(self, source_size: int, layers: list[LayerSpec], normalise: bool = False):
        super().__init__()
        self.normalise = normalise
        self.source_size = source_size
        self.cells = [l.cell for l in layers]
        self.hidden = [l.hidden_size for l in layers]
        self.state_counts = [cells.get(l.cell).state_count for l in layers]
        self.maps = nn.ModuleList(
            nn.Linear(source_size, k * l.hidden_size) for k, l in zip(self.state_counts, layers)
        )

    def forward(self, v: torch.Tensor) -> list:
        if self.normalise:
            v = F.layer_norm(v, (self.source_size,))
        states = []
        for k, proj in zip(self.state_counts, self.maps):
            s = torch.tanh(proj(v)).unsqueeze(0)  # [1, B, k*H]
            if k > 1:  # e.g. an LSTM's (h, c)
                states.append(tuple(part.contiguous() for part in s.chunk(k, dim=-1)))
            else:
                states.append(s)
        return states


class Head(nn.Module):
    def __init__(self, in_size: int, hidden: int, out_size: int):
        super().__init__()
        self.hidden = nn.Linear(in_size, hidden) if hidden else None
        self.out = nn.Linear(hidden or in_size, out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hidden is not None:
            x = torch.tanh(self.hidden(x))
        return self.out(x)


class ConvHead(nn.Module):
    """The decoder after convolutional cells: the top layer's feature maps [B, T, c*H*W]
    -> frames [B, T, C_out*H*W] by k x k convolutions (model.conv_kernel, 'same' padding), with an
    optional hidden layer of ``hidden`` maps (tanh) as Head has."""

    def __init__(self, channels: int, hidden: int, out_channels: int, grid: tuple[int, int],
                 k: int = conv_cells.KERNEL):
        super().__init__()
        self.grid = tuple(int(g) for g in grid)
        self.channels = channels
        self.hidden = nn.Conv2d(channels, hidden, k, padding=k // 2) if hidden else None
        self.out = nn.Conv2d(hidden or channels, out_channels, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        maps = x.reshape(-1, self.channels, *self.grid)  # [N, c, H, W]
        if self.hidden is not None:
            maps = torch.tanh(self.hidden(maps))
        return self.out(maps).reshape(*lead, -1)


# ----------------------------------------------------------------------------- the model


@dataclass
class Probe:
    """What one forward pass recorded for the gradient-through-time instrumentation."""

    taps: list[torch.Tensor] = field(default_factory=list)  # per layer: input [B, T, In]
    # per layer: what the exact probe needs of it (its forward with unrolled=True only)
    states: list[LayerProbe | PairedProbe] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    # per layer: the state it started from (None: zeros), recorded with the taps
    initials: list = field(default_factory=list)
    # per layer: the true lengths [B] of its padded rows (None: every row is whole), with the taps
    lengths: list = field(default_factory=list)


# alpha = EXTRAPOLATE_GAIN * its parameter (RecurrentModel.extrapolation says why)
EXTRAPOLATE_GAIN = 35.0


class RecurrentModel(nn.Module):
    """Input side -> recurrent stack(s) in the chosen topology -> head.

    forward(x, y_in=None, lengths=None):
      many_to_one:     x [B, T, ...]            -> [B, O]
      many_to_many:    x [B, T, ...]            -> [B, T, O]
      encoder_decoder: x [B, S, ...], y_in [B, T] (teacher forcing) -> [B, T, O]
      one_to_many:     x [B, ...] (one item),   y_in [B, T]          -> [B, T, O]
    ``lengths`` [B] are the true lengths of padded input sequences.
    """

    def __init__(self, spec: ModelSpec, io: ModelIO):
        super().__init__()
        self.spec = spec
        self.io = io
        self.topology = spec.topology
        self.input_side = _input_module(spec, io)
        width = input_width(spec, io)
        with conv_cells.frame_grid(io.frame_shape, spec.conv_kernel):  # convolutional cells' shapes are the frames'
            self._build(spec, io, width)
        self.tap_inputs = False
        # the probe's forward (unrolled) also records each layer's input and initial state
        # in probe.taps / probe.initials, without the taps' gradient hooks (engine/dynamics.py)
        self.record_inputs = False
        self.probe: Probe | None = None
        initialise(self, spec)
        if self.residual:
            with torch.no_grad():  # an untrained model predicts "no change": it copies the last frame exactly
                self.head.out.weight.zero_()
                self.head.out.bias.zero_()
        if self.extrapolate:
            # alpha = EXTRAPOLATE_GAIN * extrapolate_raw, one per colour channel [C], from 0
            self.extrapolate_raw = nn.Parameter(torch.zeros(io.frame_shape[0]))

    def _build(self, spec: ModelSpec, io: ModelIO, width: int) -> None:
        self.decoder = None
        self.bridge = None
        self.target_embedding = None
        self.attention_in = None
        self.attention_out = None
        self.copy_gate = None
        self.last_attention: torch.Tensor | None = None
        if self.topology == "one_to_many":
            # The generator reads its previous token; the single input only sets its state.
            self.target_embedding = nn.Embedding(io.output_vocab_size, spec.input.embedding_dim)
            self.encoder = RecurrentStack(spec.layers, spec.input.embedding_dim)
            self.bridge = StateBridge(width, spec.layers, spec.bridge_norm)
            top = self.encoder.output_size
        else:
            self.encoder = RecurrentStack(spec.layers, width)
            top = self.encoder.output_size
        if self.topology == "encoder_decoder":
            enc_width = top
            self.target_embedding = nn.Embedding(io.output_vocab_size, spec.input.embedding_dim)
            self.decoder = RecurrentStack(spec.decoder_layers, spec.input.embedding_dim)
            self.bridge = StateBridge(enc_width, spec.decoder_layers, spec.bridge_norm)
            top = self.decoder.output_size
            if spec.attention:
                self.attention_in = nn.Linear(enc_width, top, bias=False)
                self.attention_out = nn.Linear(top + enc_width, top)
            if spec.copy:
                if len(io.source_to_target) != io.vocab_size:
                    raise ValueError("model.copy: this task maps no source token to an output token "
                                     "(copying needs token ids in and out, e.g. translation or a chatbot)")
                # p_gen from [context He; decoder output Hd; input embedding E] (See et al. 2017)
                self.copy_gate = nn.Linear(enc_width + top + spec.input.embedding_dim, 1)
                # [source vocab] -> target id; rebuilt from the task's vocabularies, not saved
                self.register_buffer("source_to_target", torch.tensor(io.source_to_target, dtype=torch.long),
                                     persistent=False)
                # The extended vocabulary (See et al. 2017): a source id Vs + j (Vs = io.vocab_size) is
                # the j-th distinct word of its message that the source vocabulary lacks. The encoder
                # reads it as <unk>; the copy writes it as output id Vt + j (Vt = the output
                # vocabulary), which the task turns back into the word. Output ids Vt + j fed back
                # to the decoder are read as the target's <unk>.
                self.source_unk = io.unk_id
                self.target_unk = io.source_to_target[io.unk_id] if 0 <= io.unk_id < io.vocab_size else 0
        conv_head = spatial_head(spec, io)
        if conv_head is not None:
            self.head = ConvHead(*conv_head, io.frame_shape[1:], spec.conv_kernel)
        else:
            self.head = Head(top, spec.head.hidden_size, io.output_size)
        self.residual = spec.head.residual
        if self.residual and (io.frame_shape is None or io.output_size != _prod(io.frame_shape)):
            raise ValueError(f"model.head.residual: the output ({io.output_size} values per step) must be one "
                             f"frame ({io.frame_shape}) to add the input frame to it")
        # The head's output is a change in units of the training data's typical change (a
        # scalar, the task's; not saved: the run's task artifacts hold it). Without it Adam,
        # whose step ignores the gradient's scale, moves the zero-initialised output by
        # ~lr * fan-in per step: a frame change of 0.1 on footage that changes by 0.01.
        self.register_buffer("delta_scale", torch.tensor(float(io.delta_scale)), persistent=False)
        self.extrapolate = spec.head.extrapolate and self.residual

    # -- stacks in order, named as the spec names them --------------------------------
    def named_stacks(self) -> list[tuple[str, RecurrentStack]]:
        if self.decoder is not None:
            return [("layers", self.encoder), ("decoder_layers", self.decoder)]
        return [("layers", self.encoder)]

    def set_fused_stacks(self, on: bool) -> None:
        """Run stacks of identical layers as one multi-layer kernel whenever a forward
        records nothing at the layer boundaries (see RecurrentStack)."""
        for _prefix, stack in self.named_stacks():
            stack.fused = on

    def fused_state(self) -> tuple[bool, ...]:
        """Per stack, whether a forward that records nothing runs it fused."""
        return tuple(stack.fused and stack.fusable for _prefix, stack in self.named_stacks())

    def recurrent_layers(self) -> list[tuple[str, LayerSpec, nn.RNNBase]]:
        out = []
        for prefix, stack in self.named_stacks():
            for i, (spec, rnn) in enumerate(zip(stack.specs, stack.rnns)):
                out.append((f"{prefix}.{i}", spec, rnn))
        return out

    def _run(self, stack: RecurrentStack, x, initial, probe: Probe | None, unrolled: bool, prefix: str,
             lengths: torch.Tensor | None = None):
        taps = probe.taps if probe is not None and (self.tap_inputs or self.record_inputs) else None
        states = probe.states if probe is not None and unrolled else None
        if probe is not None:
            probe.layer_names += [f"{prefix}.{i}" for i in range(len(stack.rnns))]
            if taps is not None:
                probe.lengths += [lengths] * len(stack.rnns)
        if taps is not None and torch.is_grad_enabled() and x.is_floating_point() and not x.requires_grad:
            # raw frames feed the first layer ('frames_grid'): a leaf that asks for its
            # gradient, so the first tap gives dL/dx_t as every other layer's does
            x = x.detach().requires_grad_()
        return stack(x, initial, taps=taps, unrolled_states=states, align=stack.alignment(x, lengths),
                     initials=probe.initials if taps is not None else None)

    def encode_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.copy_gate is not None:  # extended source ids (a message's own words, see _build) read as <unk>
            x = x.masked_fill(x >= self.io.vocab_size, self.source_unk)
        return self.input_side(x)

    def embed_target(self, tokens: torch.Tensor) -> torch.Tensor:
        """The generator's input embedding of output tokens [B, T] -> [B, T, E]; a copy
        model's extended ids (copied words its output vocabulary lacks) read as <unk>."""
        if self.copy_gate is not None:
            tokens = tokens.masked_fill(tokens >= self.target_embedding.num_embeddings, self.target_unk)
        return self.target_embedding(tokens)

    def forward(self, x: torch.Tensor, y_in: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None, unrolled: bool = False, *,
                initial_states: list | None = None, return_states: bool = False,
                previous_frame: torch.Tensor | None = None):
        """See the class docstring for shapes. many_to_one / many_to_many only (truncated
        BPTT carries the state between chunks of one long sequence):
        ``initial_states``: per recurrent layer, the state to start from, as the layer's
        module takes it (h [D, B, H], or (h, c) for an LSTM); None = zeros.
        ``return_states``: return (output, final states per layer) instead of output.
        ``previous_frame`` [B, C, H, W]: the frame before x[:, 0], for the extrapolating
        head (model.head.extrapolate) when a clip is fed in pieces; None: x[:, 0] has none."""
        if (initial_states is not None or return_states) and self.topology not in ("many_to_one", "many_to_many"):
            raise ValueError(f"initial_states/return_states are for many_to_one and many_to_many models, "
                             f"not {self.topology}")
        probe = Probe() if (self.tap_inputs or unrolled) else None
        self.probe = probe
        top_bidir = self.spec.layers[-1].bidirectional
        if self.topology == "one_to_many":
            if y_in is None:
                raise ValueError("one-to-many forward needs y_in (the previous tokens)")
            initial = self.bridge(self.encode_input(x))  # x: one item per batch row
            out, _ = self._run(self.encoder, self.embed_target(y_in), initial, probe, unrolled, "layers")
            return self.head(out)
        feats = self.encode_input(x)  # [B, T, D]
        out, finals = self._run(self.encoder, feats, initial_states, probe, unrolled, "layers", lengths)
        if self.topology == "many_to_one":
            result = self.head(summarise(out, top_bidir, lengths))
            return (result, finals) if return_states else result
        if self.topology == "many_to_many":
            result = self.head(out)  # [B, T, O]
            if self.residual:  # the change from the frame just read: x [B, T, C, H, W] -> [B, T, C*H*W]
                frames = x.to(result.dtype)
                result = result * self.delta_scale.to(result.dtype) + frames.flatten(2)
                if self.extrapolate:
                    result = result + self.extrapolation(frames, previous_frame).flatten(2)
            return (result, finals) if return_states else result
        # encoder_decoder
        if y_in is None:
            raise ValueError("encoder-decoder forward needs y_in (teacher-forced decoder inputs)")
        initial = self.bridge(summarise(out, top_bidir, lengths))
        emb = self.embed_target(y_in)  # [B, T, E]
        dec, _ = self._run(self.decoder, emb, initial, probe, unrolled, "decoder_layers")
        return self.predict(dec, emb, self.memory(out, x), lengths)[0]

    def memory(self, enc: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """What the decoder reads of the source: the encoder's outputs enc [B, S, He], and
        for a copy model (model.copy) also the source tokens' output-vocabulary ids, as a
        last channel: [B, S, He + 1] (ids as floats: exact below 2**24). Carrying the ids
        with the encoder's outputs keeps decode_step's and the ONNX step graph's inputs
        those of every attention model. An extended source id Vs + j (a word the source
        vocabulary lacks, see _build) becomes the extended output id Vt + j."""
        if self.copy_gate is None:
            return enc
        Vs, Vt = self.io.vocab_size, self.target_embedding.num_embeddings
        known = self.source_to_target[x.clamp(max=Vs - 1)]  # x [B, S] source ids -> [B, S]
        ids = torch.where(x >= Vs, x - Vs + Vt, known).to(enc.dtype)
        return torch.cat([enc, ids[..., None]], dim=-1)

    def predict(self, dec: torch.Tensor, emb: torch.Tensor, memory: torch.Tensor | None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The decoder's outputs dec [B, T, Hd] (read after the input embeddings emb
        [B, T, E]) -> (the output [B, T, O], attention weights [B, T, S] or None), given
        memory() [B, S, ...] (None: one_to_many). The training forward, decode_step and
        the ONNX step graph all end here.

        Without copy the output is the head's logits. With copy (model.copy) it is the
        log of the pointer-generator mixture (See et al. 2017), normalised log-probabilities
        (so cross-entropy, argmax, softmax and tempered sampling read it as logits):
            p(w) = p_gen p_vocab(w) + (1 - p_gen) sum_i a_i [src_i = w],
            p_gen = sigmoid(w . [context; dec; emb] + b),
        summed in log space (logsumexp of the two terms); the copy term is floored at
        1e-30 so words absent from the source give log(0) neither as a value nor a gradient.
        A copy model's output has V + S entries [B, T, V + S] (S = memory's source length):
        id V + j is the extended vocabulary's j-th word (a message word the vocabularies
        lack, see _build), which only the copy term can write (the generator's part is 0
        there); S slots are always enough, as a message has at most S such words."""
        if memory is None:
            return self.head(dec), None
        if self.copy_gate is None:
            out, weights = self.attend(dec, memory, lengths)
            return self.head(out), weights
        enc, src = memory[..., :-1], memory[..., -1].long()  # [B, S, He], [B, S] output ids
        out, weights = self.attend(dec, enc, lengths)  # weights [B, T, S]
        context = weights @ enc  # [B, T, He]
        gate = self.copy_gate(torch.cat([context, dec, emb], dim=-1)).float()  # [B, T, 1]: logit of p_gen
        vocab = torch.log_softmax(self.head(out).float(), dim=-1)  # [B, T, V]
        S = src.shape[1]
        vocab = F.pad(vocab, (0, S), value=float("-inf"))  # [B, T, V + S]: the extended ids, copy only
        # one-hot of the source's ids [B, S, V + S]: a matmul, not a scatter, so ONNX exports it
        onehot = (src[..., None] == torch.arange(vocab.shape[-1], device=src.device)).to(weights.dtype)
        copied = (weights @ onehot).float()  # [B, T, V + S]: attention mass on each output token
        terms = torch.stack([F.logsigmoid(gate) + vocab, F.logsigmoid(-gate) + copied.clamp_min(1e-30).log()])
        return torch.logsumexp(terms, dim=0), weights

    def extrapolation(self, frames: torch.Tensor, previous: torch.Tensor | None = None) -> torch.Tensor:
        """The extrapolating head's linear part: alpha * (x_t - x_{t-1}) for frames
        [B, T, C, H, W] -> [B, T, C, H, W], alpha [C] learned. ``previous`` [B, C, H, W] is the
        frame before frames[:, 0]; None: the first frame is its own predecessor (no motion).

        Why a gain: Adam moves each weight by about lr per step whatever its gradient, and
        alpha lives on the scale of 1 (0: copy the last frame, 1: constant velocity); at
        lr 1e-3 alone it would need ~300 steps to reach the 0.3-0.7 that least squares finds
        on the shared clips, more than a short clip's pass cap allows (50 steps on 36 frames).
        35: alpha crosses 0.7 in ~20 steps; on 25-50-step runs gains of 25-100 end within
        a few percent of each other (BENCHMARKS.md, next-frame video), 35 the most even."""
        first = frames[:, :1] if previous is None else previous.to(frames.dtype)[:, None]
        before = torch.cat([first, frames[:, :-1]], dim=1)  # [B, T, C, H, W]: x_{t-1}
        alpha = (self.extrapolate_raw * EXTRAPOLATE_GAIN).to(frames.dtype)  # [C]
        return alpha[:, None, None] * (frames - before)

    def attend(self, dec: torch.Tensor, enc: torch.Tensor, lengths: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Luong attention of the decoder's outputs over the encoder's: dec [B, T, Hd],
        enc [B, S, He], lengths [B] (the sources' true lengths: padding gets no weight)
        -> (tanh(W [dec; context]) [B, T, Hd], weights [B, T, S], each row summing to 1).
        A model without attention returns (dec, None). The weights are also kept,
        detached, in ``last_attention``."""
        if self.attention_in is None:
            return dec, None
        scores = dec @ self.attention_in(enc).transpose(1, 2)  # [B, T, S]
        if lengths is not None:
            S = enc.shape[1]
            pad = torch.arange(S, device=enc.device)[None, :] >= lengths.to(enc.device)[:, None]  # [B, S]
            scores = scores.masked_fill(pad[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        self.last_attention = weights.detach()
        context = weights @ enc  # [B, T, He]
        return torch.tanh(self.attention_out(torch.cat([dec, context], dim=-1))), weights

    # -- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, x: torch.Tensor, max_len: int, lengths: torch.Tensor | None = None,
                 temperature: float = 0.0, top_k: int = 0, generator: torch.Generator | None = None,
                 no_repeat_ngram: int = 0, min_length: int = 0, banned: Sequence[int] = (),
                 no_repeat_token: bool = False, repeatable: Sequence[int] = ()
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode token by token (encoder_decoder / one_to_many). ``no_repeat_ngram`` n > 0:
        no row writes an n-gram twice (greedy decoding's "a b, a b, a b ..." loops);
        ``min_length``, ``banned``, ``no_repeat_token``, ``repeatable``: see decoding_rules.

        Returns (tokens [B, L] without BOS, stopping rows at EOS (padded with pad_id),
        attention [B, L, S] when the model has attention, else None)."""
        B = x.shape[0]
        device = next(self.parameters()).device
        _, state, enc = self.decoding_start(x, lengths)
        token = torch.full((B, 1), self.io.bos_id, dtype=torch.long, device=device)
        done = torch.zeros(B, dtype=torch.bool, device=device)
        tokens, attn = [], []
        for _ in range(max_len):
            logits, state, weights = self.decode_step(token[:, 0], state, enc, lengths)  # [B, V]
            if weights is not None:
                attn.append(weights)
            written = torch.cat(tokens, dim=1) if tokens else token[:, :0]  # [B, t]
            logits = decoding_rules(logits, written, done, self.io.eos_id, no_repeat_ngram, min_length, banned,
                                    no_repeat_token, repeatable)
            token = sample_logits(logits, temperature, top_k, generator).unsqueeze(1)
            token = token.masked_fill(done[:, None], self.io.pad_id)
            tokens.append(token)
            done |= token[:, 0] == self.io.eos_id
            if bool(done.all()):
                break
        attention = torch.stack(attn, dim=1) if attn else None
        return torch.cat(tokens, dim=1), attention

    def decoding_start(self, x: torch.Tensor, lengths: torch.Tensor | None):
        """The generating stack, its initial state (per layer) and the encoder's outputs
        as memory() gives them, [B, S, He] (None for one_to_many), before the first output token."""
        if self.topology not in ("encoder_decoder", "one_to_many"):
            raise ValueError(f"decoding is for generating topologies, not {self.topology}")
        if self.topology == "one_to_many":
            return self.encoder, self.bridge(self.encode_input(x)), None
        feats = self.encode_input(x)
        enc, _ = self.encoder(feats, align=self.encoder.alignment(feats, lengths))
        state = self.bridge(summarise(enc, self.spec.layers[-1].bidirectional, lengths))
        return self.decoder, state, self.memory(enc, x)

    def decode_step(self, tokens: torch.Tensor, state, enc: torch.Tensor | None = None,
                    lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, list, torch.Tensor | None]:
        """One step of step-wise decoding (encoder_decoder / one_to_many), with attention
        when the model has it: the way generate(), beam_search() and a streamed reply
        write their outputs one token at a time.

        ``tokens`` [B]: the token each row wrote last (<bos> at the start, ``io.bos_id``);
        ``state``: the generating stack's per-layer state, from decoding_start() or the
        previous step; ``enc`` and ``lengths`` [B]: the memory from decoding_start() (the
        encoder's outputs [B, S, He], see memory()) and the sources' true lengths (None for
        one_to_many).
        Returns (logits [B, V] for the next token (a copy model's: [B, V + S], ids V + j
        the source's words outside the vocabulary, see predict), the state after this step,
        attention weights [B, S] over the source for this step, or None)::

            _, state, enc = model.decoding_start(x, lengths)
            token = torch.full((B,), model.io.bos_id)
            for _ in range(max_len):
                logits, state, weights = model.decode_step(token, state, enc, lengths)
                token = logits.argmax(-1)
        """
        stack = self.decoder if self.topology == "encoder_decoder" else self.encoder
        emb = self.embed_target(tokens[:, None])  # [B, 1, E]
        out, state = stack(emb, state)  # [B, 1, H]
        logits, weights = self.predict(out, emb, enc, lengths)
        return logits[:, -1], state, weights[:, 0] if weights is not None else None  # [B, V], [B, S]

    @torch.no_grad()
    def beam_search(self, x: torch.Tensor, width: int, max_len: int, lengths: torch.Tensor | None = None,
                    length_penalty: float = 1.0, no_repeat_ngram: int = 0, min_length: int = 0,
                    banned: Sequence[int] = (), no_repeat_token: bool = False, repeatable: Sequence[int] = ()
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Beam-search decoding (encoder_decoder / one_to_many): the ``width`` prefixes
        with the best log-probability / length**length_penalty are kept at each step and
        the best finished one is the output (see the module's beam_search). Width 1 is
        greedy decoding. ``no_repeat_ngram`` n > 0: no hypothesis writes an n-gram twice.

        Returns like generate(): (tokens [B, L] without BOS, ending at EOS, padded with
        pad_id; attention [B, L, S] of the chosen hypothesis, or None)."""
        if width < 1:
            raise ValueError(f"the beam width must be 1 or more, got {width}")
        B = x.shape[0]
        _, state, enc = self.decoding_start(x, lengths)
        # Every row's beams side by side: row b's beams are rows b*K .. b*K+K-1.
        K = width
        state = reorder_state(state, torch.arange(B, device=x.device).repeat_interleave(K))
        enc_k = enc.repeat_interleave(K, dim=0) if enc is not None else None  # [B*K, S, He]
        lengths_k = lengths.repeat_interleave(K) if lengths is not None else None

        def step(tokens: torch.Tensor, state):
            logits, state, attn = self.decode_step(tokens, state, enc_k, lengths_k)  # [N, V], [N, S]
            return torch.log_softmax(logits.float(), dim=-1), state, attn

        return beam_search(step, state, B, K, max_len, self.io.bos_id, self.io.eos_id, self.io.pad_id,
                           length_penalty, no_repeat_ngram, min_length, banned, no_repeat_token, repeatable)


def reorder_state(state, index: torch.Tensor):
    """A stack's per-layer state (h [D, N, H], or (h, c) for an LSTM) with its batch rows
    taken at ``index`` [M] -> rows [M]."""
    return [tuple(s.index_select(1, index) for s in layer) if isinstance(layer, tuple)
            else layer.index_select(1, index) for layer in state]


def decoding_rules(logits: torch.Tensor, written: torch.Tensor, done: torch.Tensor, eos: int,
                   no_repeat_ngram: int = 0, min_length: int = 0, banned: Sequence[int] = (),
                   no_repeat_token: bool = False, repeatable: Sequence[int] = ()) -> torch.Tensor:
    """The rules every step-wise decoding (greedy, sampled, beam, a streamed reply) obeys,
    as -inf on the next token's logits [N, V] of the live rows (not ``done`` [N]) given
    what each row has written, ``written`` [N, t]: no n-gram twice (``no_repeat_ngram``
    n > 0), no <eos> before ``min_length`` tokens, never a ``banned`` id (e.g. <unk>,
    which is never the right word to show), and with ``no_repeat_token`` never the token
    a row wrote last again ("color color", which no 3-gram rule stops), except the
    ``repeatable`` ids (punctuation: "...")."""
    if no_repeat_ngram > 0 and written.shape[1]:
        bans = repeated_ngram_bans(written, done, no_repeat_ngram)  # [M, 2]
        logits = logits.index_put((bans[:, 0], bans[:, 1]), torch.tensor(float("-inf"), device=logits.device))
    live = ~done.to(logits.device)
    if written.shape[1] < min_length:
        logits = logits.clone()
        logits[live, eos] = float("-inf")
    if banned:
        ids = torch.tensor(list(banned), device=logits.device)
        logits = logits.clone()
        logits[live.nonzero()[:, 0][:, None], ids[None, :]] = float("-inf")
    if no_repeat_token and written.shape[1]:
        last = written[:, -1].to(logits.device)  # [N]
        rows = live & (last < logits.shape[1])  # a done row's last token is padding: left alone
        if repeatable:
            rows &= ~torch.isin(last, torch.tensor(list(repeatable), device=logits.device))
        index = rows.nonzero()[:, 0]  # [M]
        ruled = logits.index_put((index, last[index]), torch.tensor(float("-inf"), device=logits.device))
        # the rule yields where it would leave a row no token at all (a tiny vocabulary under the
        # other rules: sampling would fail on all -inf)
        stuck = ~torch.isfinite(ruled).any(dim=-1) & torch.isfinite(logits).any(dim=-1)  # [N]
        logits = torch.where(stuck[:, None], logits, ruled)
    return logits


def repeated_ngram_bans(history: torch.Tensor, done: torch.Tensor, n: int) -> torch.Tensor:
    """history [N, t] -> [M, 2] (row, token) pairs: the tokens that would end an n-gram the
    row has already written (live rows only)."""
    bans = []
    if history.shape[1] >= n - 1:
        for row, seq in enumerate(history.tolist()):
            if done[row]:
                continue
            last = tuple(seq[len(seq) - n + 1:]) if n > 1 else ()
            bans += [(row, seq[j + n - 1]) for j in range(len(seq) - n + 1) if tuple(seq[j:j + n - 1]) == last]
    return torch.tensor(bans, dtype=torch.long, device=history.device).reshape(-1, 2)


def beam_search(step, state, B: int, K: int, max_len: int, bos: int, eos: int, pad: int,
                length_penalty: float = 1.0, no_repeat_ngram: int = 0, min_length: int = 0,
                banned: Sequence[int] = (), no_repeat_token: bool = False, repeatable: Sequence[int] = ()
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Beam search over any step function, B rows of K beams each (batch rows N = B*K).

    ``step(tokens [N], state) -> (log-probabilities [N, V], state, attention [N, S] or
    None)``; ``state`` is a stack's per-layer state (reordered with reorder_state).
    Beams are ranked by log-probability / length**length_penalty (length in tokens,
    <eos> included; 0 ranks by the log-probability alone, which favours short outputs).
    A finished beam (it chose EOS) stays in the beam with its score frozen, competing
    with the live ones by that ranking, which also picks each row's output at the end.
    ``no_repeat_ngram`` n > 0: a live beam may not write an n-gram it has written before
    (stops "when you get when you get" loops); ``no_repeat_token``, ``repeatable``: see
    decoding_rules. Returns (tokens [B, L], attention [B, L, S] or None)."""
    device = state[0][0].device if isinstance(state[0], tuple) else state[0].device
    N = B * K
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # at the start the K beams are one: keep only the first
    token = torch.full((N,), bos, dtype=torch.long, device=device)
    done = torch.zeros(N, dtype=torch.bool, device=device)
    length = torch.zeros(N, device=device)
    history = torch.zeros(N, 0, dtype=torch.long, device=device)  # [N, t]
    attn_history = None  # [N, t, S]
    rows = torch.arange(B, device=device)[:, None] * K  # [B, 1]
    for _ in range(max_len):
        logp, state, attn = step(token, state)  # [N, V]
        V = logp.shape[1]
        # A finished beam can only add padding, at no cost: its score stays as it was.
        frozen = torch.full_like(logp, float("-inf"))
        frozen[:, pad] = 0.0
        logp = torch.where(done[:, None], frozen, logp)
        logp = decoding_rules(logp, history, done, eos, no_repeat_ngram, min_length, banned, no_repeat_token,
                              repeatable)
        total = scores.reshape(N, 1) + logp  # [N, V]
        # ranked by the score per length**length_penalty each candidate would have
        grown = (length + (~done).float()).clamp_min(1.0)[:, None] ** length_penalty  # [N, 1]
        _, flat = (total / grown).reshape(B, K * V).topk(K, dim=1)  # [B, K]
        scores = total.reshape(B, K * V).gather(1, flat)  # [B, K] log-probabilities
        beam = (rows + flat // V).reshape(N)  # the beam each survivor extends
        token = (flat % V).reshape(N)
        history = torch.cat([history[beam], token[:, None]], dim=1)
        if attn is not None:
            a = attn[beam][:, None]  # [N, 1, S]
            attn_history = a if attn_history is None else torch.cat([attn_history[beam], a], dim=1)
        was_done = done[beam]
        length = length[beam] + (~was_done).float()
        done = was_done | (token == eos)
        state = reorder_state(state, beam)
        if bool(done.all()):
            break
    normalised = scores.reshape(N) / length.clamp_min(1.0) ** length_penalty
    best = rows[:, 0] + normalised.reshape(B, K).argmax(dim=1)  # [B]
    tokens = history[best]
    keep = int(length[best].max())  # the longest chosen hypothesis; the rest is padding after EOS
    attention = attn_history[best][:, :keep] if attn_history is not None else None
    return tokens[:, :keep], attention


def sample_logits(logits: torch.Tensor, temperature: float = 0.0, top_k: int = 0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> token ids [B]: greedy at temperature 0, else sampled (top-k)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


# ----------------------------------------------------------------------------- init


def _scale_to_spectral_radius(block: torch.Tensor, radius: float) -> None:
    current = torch.linalg.eigvals(block.double()).abs().max().item()
    if current > 0:
        block.mul_(radius / current)


@torch.no_grad()
def initialise(model: RecurrentModel, spec: ModelSpec) -> None:
    init = spec.init
    for _name, layer, rnn in model.recurrent_layers():
        cell = cells.get(layer.cell)
        gates = cell.gates
        H = layer.hidden_size
        own = getattr(cells.ops(layer.cell), "initialise_layer", None)
        if own is not None:  # a cell whose initialisation reads model.init itself (the LRU's ring)
            own(rnn, init)
        for sfx in ("", "_reverse") if layer.bidirectional else ("",):
            w_hh = getattr(rnn, f"weight_hh_l0{sfx}", None)  # [G*H, H]
            if w_hh is None or w_hh.shape != (gates * H, H):  # a cell with recurrent weights of its own form
                continue
            b_ih = getattr(rnn, f"bias_ih_l0{sfx}", None)
            b_hh = getattr(rnn, f"bias_hh_l0{sfx}", None)
            blocks = w_hh.view(gates, H, H)
            if init.recurrent == "orthogonal":
                for g in range(gates):
                    nn.init.orthogonal_(blocks[g])
            elif init.recurrent == "identity":
                # IRNN (Le, Jaitly & Hinton 2015): W_r = I, zero biases.
                blocks.copy_(torch.eye(H).expand(gates, H, H))
                b_ih.zero_()
                b_hh.zero_()
            if init.spectral_radius is not None:
                for g in range(gates):
                    _scale_to_spectral_radius(blocks[g], init.spectral_radius)
            if cell.forget_gate is not None:
                # the forget block (an LSTM's gate order i, f, g, o: rows H..2H)
                f = cell.forget_gate
                b_ih[f * H:(f + 1) * H] = init.forget_bias
                b_hh[f * H:(f + 1) * H] = 0.0


def _prod(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def build_model(spec: ModelSpec, io: ModelIO) -> RecurrentModel:
    return RecurrentModel(spec, io)
