"""The Sweep dialog's two plots (pyqtgraph): the trials in parallel coordinates and the
parameters' importances as bars. They draw what workbench/gui/sweep_view.py computes
(Qt-free); nothing here reads a study.
"""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from workbench.gui.plots import _pen, _plot_widget
from workbench.gui.sweep_view import Parallel

# complete trials from worst (light) to best (dark); the best one in red on top
WORST, BETTER, BEST = QColor("#c6dbef"), QColor("#08306b"), "#d62728"
AXIS, TEXT = "#888888", "#333333"


def short_name(field: str) -> str:
    """'model.layers.0.hidden_size' -> 'layers.0.hidden_size', 'train.lr' -> 'lr' (the
    section is plain from the field; the whole name is in the tooltip)."""
    parts = field.split(".")
    return ".".join(parts[1:]) if len(parts) > 1 and parts[0] in ("train", "model", "data") else field


def _shade(t: float) -> QColor:
    t = min(max(t, 0.0), 1.0)
    return QColor.fromRgbF(*(a + (b - a) * t for a, b in zip(WORST.getRgbF()[:3], BETTER.getRgbF()[:3], strict=True)))


class _Titled(QWidget):
    """A plot with a one-line note under its title (what it shows, or why it is empty)."""

    def __init__(self, title: str):
        super().__init__()
        self.plot = _plot_widget(title=title, bottom="")
        self.item = self.plot.getPlotItem()
        self.item.setMenuEnabled(False)
        self.item.getViewBox().setMouseEnabled(x=False, y=False)
        self.item.hideButtons()
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #555;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)


class ParallelPlot(_Titled):
    """One vertical axis per swept field and one for the metric; one line per complete
    trial, shaded light (worst) to dark (best), the best in red. ``lines``: trial number
    -> its PlotDataItem (x: the axes' indexes, y: the positions, 0..1)."""

    def __init__(self):
        super().__init__("Trials in parallel coordinates")
        self.item.hideAxis("left")
        self.lines: dict[int, pg.PlotDataItem] = {}
        self.geometry: Parallel | None = None
        self.note.setText("No complete trial yet.")

    def show_trials(self, geometry: Parallel) -> None:
        self.geometry = geometry
        self.item.clear()
        self.lines = {}
        axes = geometry.axes
        font = QFont()
        font.setPointSize(8)
        for i, axis in enumerate(axes):
            self.item.addItem(pg.PlotDataItem([i, i], [0, 1], pen=_pen(AXIS, 1.5)))
            for y, label in axis.ticks():
                self.item.addItem(pg.PlotDataItem([i - 0.03, i], [y, y], pen=_pen(AXIS, 1)))
                text = pg.TextItem(label, color=TEXT, anchor=(1.0, 0.5), fill=pg.mkBrush(255, 255, 255, 200))
                text.setFont(font)
                text.setZValue(20)  # a label over the lines that meet at its tick
                text.setPos(i - 0.04, y)
                self.item.addItem(text)
        names = [(i, short_name(a.name) + (" (log)" if a.scale == "log" else "")) for i, a in enumerate(axes)]
        self.item.getAxis("bottom").setTicks([names])
        self.item.getAxis("bottom").setPen(pg.mkPen(None))
        self.item.getAxis("bottom").setTextPen(TEXT)
        self.plot.setToolTip("\n".join(f"{short_name(a.name)}: {a.name} ({a.scale})" for a in axes))
        for line in sorted(geometry.lines, key=lambda ln: (ln.best, ln.shade)):  # best drawn last, on top
            pen = _pen(BEST, 3) if line.best else pg.mkPen(_shade(line.shade), width=1.5)
            item = pg.PlotDataItem(list(range(len(line.ys))), list(line.ys), pen=pen,
                                   symbol="o", symbolSize=5, symbolPen=pen, symbolBrush=pen.color())
            item.setZValue(10 if line.best else 1)
            self.item.addItem(item)
            self.lines[line.number] = item
        self.item.setXRange(-0.6, max(len(axes) - 1, 1) + 0.3, padding=0)  # room for the last axis's name
        self.item.setYRange(-0.06, 1.06, padding=0)
        best = [ln for ln in geometry.lines if ln.best]
        self.note.setText(f"{len(geometry.lines)} complete trial(s), light (worst) to dark (best); red: trial "
                          f"{best[0].number}, {axes[-1].name} {best[0].value:.5g}" if best else
                          "No complete trial yet.")


class ImportancePlot(_Titled):
    """The parameters' importances (Optuna's default, PED-ANOVA), largest on top, and a
    line under them (the shares, or why there are none yet). ``values``: the bars shown."""

    def __init__(self):
        super().__init__("Parameter importance")
        self.item.getAxis("bottom").setLabel("importance: what sets the best 10% of trials apart")
        self.plot.setToolTip("Optuna's PED-ANOVA importance: how differently each field is distributed among the "
                             "best 10% of the complete trials than among all of them (shares add up to 1)")
        self.bars: pg.BarGraphItem | None = None
        self.values: list[tuple[str, float]] = []
        self.show_importances([], "No importances yet: they need two complete trials or more.")

    def show_importances(self, values: list[tuple[str, float]], message: str = "") -> None:
        self.item.clear()
        self.values, self.bars = list(values), None
        n = len(values)
        if n:
            ys = [n - 1 - i for i in range(n)]  # the largest on top
            self.bars = pg.BarGraphItem(x0=[0] * n, y=ys, height=0.6, width=[v for _k, v in values],
                                        brush="#4c78a8", pen=pg.mkPen(None))
            self.item.addItem(self.bars)
            self.item.getAxis("left").setTicks([[(y, short_name(k)) for y, (k, _v) in zip(ys, values, strict=True)]])
            self.item.setXRange(0, max(max(v for _k, v in values), 1e-9) * 1.05, padding=0)
            self.item.setYRange(-0.6, n - 0.4, padding=0)
        else:
            self.item.getAxis("left").setTicks([[]])
        self.item.showAxis("left", bool(n))
        self.item.showAxis("bottom", bool(n))
        self.note.setText(message)
