"""The runs shown in the plots: the live run, earlier runs of this session and run
folders loaded from disk, each in its own colour; tick to overlay, untick to hide."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget, QLabel

from workbench.gui.rundata import RunData


def colour_icon(colour: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(colour))
    return QIcon(pix)


def describe(run: RunData) -> str:
    parts = [run.status or "loaded"]
    if len(run.steps):
        parts.append(f"{run.last_step} steps")
    vl = run.val_loss.last()
    if len(run.val_loss) and math.isfinite(vl):
        parts.append(f"val {vl:.4g}")
    if run.non_finite:
        parts.append(f"{len(run.non_finite)} non-finite")
    return f"{run.name} — " + ", ".join(parts)


class RunsPanel(QWidget):
    changed = Signal()  # visibility or the list changed
    load_requested = Signal()
    remove_requested = Signal(object)  # RunData
    continue_requested = Signal()  # train the selected run on from its last checkpoint

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        hint = QLabel("Tick runs to overlay them in the plots. Each new run keeps the previous one here, so "
                      "e.g. a vanilla RNN and an LSTM can be compared on the same task.")
        hint.setWordWrap(True)
        hint.setObjectName("hint")
        lay.addWidget(hint)
        self.list = QListWidget()
        self.list.itemChanged.connect(self._on_item)
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.load = QPushButton("Add run folder…")
        self.load.setToolTip("Overlay a finished run: pick its folder (the one holding metrics.jsonl)")
        self.load.clicked.connect(self.load_requested.emit)
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Remove the selected run from the plots (its folder stays on disk)")
        self.remove.clicked.connect(self._on_remove)
        self.resume = QPushButton("Continue")
        self.resume.setToolTip("Train the selected run on from its last checkpoint, in its own folder: a stopped "
                               "run to its step budget, a finished one as far as you ask")
        self.resume.clicked.connect(self.continue_requested.emit)
        row.addWidget(self.load)
        row.addWidget(self.remove)
        row.addWidget(self.resume)
        row.addStretch(1)
        lay.addLayout(row)
        self._runs: list[RunData] = []
        self._texts: list[str] = []

    def set_runs(self, runs: list[RunData]) -> None:
        texts = [describe(r) for r in runs]
        if [id(r) for r in runs] == [id(r) for r in self._runs] and texts == self._texts:
            return
        self.list.blockSignals(True)
        selected = self.list.currentRow()
        self.list.clear()
        for run, text in zip(runs, texts):
            item = QListWidgetItem(colour_icon(run.colour), text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if run.visible else Qt.CheckState.Unchecked)
            item.setToolTip(run.run_dir or "")
            self.list.addItem(item)
        if 0 <= selected < self.list.count():
            self.list.setCurrentRow(selected)
        self.list.blockSignals(False)
        self._runs = list(runs)
        self._texts = texts

    def _on_item(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        if 0 <= row < len(self._runs):
            self._runs[row].visible = item.checkState() == Qt.CheckState.Checked
            self.changed.emit()

    def selected(self) -> RunData | None:
        row = self.list.currentRow()
        return self._runs[row] if 0 <= row < len(self._runs) else None

    def _on_remove(self) -> None:
        row = self.list.currentRow()
        if 0 <= row < len(self._runs):
            self.remove_requested.emit(self._runs[row])
