"""The Runs panel, the window's hub: every run of the history and of this session (a
RunsModel, most recent first, with a search field), each line naming its task's main
metric. Ticking a run overlays its curves in the plots; the selected run is what Try it,
Continue, Compare and Export act on. The panel renders the model and forwards clicks;
the window does the work."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workbench.fileio import complete_checkpoints
from workbench.gui.exporter import KINDS
from workbench.gui.rundata import RunData
from workbench.gui.runs_model import RunEntry, RunsEvent, RunsModel, matches

STATUS_COLOURS = {"interrupted": "#b26b00", "failed": "#c62828", "running": "#1b5e20", "paused": "#1b5e20"}


def colour_icon(colour: str) -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(colour))
    return QIcon(pix)


def _blank_icon() -> QIcon:
    pix = QPixmap(12, 12)
    pix.fill(QColor(0, 0, 0, 0))
    return QIcon(pix)


class RunsPanel(QWidget):
    changed = Signal()  # what the plots show changed
    load_requested = Signal()  # "Open run…": pick a run folder
    overlay_requested = Signal(object, bool)  # RunEntry, shown: tick / untick (Compare ticks)
    remove_requested = Signal(object)  # RunData: out of the plots
    continue_requested = Signal()  # train the selected run on from its last checkpoint
    try_requested = Signal(object)  # RunEntry: open it in Try it
    export_requested = Signal(str)  # kind (workbench.gui.exporter.KINDS) of the selected run

    def __init__(self, model: RunsModel | None = None, parent=None):
        super().__init__(parent)
        self.model = model if model is not None else RunsModel()
        self._training = False
        self._shown: list[RunEntry] = []  # the list's rows, in order
        self._texts: dict[int, str] = {}  # id(entry) -> its line, to redraw only what changed
        self._status_seen: dict[int, str] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        hint = QLabel("Every run on this machine, newest first. Tick runs to overlay them in the plots; the "
                      "selected run is the one Try it, Continue and Export use.")
        hint.setWordWrap(True)
        hint.setObjectName("hint")
        lay.addWidget(hint)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search by name, task or status…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(lambda _text: self._rebuild())
        lay.addWidget(self.search)
        self.list = QListWidget()
        self.list.itemChanged.connect(self._on_item)
        self.list.currentRowChanged.connect(self._on_row)
        self.list.itemDoubleClicked.connect(lambda _item: self._on_compare())
        lay.addWidget(self.list, 1)
        row = QHBoxLayout()
        self.load = QPushButton("Open run…")
        self.load.setToolTip("Open a run folder (the one holding metrics.jsonl), starting in the runs folder")
        self.load.clicked.connect(self.load_requested.emit)
        self.compare = QPushButton("Compare")
        self.compare.setToolTip("Overlay the selected run's curves on the plots")
        self.compare.clicked.connect(self._on_compare)
        self.try_it = QPushButton("Try it")
        self.try_it.setToolTip("Open the selected run's trained model in the Try it panel")
        self.try_it.clicked.connect(lambda: self.model.selected and self.try_requested.emit(self.model.selected))
        self.resume = QPushButton("Continue")
        self.resume.setToolTip("Train the selected run on from its last checkpoint, in its own folder: a stopped "
                               "run to its step budget, a finished one as far as you ask")
        self.resume.clicked.connect(self.continue_requested.emit)
        self.export = QToolButton()
        self.export.setText("Export")
        self.export.setToolTip("Export the selected run: its weights, an ONNX model or a standalone script")
        self.export.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export)
        for kind, (label, _filter) in KINDS.items():
            menu.addAction(f"{label}…", lambda k=kind: self.export_requested.emit(k))
        self.export.setMenu(menu)
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Take the selected run out of the plots (its folder and history stay)")
        self.remove.clicked.connect(self._on_remove)
        for w in (self.load, self.compare, self.try_it, self.resume, self.export, self.remove):
            row.addWidget(w)
        row.addStretch(1)
        lay.addLayout(row)
        self.model.subscribe(self._on_model)
        self._rebuild()

    # -- the model's events --------------------------------------------------------------
    def _on_model(self, event: RunsEvent) -> None:
        if event.kind in ("reset", "add", "remove"):
            self._rebuild()
        elif event.kind == "update" and event.entry is not None:
            self._update_entry(event.entry)
        elif event.kind == "select":
            self._show_selected()
            self._update_buttons()

    def _rebuild(self) -> None:
        text = self.search.text()
        shown = [e for e in self.model.sorted_entries() if matches(e, text)]
        self.list.blockSignals(True)
        self.list.clear()
        self._texts.clear()
        for _entry in shown:
            item = QListWidgetItem()
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked)  # a box on every line, ticked when in the plots
            self.list.addItem(item)
        self._shown = shown
        for entry in shown:
            self._update_entry(entry, buttons=False)
        self.list.blockSignals(False)
        self._show_selected()
        self._update_buttons()

    def _update_entry(self, entry: RunEntry, buttons: bool = True) -> None:
        try:
            row = next(i for i, e in enumerate(self._shown) if e is entry)
        except StopIteration:
            return
        item = self.list.item(row)
        text = self.model.describe(entry)
        key = text + (entry.data.colour if entry.data is not None else "")  # the line and its colour swatch
        checked = entry.in_plots(self.model.plotted)
        blocked = self.list.blockSignals(True)
        if self._texts.get(id(entry)) != key:
            self._texts[id(entry)] = key
            item.setText(text)
            item.setIcon(colour_icon(entry.data.colour) if entry.data is not None else _blank_icon())
            colour = STATUS_COLOURS.get(entry.status)
            item.setForeground(QColor(colour) if colour else self.palette().text().color())
            info = entry.info
            tip = [entry.run_dir or "(no run folder)"]
            if info is not None and info.message:
                tip.append(info.message)
            item.setToolTip("\n".join(tip))
        state = Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
        overlay_changed = item.checkState() != state
        if overlay_changed:
            item.setCheckState(state)
        self.list.blockSignals(blocked)
        # the buttons follow the selected run's status and whether it is in the plots (not every step)
        if buttons and entry is self.model.selected and (overlay_changed
                                                         or self._status_seen.get(id(entry)) != entry.status):
            self._update_buttons()

    def _show_selected(self) -> None:
        row = next((i for i, e in enumerate(self._shown) if e is self.model.selected), -1)
        if row != self.list.currentRow():
            blocked = self.list.blockSignals(True)
            self.list.setCurrentRow(row)
            self.list.blockSignals(blocked)

    def _update_buttons(self) -> None:
        entry = self.model.selected
        if entry is not None:
            self._status_seen[id(entry)] = entry.status
        weights = entry is not None and entry.has_weights()
        live = entry is not None and entry.data is not None and entry.data.live
        self.compare.setEnabled(entry is not None and entry.can_overlay() and not entry.in_plots(self.model.plotted))
        self.try_it.setEnabled(weights and not live)
        self.export.setEnabled(weights and not live)
        self.resume.setEnabled(not self._training and self.can_continue(entry))
        self.remove.setEnabled(entry is not None and entry.data is not None
                               and any(r is entry.data for r in self.model.plotted))

    @staticmethod
    def can_continue(entry: RunEntry | None) -> bool:
        """A run folder with its preset and a complete checkpoint to go on from."""
        return (entry is not None and entry.folder_has("preset.json")
                and bool(complete_checkpoints(entry.run_dir)))

    # -- the user -------------------------------------------------------------------------
    def _on_row(self, row: int) -> None:
        self.model.select(self._shown[row] if 0 <= row < len(self._shown) else None)

    def _on_item(self, item: QListWidgetItem) -> None:
        row = self.list.row(item)
        if 0 <= row < len(self._shown):
            self.overlay_requested.emit(self._shown[row], item.checkState() == Qt.CheckState.Checked)

    def _on_compare(self) -> None:
        if self.model.selected is not None:
            self.overlay_requested.emit(self.model.selected, True)

    def _on_remove(self) -> None:
        entry = self.model.selected
        if entry is not None and entry.data is not None:
            self.remove_requested.emit(entry.data)

    # -- the window -----------------------------------------------------------------------
    def set_training(self, training: bool) -> None:
        """One run trains at a time: Continue waits for the running one."""
        self._training = training
        self._update_buttons()

    def select_data(self, data: RunData) -> None:
        """Select the entry that holds these curves (a run trained or opened here)."""
        self.model.select(self.model.find(data=data))

    def selected(self) -> RunData | None:
        """The selected run's curves (read from its folder when they were not loaded)."""
        entry = self.model.selected
        return entry.data if entry is not None else None

    def rows(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]
