"""Inside the network: per layer, the hidden state (or an LSTM/GRU gate) as a heatmap of
units x time steps, in the spirit of LSTMVis, and saliency through time ||dy/dx_t||
under it: which input steps the chosen output depends on.

A convolutional cell's state is feature maps (workbench.cells.conv): under the heatmap
its C maps at the hovered step (the last when none is) are tiled side by side.

Plain data in (workbench.inference.inside's dict); hovering a step emits
``step_hovered(axis, t)`` so the panel can highlight the matching token or frame;
clicking a step emits ``target_requested(t)`` to show the saliency of that output step.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from workbench import cells
from workbench.gui.tryout.widgets import Heatmap, StepBars, shown_token

# The carried states' names; a gate's label and range come from its cell (workbench.cells).
STATE_LABELS = {"hidden": "hidden state h_t", "cell_state": "cell state c_t"}
STATE_UNITS = {"hidden": "h_t (activation)", "cell_state": "c_t (cell memory)"}
RANGE_UNITS = {"unit": "0 to 1", "tanh": "-1 to 1"}


def series_label(name: str, cell: str) -> str:
    gate = cells.get(cell).gate(name)
    return gate.label if gate is not None else STATE_LABELS.get(name, name)


def series_units(name: str, cell: str) -> str:
    """What the colour bar says a colour means: the activation and its range."""
    gate = cells.get(cell).gate(name)
    if gate is None:
        return STATE_UNITS.get(name, name)
    span = RANGE_UNITS.get(gate.range)
    return f"{gate.label} ({span})" if span else gate.label


def tile_maps(vector: np.ndarray, maps: list[int]) -> np.ndarray:
    """A flattened spatial state [D*C*H*W] (channel-major, as workbench.cells.conv keeps
    it) -> one image [H, D*C*(W+1) - 1]: the maps side by side, a NaN column between."""
    c, h, w = maps
    grid = np.asarray(vector, dtype=np.float64).reshape(-1, h, w)  # [D*C, H, W]
    gap = np.full((h, 1), np.nan)
    parts = []
    for i, m in enumerate(grid):
        parts += ([gap] if i else []) + [m]
    return np.concatenate(parts, axis=1)


def series_style(name: str, cell: str, values: np.ndarray) -> tuple[str, tuple[float, float]]:
    """(colour map, levels) for one series of one layer: sigmoid gates live in [0, 1] (a
    sequential colour map), tanh quantities in [-1, 1] (diverging)."""
    described = cells.get(cell)
    gate = described.gate(name)
    if gate is not None and gate.range == "unit":
        return "viridis", (0.0, 1.0)
    if (gate is not None and gate.range == "tanh") or (name == "hidden" and described.bounded):
        return "CET-D1", (-1.0, 1.0)
    finite = values[np.isfinite(values)]
    top = float(np.abs(finite).max()) if finite.size else 1.0
    top = top or 1.0
    if name == "hidden":  # relu: not negative
        return "viridis", (0.0, top)
    return "CET-D1", (-top, top)


def saliency_caption(sal: dict, pick: bool) -> str:
    """What the saliency bars measure, naming the output and the input unambiguously:
    which output (the predicted symbol, in quotes, and at which output step) and which
    inputs (each bar: one input step t, the vector the first layer reads there)."""
    symbol = sal.get("target_class")
    label = str(sal.get("target_label") or "")
    t = int(sal.get("target_step", 0))
    if int(sal.get("output_steps", 1)) <= 1:
        where = "made after reading the whole input"
    elif label.startswith("output "):
        where = f"at output step {t}"
    else:
        where = f"at step {t}, where the input is “{shown_token(label)}”"
    if symbol is not None:
        name = shown_token(str(symbol)) or "end of output"  # an empty name: the end-of-sequence token
        output = f"the prediction “{name}” {where}"
        measure = f"‖∂ log p(“{name}”) / ∂x_t‖"
    else:
        output = f"the predicted value {where}"
        measure = "‖∂y/∂x_t‖ (Jacobian norm)"
    if sal.get("axis") == "out":
        inputs = "each earlier output token t (x_t: that token's embedding, fed back to the generator)"
    else:
        inputs = "each input step t (x_t: the vector the first recurrent layer reads at that step)"
    text = f"<b>Saliency</b>: how strongly {output} depends on {inputs}. Bar height: {measure}."
    if pick:
        text += " Click a step to explain the output there."
    return text


class InsideView(QWidget):
    step_hovered = Signal(str, int)  # axis ("in" / "out"), step (-1: none)
    target_requested = Signal(int)  # output step whose saliency to show

    def __init__(self, parent=None):
        super().__init__(parent)
        self.data: dict = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer"))
        self.layer_box = QComboBox()
        self.layer_box.setObjectName("insideLayer")
        row.addWidget(self.layer_box, 1)
        row.addWidget(QLabel("Show"))
        self.series_box = QComboBox()
        self.series_box.setObjectName("insideSeries")
        self.series_box.setToolTip("The hidden state, or one of the layer's gates (LSTM, GRU)")
        row.addWidget(self.series_box, 1)
        lay.addLayout(row)
        self.heat_label = QLabel("")
        self.heat_label.setWordWrap(True)
        lay.addWidget(self.heat_label)
        self.heatmap = Heatmap()
        self.heatmap.setObjectName("insideHeatmap")
        self.heatmap.setLabel("left", "unit")
        lay.addWidget(self.heatmap, 3)
        self.maps_label = QLabel("")
        self.maps_label.setWordWrap(True)
        lay.addWidget(self.maps_label)
        self.maps = Heatmap()  # a convolutional layer's feature maps at one step
        self.maps.setObjectName("insideFeatureMaps")
        lay.addWidget(self.maps, 2)
        self.maps_label.hide()
        self.maps.hide()
        self.map_step: int | None = None
        self.split_line = pg.InfiniteLine(angle=0, pen=pg.mkPen("#ffffff", width=2))
        self.split_line.hide()
        self.heatmap.addItem(self.split_line)
        self.saliency_label = QLabel("")
        self.saliency_label.setWordWrap(True)
        lay.addWidget(self.saliency_label)
        self.saliency = StepBars()
        self.saliency.setObjectName("saliencyPlot")
        lay.addWidget(self.saliency, 2)
        self.hover_label = QLabel(" ")
        lay.addWidget(self.hover_label)

        self.layer_box.currentIndexChanged.connect(self._on_layer)
        self.series_box.currentIndexChanged.connect(lambda _i: self._draw())
        self.heatmap.hovered.connect(lambda t: self._hover(self._layer_axis(), t))
        self.saliency.hovered.connect(lambda t: self._hover(self._saliency_axis(), t))
        self.heatmap.clicked.connect(self._on_click_heatmap)
        self.saliency.clicked.connect(self._on_click_saliency)

    # -- data ----------------------------------------------------------------------------
    def clear(self) -> None:
        self.data = {}
        self.layer_box.clear()
        self.series_box.clear()
        self.heatmap.set_matrix(np.zeros((1, 1)))
        self.saliency.set_values([])
        self.heat_label.setText("")
        self.saliency_label.setText("")

    def set_data(self, data: dict) -> None:
        self.data = data
        keep_layer = self.layer_box.currentText()
        keep_series = self.series_box.currentData()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        for layer in data.get("layers", []):
            self.layer_box.addItem(f"{layer['name']} ({layer['cell']}, {layer['hidden_size']}"
                                   f"{' x2' if layer['directions'] == 2 else ''})", layer["name"])
        idx = self.layer_box.findText(keep_layer)
        self.layer_box.setCurrentIndex(idx if idx >= 0 else 0)
        self.layer_box.blockSignals(False)
        self._fill_series(keep_series)
        self._draw()
        self._draw_saliency()

    def _layer(self) -> dict | None:
        layers = self.data.get("layers", [])
        i = self.layer_box.currentIndex()
        return layers[i] if 0 <= i < len(layers) else None

    def _layer_axis(self) -> str:
        layer = self._layer()
        return layer["axis"] if layer else "in"

    def _saliency_axis(self) -> str:
        return self.data.get("saliency", {}).get("axis", "in")

    def _steps(self, axis: str) -> list[str]:
        return list(self.data.get("in_steps" if axis == "in" else "out_steps", []))

    def _fill_series(self, keep=None) -> None:
        layer = self._layer()
        self.series_box.blockSignals(True)
        self.series_box.clear()
        if layer:
            for name in layer["series"]:
                self.series_box.addItem(series_label(name, layer["cell"]), name)
            idx = self.series_box.findData(keep) if keep else -1
            self.series_box.setCurrentIndex(idx if idx >= 0 else 0)
        self.series_box.blockSignals(False)

    def _on_layer(self, _index: int) -> None:
        self._fill_series(self.series_box.currentData())
        self._draw()

    def series_names(self) -> list[str]:
        return [self.series_box.itemData(i) for i in range(self.series_box.count())]

    def select(self, layer: str | None = None, series: str | None = None) -> None:
        if layer is not None:
            self.layer_box.setCurrentIndex(max(self.layer_box.findData(layer), 0))
        if series is not None:
            self.series_box.setCurrentIndex(max(self.series_box.findData(series), 0))

    def current_matrix(self) -> np.ndarray:
        return self.heatmap.data

    def _draw(self) -> None:
        layer = self._layer()
        name = self.series_box.currentData()
        if not layer or name not in layer["series"]:
            return
        values = np.asarray(layer["series"][name])
        cmap, levels = series_style(name, layer["cell"], values)
        steps = self._steps(layer["axis"])
        self.heatmap.set_matrix(values, x_labels=steps, levels=levels, colormap=cmap,
                                units=series_units(name, layer["cell"]))
        if layer["directions"] == 2:
            self.split_line.setPos(layer["hidden_size"])
            self.split_line.show()
        else:
            self.split_line.hide()
        units, T = values.shape
        where = "reading the input" if layer["axis"] == "in" else "writing the output"
        dirs = " (forward units, then backward)" if layer["directions"] == 2 else ""
        self.heat_label.setText(f"{series_label(name, layer['cell'])} of {layer['name']}, {where}: "
                                f"{units} units{dirs} × {T} steps")
        self._draw_maps()

    def _draw_maps(self) -> None:
        layer = self._layer()
        name = self.series_box.currentData()
        shown = bool(layer and layer.get("maps") and name in layer["series"])
        self.maps.setVisible(shown)
        self.maps_label.setVisible(shown)
        if not shown:
            return
        values = np.asarray(layer["series"][name])  # [C*H*W, T]
        T = values.shape[1]
        t = self.map_step if self.map_step is not None and 0 <= self.map_step < T else T - 1
        cmap, levels = series_style(name, layer["cell"], values)
        c, h, w = layer["maps"]
        self.maps.set_matrix(tile_maps(values[:, t], layer["maps"]), levels=levels, colormap=cmap)
        steps = self._steps(layer["axis"])
        self.maps_label.setText(f"{series_label(name, layer['cell'])} as {c} feature maps of {w}x{h} at "
                                f"{shown_token(str(steps[t])) if t < len(steps) else f'step {t}'}")

    def _draw_saliency(self) -> None:
        sal = self.data.get("saliency")
        if not sal:
            self.saliency.set_values([])
            self.saliency_label.setText("")
            return
        values = np.asarray(sal["values"])
        steps = self._steps(sal["axis"])
        target = sal.get("target_step") if sal["axis"] == self._output_axis() else None
        self.saliency.set_values(values, steps, target)
        self.saliency_label.setText(saliency_caption(sal, self._per_step_outputs()))

    def _output_axis(self) -> str:
        return "out" if self.data.get("out_steps") else "in"

    def _per_step_outputs(self) -> bool:
        """Whether the model answers at every step (a tagger, a language model, a decoder),
        so that a step can be picked as the output whose saliency is shown."""
        return int(self.data.get("saliency", {}).get("output_steps", 1)) > 1

    # -- interaction -----------------------------------------------------------------------
    def _hover(self, axis: str, t: int) -> None:
        steps = self._steps(axis)
        if t >= 0 and t < len(steps):
            text = f"step {t}: {shown_token(str(steps[t]))}"
            produced = self.data.get("out_produced") or []
            if axis == "out" and t < len(produced):
                text += f" → {shown_token(produced[t])}"
            self.hover_label.setText(text)
        else:
            self.hover_label.setText(" ")
        self.set_cursor(axis, t)
        if axis == self._layer_axis():
            self.map_step = t if t >= 0 else None
            self._draw_maps()
        self.step_hovered.emit(axis, t)

    def set_cursor(self, axis: str, t: int | None) -> None:
        self.heatmap.set_cursor(t if axis == self._layer_axis() else None)
        self.saliency.set_cursor(t if axis == self._saliency_axis() else None)

    def _on_click_heatmap(self, t: int) -> None:
        if self._per_step_outputs() and self._layer_axis() == self._output_axis():
            self.target_requested.emit(t)

    def _on_click_saliency(self, t: int) -> None:
        if self._per_step_outputs() and self._saliency_axis() == self._output_axis():
            self.target_requested.emit(t)
