"""Convolutional recurrent cells for frames, whose states are feature maps.

- ``conv_lstm``: ConvLSTM (Shi et al. 2015, "Convolutional LSTM Network"): the LSTM's
  matrix products become convolutions, with the paper's peephole terms (Hadamard
  products with the cell state, one weight per channel and position):
      i = sigma(W_xi * x + W_hi * h + w_ci o c + b_i)
      f = sigma(W_xf * x + W_hf * h + w_cf o c + b_f)
      c' = f o c + i o tanh(W_xc * x + W_hc * h + b_c)
      o = sigma(W_xo * x + W_ho * h + w_co o c' + b_o),   h' = o o tanh(c')
- ``conv_gru``: ConvGRU (Ballas et al. 2016, "Delving Deeper into Convolutional Networks
  for Learning Video Representations"):
      r = sigma(W_xr * x + U_r * h + b_r),   z = sigma(W_xz * x + U_z * h + b_z)
      n = tanh(W_xn * x + U_n * (r o h) + b_n),   h' = (1 - z) o n + z o h

Where they sit: the layer reads frames as they are (``model.input.kind = "frames_grid"``:
C*H*W values per step, no projection), so the input convolution W_x * x is the encoder;
a convolutional head (workbench.engine.model.ConvHead) is the decoder back to pixels.
A layer's state is C feature maps of the frame's size, kept flattened as every cell's
state is ([B, C*H*W], channel-major), so ``model.layers.N.hidden_size`` = C * H * W
(16 maps of 16x16: 4096), and the bridge, padding, taps and the exact dL/dh_t probe
(norms over the whole spatial state) need nothing new; the step reshapes.

The frame grid is not in (input_size, hidden_size) alone: the model builder and the spec's
parameter report set it for the cells' shapes with ``frame_grid(io.frame_shape)``.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from workbench.cells import Cell, Gate, OnnxRule

# The convolutions' kernel side by default (Shi et al. use 5x5 on Moving MNIST), 'same'
# padding; model.conv_kernel sets it per model (frame_grid), odd, up to MAX_KERNEL.
KERNEL = 5
MAX_KERNEL = 15
SPATIAL = ("conv_lstm", "conv_gru")
# hidden_size of a spatial cell (C*H*W) may exceed the spec's MAX_HIDDEN for vectors
MAX_STATE = 2**20

# Values autograd keeps per step of a layer, in units of its state size (C*H*W), for the
# memory estimate: measured with torch.autograd.graph.saved_tensors_hooks on the built-in
# next-frame presets (ConvLSTM 6.9, ConvGRU 6.7; a fused LSTM keeps about 6).
SAVED_PER_STEP = 7

_GRID: ContextVar[tuple[int, int] | None] = ContextVar("workbench_conv_grid", default=None)
_KERNEL: ContextVar[int] = ContextVar("workbench_conv_kernel", default=KERNEL)


def is_spatial(cell: str) -> bool:
    return cell in SPATIAL


@contextmanager
def frame_grid(frame_shape, kernel: int = KERNEL) -> Iterator[None]:
    """Inside the block, spatial cells' shapes are for frames of ``frame_shape`` (C, H, W)
    and ``kernel`` x ``kernel`` convolutions (model.conv_kernel)."""
    grid = (int(frame_shape[1]), int(frame_shape[2])) if frame_shape and frame_shape[1] else None
    token, k_token = _GRID.set(grid), _KERNEL.set(int(kernel))
    try:
        yield
    finally:
        _GRID.reset(token)
        _KERNEL.reset(k_token)


def kernel() -> int:
    """The kernel side under the current frame_grid block."""
    return _KERNEL.get()


def geometry(input_size: int, hidden_size: int) -> tuple[int, int, int, int]:
    """(input channels, state channels, H, W) of a spatial layer under the current grid;
    ValueError saying what is wrong otherwise."""
    grid = _GRID.get()
    if grid is None:
        raise ValueError("a convolutional cell reads frames: its layer needs the frames' size (a video task)")
    h, w = grid
    n = h * w
    if hidden_size % n:
        raise ValueError(f"a convolutional cell's state is feature maps of the frame's {w}x{h} = {n} positions: "
                         f"hidden_size must be a multiple of {n} (channels x {n}, e.g. {8 * n} for 8 maps), "
                         f"got {hidden_size}")
    if input_size % n:
        raise ValueError(f"a convolutional cell reads feature maps of {w}x{h}: its input ({input_size} values) "
                         f"is not; the first layer needs model.input.kind 'frames_grid' and the layers below "
                         f"a convolutional one must be convolutional too")
    return input_size // n, hidden_size // n, h, w


def _lstm_shapes(n_in: int, hidden: int) -> dict[str, tuple[int, ...]]:
    c_in, c, h, w = geometry(n_in, hidden)
    k = kernel()
    return {"weight_ih": (4 * c, c_in, k, k), "weight_hh": (4 * c, c, k, k),
            "bias": (4 * c,), "peephole": (3, c, h, w)}


def _gru_shapes(n_in: int, hidden: int) -> dict[str, tuple[int, ...]]:
    c_in, c, h, w = geometry(n_in, hidden)
    k = kernel()
    return {"weight_ih": (3 * c, c_in, k, k), "weight_hh": (3 * c, c, k, k), "bias": (3 * c,)}


def _ops(kind: str):
    import math

    import torch
    import torch.nn.functional as F

    from workbench.cells.generic import StepOps, _Direction

    def input_conv(p, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, c_in*H*W] -> W_x * x + b for every step at once: [B, T, G*c, H, W]."""
        c_in, _c, h, w = p["grid"]
        B, T = x.shape[:2]
        wt = p["weight_ih"]  # [G*c, c_in, k, k]: the kernel is the weights' own ('same' padding)
        a = F.conv2d(x.reshape(B * T, c_in, h, w), wt, p["bias"], padding=wt.shape[-1] // 2)
        return a.reshape(B, T, *a.shape[1:])

    def lstm_cell(p, a_x: torch.Tensor, state):
        """a_x [B, 4c, H, W] (the input's part), state (h, c) each [B, c*H*W]."""
        _c_in, c, h, w = p["grid"]
        B = a_x.shape[0]
        hp, cp = (s.reshape(B, c, h, w) for s in state)
        u = p["weight_hh"]  # [4c, c, k, k]
        a = a_x + F.conv2d(hp, u, padding=u.shape[-1] // 2)  # [B, 4c, H, W]
        ai, af, ag, ao = a.chunk(4, dim=1)
        peep = p["peephole"]  # [3, c, H, W]
        i = torch.sigmoid(ai + peep[0] * cp)
        f = torch.sigmoid(af + peep[1] * cp)
        g = torch.tanh(ag)
        cell = f * cp + i * g
        o = torch.sigmoid(ao + peep[2] * cell)
        hn = o * torch.tanh(cell)
        flat = [v.reshape(B, -1) for v in (hn, cell, i, f, g, o)]
        return flat[0], (flat[0], flat[1]), dict(zip(("input", "forget", "candidate", "output"), flat[2:]))

    def gru_cell(p, a_x: torch.Tensor, state):
        """a_x [B, 3c, H, W], state (h,) [B, c*H*W]."""
        _c_in, c, h, w = p["grid"]
        B = a_x.shape[0]
        hp = state[0].reshape(B, c, h, w)
        u = p["weight_hh"]  # [3c, c, k, k]
        pad = u.shape[-1] // 2
        a_rz = a_x[:, :2 * c] + F.conv2d(hp, u[:2 * c], padding=pad)
        r, z = torch.sigmoid(a_rz).chunk(2, dim=1)
        n = torch.tanh(a_x[:, 2 * c:] + F.conv2d(r * hp, u[2 * c:], padding=pad))
        hn = (1 - z) * n + z * hp
        flat = [v.reshape(B, -1) for v in (hn, r, z, n)]
        return flat[0], (flat[0],), dict(zip(("reset", "update", "candidate"), flat[1:]))

    cell_fn = lstm_cell if kind == "lstm" else gru_cell

    def step(p, x_t, state):
        """One step of the replica: x_t [B, c_in*H*W] -> (h_t, state, gates), all flattened."""
        return cell_fn(p, input_conv(p, x_t[:, None])[:, 0], state)

    def sequence(p, x, state):
        """The layer's ordinary forward: the input convolution for all steps in one call,
        then the recurrence. x [B, T, c_in*H*W] -> (out [B, T, c*H*W], final state)."""
        a_x = input_conv(p, x)  # [B, T, G*c, H, W]
        outs = []
        for t in range(x.shape[1]):
            h, state, _ = cell_fn(p, a_x[:, t], state)
            outs.append(h)
        return torch.stack(outs, dim=1), state

    def init(params: dict, hidden: int) -> None:
        """Uniform in +-1/sqrt(fan-in) per convolution (PyTorch's RNN rule with the
        kernel's fan-in); biases zero, an LSTM's forget block one; peepholes zero."""
        for name in ("weight_ih", "weight_hh"):
            wt = params[name]
            bound = 1.0 / math.sqrt(wt.shape[1] * wt.shape[2] * wt.shape[3])
            torch.nn.init.uniform_(wt, -bound, bound)
        params["bias"].zero_()
        if kind == "lstm":
            c = params["bias"].shape[0] // 4
            params["bias"][c:2 * c] = 1.0
            params["peephole"].zero_()

    class ConvOps(StepOps):
        spatial = True

        def make_layer(self, layer, input_size: int):
            module = super().make_layer(layer, input_size)
            module.grid = geometry(input_size, layer.hidden_size)  # (c_in, c, H, W)
            return module

        def directions(self, module) -> list:
            return [_Direction({**module.direction_params(d), "grid": module.grid}, module.hidden_size)
                    for d in range(2 if module.bidirectional else 1)]

    return ConvOps(step, sequence=sequence, init=init)


_NO_ONNX = OnnxRule(reason="its convolutional step runs as a Python loop over time, which would trace to a graph "
                           "fixed to the example's length")

CELLS = (
    Cell(name="conv_lstm", label="ConvLSTM (frames)", short="convLSTM", colour="#2f8f83",
         gate_info=(Gate("input", "input gate i"), Gate("forget", "forget gate f"),
                    Gate("candidate", "candidate g", "tanh"), Gate("output", "output gate o")),
         states=("h", "c"), gates=4, params=_lstm_shapes, bounded=True, onnx=_NO_ONNX,
         ops=lambda: _ops("lstm")),
    Cell(name="conv_gru", label="ConvGRU (frames)", short="convGRU", colour="#7a8f2f",
         gate_info=(Gate("reset", "reset gate r"), Gate("update", "update gate z"),
                    Gate("candidate", "candidate n", "tanh")),
         states=("h",), gates=3, params=_gru_shapes, bounded=True, onnx=_NO_ONNX,
         ops=lambda: _ops("gru")),
)
