"""The cell registry: every recurrent cell described once, found by name.

This module and the cell modules' top levels import neither torch nor Qt: the spec
(validation, parameter counts), the designer (labels, colours) and the try-out views
(gate names, state names) read a ``Cell`` without torch. The torch side of a cell (its
layer module, sequence function, unrolled step, probe route) is a ``CellOps`` that
the cell's ``ops`` factory returns; ``ops(name)`` calls it on first use and keeps it.

Discovery is lazy, as for tasks: the first lookup imports every module of this package
whose name does not start with "_" and registers what it declares (``CELL`` or a tuple
``CELLS``); ``register()`` adds one at run time (a test, a plug-in).

Who reads what:
  spec.py             names (validation), label, gates/param_shapes (parameter report,
                      memory estimate), states (bridge size), identity_init
  engine/model.py     ops(): the layer module, the kernel route and the unrolled replica
                      for the exact dL/dh_t probe, the state layout, forget_gate (init)
  export/onnx.py      onnx (exportable or not, and why), states (graph input/output names)
  export/script.py    script (the standalone script's table of layer classes)
  inference.py        series: the states and gates the try-out's look inside shows
  gui/diagram.py, gui/editor.py, gui/tryout/inside.py
                      label, short, colour; the gates' labels and ranges, bounded

Adding a cell (one new file, ``workbench/cells/mycell.py``, plus its tests):

    from workbench.cells import Cell, Gate

    def _ops():                       # torch only in here: imported on first use
        import torch
        from workbench.cells.generic import StepOps

        def step(p, x_t, state):      # p: this direction's parameters by name
            (h,) = state              # x_t [B, In], each state [B, H]
            a = torch.sigmoid(p["leak"])                                  # [H]
            cand = torch.tanh(x_t @ p["weight_ih"].t() + h @ p["weight_hh"].t() + p["bias"])
            h = (1 - a) * h + a * cand
            return h, (h,), {"candidate": cand}   # h_t, the carried state, gates by name
        return StepOps(step)

    CELL = Cell(name="leaky", label="Leaky RNN", short="leaky", colour="#8a6fb0",
                gate_info=(Gate("candidate", "candidate tanh(...)", "tanh"),), states=("h",),
                params=lambda n_in, H: {"weight_ih": (H, n_in), "weight_hh": (H, H),
                                        "bias": (H,), "leak": (H,)},
                ops=_ops)

That cell trains, runs bidirectionally and over padded rows, gives the exact dL/dh_t
probe (the unrolled replica: autograd through each h_t of the Python loop), the
layer-input taps (the stack records every layer's input, whatever the layer) and the
try-out's look inside (its gates, recorded by the step, with their ranges). It is not exported to ONNX
or the standalone script unless it says how (``onnx``, ``script``): the exporters refuse
it by name.

A cell with a parallel form (a scan: minGRU, minLSTM, LRU) gives it as
``StepOps(step, sequence=scan)``: ``scan(p, x [B, T, In], state) -> (out [B, T, H],
final state)`` runs the layer's forward in training and evaluation, the step stays the
sequential form the probe's replica and the try-out run. A cell whose parameters are not
``weight_ih``/``weight_hh``/biases (a convolution) gives ``params`` with its own shapes
(counted as forward weights when named ``weight_ih*``, recurrent when ``weight_hh*``,
the rest as biases) and ``init`` in StepOps for its own initialisation; its states are
[B, H] as every cell's (a spatial state, [B, C, h, w], kept flattened with hidden_size
= C*h*w and reshaped inside the step), so the bridge, padding and probe need nothing new. A cell with a
fused kernel of its own writes a CellOps subclass (see ``workbench.cells.fused``: the
four built-in cells, which keep PyTorch's cuDNN/ATen kernels).
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# The built-in cells in the order the designer lists them (registered cells follow).
BUILTIN_ORDER = ("rnn_tanh", "rnn_relu", "lstm", "gru")


@dataclass(frozen=True)
class OnnxRule:
    """How a cell reaches ONNX. ``native``: its layer module is an nn.RNN/LSTM/GRU, which
    torch.onnx maps to the ONNX op of the same name (dynamic batch and time). ``loop``:
    its layer's forward, when traced, runs a TorchScript loop over time, which becomes an
    ONNX Loop (dynamic batch and time; the scan cells, workbench.engine.scan). Otherwise
    ``reason`` says why it is not exported."""

    native: bool = False
    loop: bool = False
    reason: str = "its unrolled Python loop would trace to a graph fixed to the example's length"


@dataclass(frozen=True)
class ScriptRule:
    """The standalone script's layer for a cell: ``module`` an expression of the script
    (``nn.LSTM``) called with the usual (input_size, hidden_size, num_layers=1,
    batch_first=True, bidirectional) and these extra keyword arguments."""

    module: str
    kwargs: tuple[tuple[str, object], ...] = ()
    # a template of workbench/export/templates/ that defines ``module`` in the script
    # (embedded once however many cells share it); "" for torch.nn's own modules
    source: str = ""


@dataclass(frozen=True)
class Gate:
    """One activation a cell's step records: its name, what the try-out calls it, and its
    range after the nonlinearity ("unit": a sigmoid's [0, 1], "tanh": [-1, 1], "free")."""

    name: str
    label: str
    range: str = "unit"


@dataclass(frozen=True)
class Cell:
    """One recurrent cell, described once (see the module docstring)."""

    name: str  # the preset's model.layers.N.cell
    label: str  # editor, diagram rows: "RNN (tanh)"
    short: str  # the diagram's box: "tanh"
    colour: str  # the diagram's colour for its layers
    # the activations the cell's step records (after their nonlinearity), in its gate order
    gate_info: tuple[Gate, ...] = ()
    # what a layer carries from step to step: ("h",) or ("h", "c"); the first is the output
    states: tuple[str, ...] = ("h",)
    # gate blocks: rows of W_ih / W_hh are gates * hidden_size (a step cell: the size of
    # its per-step pre-activations in units of H, for the memory estimate)
    gates: int = 1
    # parameter shapes of one direction, (input_size, hidden_size) -> {name: shape};
    # None: PyTorch's weight_ih [G*H, In], weight_hh [G*H, H], bias_ih and bias_hh [G*H]
    params: Callable[[int, int], dict[str, tuple[int, ...]]] | None = None
    forget_gate: int | None = None  # the gate block whose bias model.init.forget_bias sets
    identity_init: bool = False  # model.init.recurrent = "identity" (IRNN) applies
    bounded: bool = True  # h_t stays in [-1, 1] (colour scale of the try-out's heatmaps)
    onnx: OnnxRule = field(default_factory=OnnxRule)
    script: ScriptRule | None = None  # None: the standalone script refuses the cell
    # () -> CellOps: the torch side, built on first use (workbench.cells.ops)
    ops: Callable[[], object] | None = field(default=None, compare=False)

    def param_shapes(self, input_size: int, hidden_size: int) -> dict[str, tuple[int, ...]]:
        if self.params is not None:
            return dict(self.params(input_size, hidden_size))
        g = self.gates * hidden_size
        return {"weight_ih": (g, input_size), "weight_hh": (g, hidden_size), "bias_ih": (g,), "bias_hh": (g,)}

    def param_counts(self, input_size: int, hidden_size: int) -> tuple[int, int, int]:
        """(forward weights, recurrent weights, the rest) of one direction."""
        counts = [0, 0, 0]
        for name, shape in self.param_shapes(input_size, hidden_size).items():
            n = 1
            for s in shape:
                n *= s
            counts[0 if name.startswith("weight_ih") else 1 if name.startswith("weight_hh") else 2] += n
        return counts[0], counts[1], counts[2]

    @property
    def gate_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gate_info)

    def gate(self, name: str) -> Gate | None:
        return next((g for g in self.gate_info if g.name == name), None)

    @property
    def state_count(self) -> int:
        return len(self.states)

    @property
    def series(self) -> list[str]:
        """What the try-out's look inside shows of a layer: the hidden state, the other
        carried states ("cell_state" for an LSTM's c), then the gates."""
        return ["hidden"] + [_STATE_SERIES.get(s, s) for s in self.states[1:]] + list(self.gate_names)


# the try-out's name for a carried state other than h
_STATE_SERIES = {"c": "cell_state"}

_REGISTRY: dict[str, Cell] = {}
_OPS: dict[str, object] = {}
_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in ("generic", "fused"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cell in getattr(module, "CELLS", ()) + ((module.CELL,) if hasattr(module, "CELL") else ()):
            _REGISTRY.setdefault(cell.name, cell)


def names() -> tuple[str, ...]:
    """Every registered cell's name: the built-ins first, in the designer's order."""
    _discover()
    rest = sorted(n for n in _REGISTRY if n not in BUILTIN_ORDER)
    return tuple(n for n in BUILTIN_ORDER if n in _REGISTRY) + tuple(rest)


def get(name: str) -> Cell:
    """The cell called ``name``; KeyError (listing the known ones) for an unknown name."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown cell {name!r} (known cells: {', '.join(names())})") from None


def ops(name: str):
    """The torch side of cell ``name`` (a workbench.cells.generic.CellOps), built once."""
    found = _OPS.get(name)
    if found is None:
        cell = get(name)
        if cell.ops is None:
            raise KeyError(f"cell {name!r} has no torch implementation (Cell.ops)")
        found = _OPS[name] = cell.ops()
        found.cell = cell
    return found


def register(cell: Cell, replace: bool = False) -> Cell:
    """Add a cell at run time; a second cell of the same name is refused unless ``replace``."""
    _discover()
    if cell.name in _REGISTRY and not replace:
        raise ValueError(f"a cell named {cell.name!r} is already registered")
    _REGISTRY[cell.name] = cell
    _OPS.pop(cell.name, None)
    return cell


def unregister(name: str) -> None:
    if name in BUILTIN_ORDER:
        raise ValueError(f"the built-in cell {name!r} cannot be unregistered")
    _REGISTRY.pop(name, None)
    _OPS.pop(name, None)


@contextmanager
def registered(cell: Cell) -> Iterator[Cell]:
    """``with registered(cell):`` the cell exists inside the block only (tests)."""
    register(cell)
    try:
        yield cell
    finally:
        unregister(cell.name)
