"""The workbench window: design a network, train it in a worker thread, watch the loss
and the gradients through time live.

Threads: the trainer runs in a TrainWorker moved to a QThread; its signals reach this
window queued, carrying plain records that are appended to RunData buffers. One QTimer
(<= 30 Hz) redraws the visible plots from the buffers. Nothing here waits on training,
imports torch, or touches a widget from another thread.
"""
from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths, Qt, QThread, QTimer, QUrl, Slot
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QFrame, QHBoxLayout, QInputDialog, QLabel,
                               QMainWindow, QMessageBox, QProgressBar, QPushButton, QToolButton, QVBoxLayout,
                               QWidget)

from workbench import presets as builtin_presets
from workbench import builtin, spec
from workbench.fileio import complete_checkpoints
from workbench.gui.diagram import DiagramView
from workbench.gui.document import Change, PresetDocument
from workbench.gui.editor import ArchitectureEditor
from workbench.gui.plots import GradientPanel, LossPanel, NormPanel, PaintClock, PlotPanel
from workbench.gui.resolver import Resolver, fallback_io
from workbench.gui.rundata import RunData, load_run_folder
from workbench.gui.runs_panel import RunsPanel
from workbench.gui.training_panel import DEVICE_LABELS, TrainingPanel, set_device_availability
from workbench.gui.tryout import TryoutPanel
from workbench.gui.worker import TrainWorker, preset_for_gui
from workbench.spec import Preset, SpecError

APP_TITLE = "RNN Workbench"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
FIRST_PRESET = "adding_rnn_tanh"  # the newcomer trains this, then adding_lstm, and compares
VANISHING_PAIR = ("adding_rnn_tanh", "adding_lstm")
EXPLODING_PAIR = ("exploding_relu_noclip", "exploding_relu_clip")
MAX_RECENT = 8
MAX_SESSION_RUNS = 8  # earlier in-app runs kept for overlay
FRAME_MS = 33  # the plot timer: <= 30 Hz
STATE_VERSION = 4  # bump when the dock layout changes, so an old saved layout is not restored


def icon(name: str) -> QIcon:
    path = builtin.icon_path(name)
    return QIcon(str(path)) if path.is_file() else QIcon()


def default_data_dir() -> Path:
    """The user's data folder for this app (runs go in its runs/): the one the headless
    commands and the run history use (workbench.userdirs, which honours WORKBENCH_HOME
    and equals Qt's AppDataLocation for this application)."""
    try:
        from workbench.userdirs import data_dir
    except ImportError:
        location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
        return Path(location) if location else Path.home() / ".local" / "share" / "rnn-workbench" / "workbench"
    return data_dir()


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class InfoBar(QFrame):
    """A dismissible line above the diagram for problems and hints (never modal)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("infoBar")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 3, 4, 3)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.hide()

    def show_message(self, text: str, kind: str = "info") -> None:
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self.show()


class Welcome(QFrame):
    """First start: what to try first (the vanishing and exploding gradient pairs)."""

    def __init__(self, open_builtin, parent=None):
        super().__init__(parent)
        self.setObjectName("welcome")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.setSpacing(4)
        top = QHBoxLayout()
        text = QLabel(
            "<b>New here?</b> Press <b>Train</b> (F5) to train this vanilla RNN on the adding problem and watch the "
            "gradient through time vanish toward early steps; then open <b>adding_lstm</b> and train it: the first "
            "run stays in the plots for comparison. For <b>exploding</b> gradients, compare "
            "<b>exploding_relu_noclip</b> with <b>exploding_relu_clip</b>.")
        text.setWordWrap(True)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Hide (Help ▸ Getting started shows it again)")
        close.clicked.connect(self.hide)
        top.addWidget(text, 1)
        top.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        lay.addLayout(top)
        row = QHBoxLayout()
        row.addWidget(QLabel("Vanishing:"))
        for name in VANISHING_PAIR:
            row.addWidget(self._button(name, open_builtin))
        row.addSpacing(12)
        row.addWidget(QLabel("Exploding:"))
        for name in EXPLODING_PAIR:
            row.addWidget(self._button(name, open_builtin))
        row.addStretch(1)
        lay.addLayout(row)

    @staticmethod
    def _button(name: str, open_builtin) -> QPushButton:
        b = QPushButton(name)
        b.setToolTip(f"Open the built-in preset {name}")
        b.clicked.connect(lambda: open_builtin(name))
        return b


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, data_dir: str | Path | None = None,
                 open_default: bool = True):
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.doc = PresetDocument()
        self.resolver = Resolver(self)
        self.runs: list[RunData] = []  # what the plots show, in drawing order
        self._session_runs: list[RunData] = []  # runs trained in this window (the oldest go past a limit)
        self.current_run: RunData | None = None
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self._run_started_at = 0.0
        self._segment_first_step = 0  # the step the running session started from (> 0 when continued)
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self._colour_index = 0
        self._close_pending = False
        self._discard_on_close = False
        self._closed = False
        self._errors: list[SpecError] = []
        self._task_pending = False
        self._last_message = ""
        # Tests and scripts answer the window's questions here instead of a dialog:
        # {"keep_run": "keep" | "discard" | "cancel", "save_changes": "save" | "discard" | "cancel"}.
        self.dialog_answers: dict[str, str] = {}
        self.frame_times: list[float] = []  # seconds per plot frame: update + its paint (the benchmark reads it)
        self._frame_update: float | None = None
        self._next_panel = 0

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_central()
        self._build_docks()
        self._build_actions()
        self._build_menus()
        self._build_toolbar()
        self._build_statusbar()

        self.doc.subscribe(self._on_doc_change)
        self.resolver.task_info_ready.connect(self._on_task_info)
        self.resolver.io_ready.connect(lambda _key: self._update_derived())
        self.resolver.devices_ready.connect(self._on_devices)
        self.editor.browse_requested.connect(self.browse_data)
        self.runs_panel.changed.connect(self._plots_changed)
        self.runs_panel.load_requested.connect(lambda: self.load_run_folder())
        self.runs_panel.remove_requested.connect(self.remove_run)
        self.runs_panel.continue_requested.connect(self._continue_selected)
        for panel in self.panels:
            panel.export_requested.connect(lambda kind, p=panel: self.export_panel(p, kind))

        self.frame_timer = QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self._on_frame)
        self.frame_timer.start()

        self._restore_settings()
        if open_default:
            self._open_start_preset()
        else:
            self._on_doc_change(Change("replace"))
        # Heavy imports (the task modules load torch) start once the window is up.
        QTimer.singleShot(50, self.resolver.start)

    # ================================================================== construction
    def _build_central(self) -> None:
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 0)
        lay.setSpacing(4)
        self.welcome = Welcome(self.open_builtin)
        self.welcome.hide()
        self.info = InfoBar()
        self.diagram = DiagramView()
        self.diagram.setToolTip("The network unrolled in time; File ▸ Export saves it as PNG or SVG")
        lay.addWidget(self.welcome)
        lay.addWidget(self.info)
        lay.addWidget(self.diagram, 1)
        self.setCentralWidget(central)

    def _dock(self, title: str, name: str, widget: QWidget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable
                         | QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(area, dock)
        return dock

    def _build_docks(self) -> None:
        left, bottom = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
        self.editor = ArchitectureEditor(self.doc)
        self.training = TrainingPanel(self.doc)
        self.runs_panel = RunsPanel()
        self.loss_panel = LossPanel()
        self.grad_panel = GradientPanel()
        self.norm_panel = NormPanel()
        self.panels: list[PlotPanel] = [self.loss_panel, self.grad_panel, self.norm_panel]
        self.design_dock = self._dock("Design", "designDock", self.editor, left)
        self.training_dock = self._dock("Training", "trainingDock", self.training, left)
        self.runs_dock = self._dock("Runs", "runsDock", self.runs_panel, left)
        self.loss_dock = self._dock("Loss", "lossDock", self.loss_panel, bottom)
        self.grad_dock = self._dock("Gradient through time", "gradDock", self.grad_panel, bottom)
        self.norm_dock = self._dock("Gradient norm · learning rate", "normDock", self.norm_panel, bottom)
        # Try it: the trained model as a playground (fed each finished or opened run folder).
        self.tryout = TryoutPanel()
        self.tryout_dock = self._dock("Try it", "tryoutDock", self.tryout, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks = [self.design_dock, self.training_dock, self.runs_dock, self.loss_dock, self.grad_dock,
                      self.norm_dock, self.tryout_dock]
        self._default_layout()

    def _default_layout(self) -> None:
        size = self.size()
        for d in self.docks:
            d.setFloating(False)
            d.show()
        left, bottom = Qt.DockWidgetArea.LeftDockWidgetArea, Qt.DockWidgetArea.BottomDockWidgetArea
        # The side panels share one tab group, so the diagram and the plots keep their
        # room at 1280x800; any of them can be dragged out. Each joins the group at once
        # (tabify), never stacked first: four panels stacked for a moment would raise the
        # window's minimum height, and the window would grow past the screen and stay.
        self.addDockWidget(left, self.design_dock)
        for d in (self.training_dock, self.runs_dock, self.tryout_dock):
            self.tabifyDockWidget(self.design_dock, d)
        self.design_dock.raise_()
        self.addDockWidget(bottom, self.loss_dock)
        self.splitDockWidget(self.loss_dock, self.grad_dock, Qt.Orientation.Horizontal)
        self.splitDockWidget(self.grad_dock, self.norm_dock, Qt.Orientation.Horizontal)
        self.resizeDocks([self.design_dock], [390], Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock, self.grad_dock, self.norm_dock], [270, 420, 230],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock], [340], Qt.Orientation.Vertical)
        if self.isVisible():
            self.resize(size)  # a reset rearranges the panels, never the window

    def _action(self, text: str, slot, shortcut=None, tip: str = "", icon_name: str = "",
                checkable: bool = False) -> QAction:
        act = QAction(text, self)
        if icon_name:
            act.setIcon(icon(icon_name))
        if shortcut is not None:
            if isinstance(shortcut, (list, tuple)):
                act.setShortcuts([QKeySequence(s) for s in shortcut])
            else:
                act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setStatusTip(tip)
            act.setToolTip(f"{text.replace('&', '').rstrip('…')} ({act.shortcut().toString()})"
                           if not act.shortcut().isEmpty() else tip)
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        self.addAction(act)
        return act

    def _build_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_new = self._action("&New", self.new_preset, K.New, "Start a new preset (from adding_lstm)", "new")
        self.act_open = self._action("&Open preset…", lambda: self.open_preset(), K.Open, "Open a preset file",
                                     "open")
        self.act_save = self._action("&Save", lambda: self.save(), K.Save, "Save the preset", "save")
        self.act_save_as = self._action("Save &as…", lambda: self.save_as(), K.SaveAs,
                                        "Save the preset under a new name")
        self.act_compare = self._action("Compare with run folder…", lambda: self.load_run_folder(),
                                        "Ctrl+Shift+O", "Overlay a finished run's curves on the plots", "compare")
        self.act_quit = self._action("&Quit", self.close, K.Quit, "Close the window")
        self.act_undo = self._action("&Undo", self.doc.undo, K.Undo, "Undo the last edit", "undo")
        self.act_redo = self._action("&Redo", self.doc.redo, [QKeySequence(K.Redo).toString() or "Ctrl+Shift+Z",
                                                              "Ctrl+Y"], "Redo the edit undone last", "redo")
        self.act_add_layer = self._action("Add layer", lambda: self.doc.add_layer("layers"), "Ctrl+Shift+=",
                                          "Add a recurrent layer on top of the stack")
        self.act_remove_layer = self._action(
            "Remove top layer", lambda: self.doc.remove_layer("layers", len(self.doc.preset.model.layers) - 1)
            if len(self.doc.preset.model.layers) > 1 else None, "Ctrl+Shift+-", "Remove the top recurrent layer")
        self.act_train = self._action("&Train", self.start_training, ["F5", "Ctrl+Return"],
                                      "Train the preset in the background", "train")
        self.act_pause = self._action("&Pause", self.toggle_pause, "F6", "Pause or resume training", "pause")
        self.act_stop = self._action("&Stop", self.stop_training, "Shift+F5", "Stop training (the weights are kept)",
                                     "stop")
        self.act_runs_folder = self._action("Open runs folder", self.open_runs_folder, None,
                                            "Show the folder where runs are saved")
        self.act_clear_runs = self._action("Clear earlier runs", self.clear_runs, None,
                                           "Remove all but the current run from the plots")
        self.act_reset_layout = self._action("Reset layout", self._default_layout, None,
                                             "Put every panel back where it started")
        self.act_log_loss = self._action("Log-scale loss", lambda on: self.loss_panel.log_box.setChecked(on),
                                         "Ctrl+Shift+L", "Show the loss on a log axis", checkable=True)
        self.act_welcome = self._action("Getting started", self.show_welcome, K.HelpContents,
                                        "What to try first")
        self.act_shortcuts = self._action("Keyboard shortcuts", self.show_shortcuts, None, "List the shortcuts")
        self.act_about = self._action("About RNN Workbench", self.show_about, None, "Version and licence")
        self.act_export_diagram = self._action("Diagram as PNG/SVG…", lambda: self.export_diagram(), "Ctrl+E",
                                               "Save the network diagram as an image")
        self.act_export_preset = self._action("Preset copy as JSON…", lambda: self.export_preset(), None,
                                              "Write a copy of the preset without changing the open file")
        self.loss_panel.log_box.toggled.connect(self.act_log_loss.setChecked)
        self.act_pause.setEnabled(False)
        self.act_stop.setEnabled(False)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        m = bar.addMenu("&File")
        m.addAction(self.act_new)
        self.builtin_menu = m.addMenu("New from built-in preset")
        for name in builtin_presets.builtin_names():
            self.builtin_menu.addAction(name, lambda n=name: self.open_builtin(n))
        m.addAction(self.act_open)
        self.recent_menu = m.addMenu("Open &recent")
        m.addSeparator()
        m.addAction(self.act_save)
        m.addAction(self.act_save_as)
        m.addSeparator()
        export = m.addMenu("&Export")
        export.addAction(self.act_export_diagram)
        for panel in self.panels:
            export.addAction(f"{panel.title} as PNG/SVG…", lambda p=panel: self.export_panel(p, "image"))
            export.addAction(f"{panel.title} data as CSV…", lambda p=panel: self.export_panel(p, "csv"))
        export.addAction(self.act_export_preset)
        m.addAction(self.act_compare)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Edit")
        m.addAction(self.act_undo)
        m.addAction(self.act_redo)
        m.addSeparator()
        m.addAction(self.act_add_layer)
        m.addAction(self.act_remove_layer)
        m = bar.addMenu("&Run")
        m.addAction(self.act_train)
        m.addAction(self.act_pause)
        m.addAction(self.act_stop)
        m.addSeparator()
        self.device_menu = m.addMenu("Device")
        self.device_actions = {}
        for name in spec.DEVICES:
            act = self.device_menu.addAction(DEVICE_LABELS[name],
                                             lambda n=name: self.doc.set("train.device", n, merge=False))
            act.setCheckable(True)
            self.device_actions[name] = act
        m.addAction(self.act_runs_folder)
        m.addAction(self.act_clear_runs)
        m = bar.addMenu("&View")
        for i, d in enumerate(self.docks, start=1):
            act = d.toggleViewAction()
            act.setShortcut(QKeySequence(f"Alt+{i}"))
            m.addAction(act)
        m.addSeparator()
        m.addAction(self.act_log_loss)
        m.addAction(self.act_reset_layout)
        m = bar.addMenu("&Help")
        m.addAction(self.act_welcome)
        m.addAction(self.act_shortcuts)
        m.addAction(self.act_about)

    def _build_toolbar(self) -> None:
        tb = self.addToolBar("File")
        tb.setObjectName("fileToolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        for act in (self.act_new, self.act_open, self.act_save):
            tb.addAction(act)
        tb.addSeparator()
        tb.addAction(self.act_undo)
        tb.addAction(self.act_redo)
        tb.addSeparator()
        tb.addAction(self.act_compare)
        tb = self.addToolBar("Run")
        tb.setObjectName("runToolbar")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        tb.addWidget(QLabel(" Preset "))
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Open a built-in preset")
        self.preset_combo.addItem("built-in…", None)
        for name in builtin_presets.builtin_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.activated.connect(self._on_preset_combo)
        tb.addWidget(self.preset_combo)
        tb.addSeparator()
        for act in (self.act_train, self.act_pause, self.act_stop):
            tb.addAction(act)
        tb.addWidget(QLabel(" Device "))
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where to train: auto picks a GPU when there is one, else the CPU")
        for name in spec.DEVICES:
            self.device_combo.addItem(DEVICE_LABELS[name], name)
        self.device_combo.currentIndexChanged.connect(
            lambda i: self.doc.set("train.device", self.device_combo.itemData(i), merge=False))
        tb.addWidget(self.device_combo)

    def _on_preset_combo(self, index: int) -> None:
        name = self.preset_combo.itemData(index)
        if name and name != self.doc.builtin:
            self.open_builtin(name)
        self._sync_preset_combo()

    def _sync_preset_combo(self) -> None:
        """The combo shows the open preset: its built-in name, else the file's name."""
        i = self.preset_combo.findData(self.doc.builtin) if self.doc.builtin else -1
        self.preset_combo.setItemText(0, "built-in…" if i > 0 else self.doc.title)
        self.preset_combo.setCurrentIndex(max(i, 0))

    def _show_budget(self) -> None:
        """Before a run: the preset's step budget (the progress bar had said 0 / 1)."""
        steps = max(int(self.doc.preset.train.steps), 1)
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self.progress.setFormat(f"{steps:,} steps to train")

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        self.device_label = QLabel("device: —")
        self.device_label.setToolTip("The device the current run trains on")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(200)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self.time_label = QLabel("")
        self.speed_label = QLabel("")
        self.speed_label.setToolTip("Throughput: optimizer steps, and sequence elements (tokens, frames or time "
                                    "steps) per second")
        for w in (self.device_label, self.progress, self.time_label, self.speed_label):
            sb.addPermanentWidget(w)

    # ================================================================== settings
    def _restore_settings(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if isinstance(geometry, (QByteArray, bytes)) and geometry:
            self.restoreGeometry(geometry)
        else:
            self.resize(1280, 800)
        state = s.value("window/state")
        if isinstance(state, (QByteArray, bytes)) and state:
            self.restoreState(state, STATE_VERSION)
        smooth = s.value("plots/smoothing")
        if smooth is not None:
            try:
                self.loss_panel.smooth.setValue(int(smooth))
            except (TypeError, ValueError):
                pass
        self.loss_panel.log_box.setChecked(str(s.value("plots/logLoss", "false")).lower() == "true")
        self._rebuild_recent_menu()

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(STATE_VERSION))
        s.setValue("plots/smoothing", self.loss_panel.smooth.value())
        s.setValue("plots/logLoss", self.loss_panel.log_box.isChecked())
        if self.doc.path is not None:
            s.setValue("session/lastPreset", str(self.doc.path))
        elif self.doc.builtin:
            s.setValue("session/lastPreset", f"builtin:{self.doc.builtin}")
        s.sync()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recentFiles", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: Path) -> None:
        files = [str(path)] + [f for f in self.recent_files() if f != str(path)]
        self.settings.setValue("recentFiles", files[:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        files = self.recent_files()
        for i, f in enumerate(files, start=1):
            self.recent_menu.addAction(f"&{i} {Path(f).name}", lambda p=f: self.open_preset(p)).setToolTip(f)
        if not files:
            self.recent_menu.addAction("(none yet)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)

    def _clear_recent(self) -> None:
        self.settings.setValue("recentFiles", [])
        self._rebuild_recent_menu()

    def _open_start_preset(self) -> None:
        first = not bool(self.settings.value("session/started", False))
        last = str(self.settings.value("session/lastPreset", "") or "")
        opened = False
        if not first and last:
            if last.startswith("builtin:"):
                opened = self.open_builtin(last.removeprefix("builtin:"), quiet=True)
            elif Path(last).is_file():
                opened = self.open_preset(last, quiet=True)
        if not opened:
            self.open_builtin(FIRST_PRESET, quiet=True)
        if first:
            self.welcome.show()
            self.settings.setValue("session/started", True)

    # ================================================================== document
    def _on_doc_change(self, change: Change) -> None:
        preset = self.doc.preset
        self.editor.refresh(preset)
        self.training.refresh(preset)
        self.device_combo.blockSignals(True)
        self.device_combo.setCurrentIndex(max(self.device_combo.findData(preset.train.device), 0))
        self.device_combo.blockSignals(False)
        for name, act in self.device_actions.items():
            act.setChecked(name == preset.train.device)
        self.act_undo.setEnabled(self.doc.can_undo)
        self.act_redo.setEnabled(self.doc.can_redo)
        self.act_undo.setText(f"&Undo {self.doc.undo_text}" if self.doc.can_undo else "&Undo")
        self.act_redo.setText(f"&Redo {self.doc.redo_text}" if self.doc.can_redo else "&Redo")
        self._sync_preset_combo()
        if self.current_run is None:
            self._show_budget()
        self._update_title()
        self._update_derived()

    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.doc.title}[*] — {APP_TITLE}")
        self.setWindowModified(self.doc.dirty)

    def validation_errors(self) -> list[SpecError]:
        """Every known problem with the preset: the spec's, then the task's own checks and
        its data (each names its field)."""
        preset = self.doc.preset
        errors = []
        err = self.doc.validation_error()
        if err is not None:
            errors.append(err)
        check = self.resolver.check(preset)
        self._task_pending = check is False
        if isinstance(check, SpecError) and not any(e.field == check.field for e in errors):
            errors.append(check)
        result = self.resolver.model_io(preset) if not errors else None
        if result is not None and result.error is not None:
            errors.append(result.error)
        return errors

    def _update_derived(self) -> None:
        """Errors beside their fields, the diagram, and whether Train is possible."""
        if self._closed:
            return
        preset = self.doc.preset
        errors = self.validation_errors()
        self._errors = errors
        rest = self.editor.show_errors(errors)
        rest = self.training.show_errors(rest)
        if rest:
            self.editor.general_error.show_error("; ".join(str(e) for e in rest))
        self._redraw_diagram(preset, errors)
        running = self._thread is not None
        self.act_train.setEnabled(not errors and not running)
        if errors:
            self.act_train.setToolTip(f"Fix first: {errors[0]}")
            self.statusBar().showMessage(f"⚠ {errors[0]}")
            self._last_message = str(errors[0])
        else:
            self.act_train.setToolTip("Train (F5)")
            if self._last_message:
                self.statusBar().clearMessage()
                self._last_message = ""

    def _lengths(self, preset: Preset) -> tuple[int | None, int | None]:
        info = self.resolver.task_info(preset.data.task)
        options = dict(info.options) if info is not None else {}
        options.update(preset.data.options)

        def first(*keys):
            for k in keys:
                v = options.get(k)
                if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                    return v
            return None

        # The input length under the names the tasks use (a series' "length" is not it).
        seq = first("seq_len", "clip_len", "window", "max_len", "src_len", "context", "num_frames")
        out = first("out_len", "target_len", "tgt_len", "output_len", "max_target_len", "caption_len", "gen_len",
                    "horizon")
        return seq, out

    def _redraw_diagram(self, preset: Preset, errors: list[SpecError]) -> None:
        """Draw the design even when it has errors (with the first one in the footer);
        sizes come from the task's ModelIO when its data is ready, else an estimate."""
        data_ok = not any(e.field.startswith("data") for e in errors)
        result = self.resolver.model_io(preset) if data_ok else None
        if result is not None and result.io is not None:
            io, note = result.io, "sizes from the task's data"
        else:
            io = fallback_io(preset)
            note = ("sizes estimated: the task is preparing its data…" if data_ok and result is None
                    else "sizes estimated: the task could not prepare its data")
        if errors:
            note += f"   ⚠ {errors[0]}"
        seq, out = self._lengths(preset)
        try:
            report = spec.parameter_report(preset.model, io)
            self.diagram.diagram.rebuild(preset, report, io, seq, out, note)
            self.diagram.fit()
        except Exception as exc:  # noqa: BLE001 - a design too broken to count: say why instead of drawing
            self.diagram.diagram.clear()
            reason = errors[0] if errors else f"{type(exc).__name__}: {exc}"
            self.diagram.diagram.addSimpleText(f"Cannot draw this design yet: {reason}")
            self.diagram.diagram.model = None

    @Slot()
    def _on_task_info(self) -> None:
        from workbench.tasks import TASKS

        infos = {n: self.resolver.task_info(n) for n in TASKS}
        self.editor.set_task_infos({k: v for k, v in infos.items() if v is not None})
        self._update_derived()

    @Slot(list)
    def _on_devices(self, devices: list) -> None:
        set_device_availability(self.device_combo, devices)
        self.training.set_devices(devices)
        for name, act in self.device_actions.items():
            act.setEnabled(name in ("auto", "cpu") or name in devices)

    # ================================================================== files
    def _confirm_discard_changes(self) -> bool:
        if not self.doc.dirty:
            return True
        answer = self._ask("save_changes", "Unsaved changes",
                           f"Save the changes to {self.doc.title}?",
                           [("save", "Save", QMessageBox.ButtonRole.AcceptRole),
                            ("discard", "Don't save", QMessageBox.ButtonRole.DestructiveRole),
                            ("cancel", "Cancel", QMessageBox.ButtonRole.RejectRole)], "save")
        if answer == "save":
            return self.save()
        return answer == "discard"

    def new_preset(self) -> None:
        if not self._confirm_discard_changes():
            return
        preset = builtin_presets.load_builtin("adding_lstm")
        preset.name = "untitled"
        preset.description = ""
        self.doc.replace(preset)

    def open_builtin(self, name: str, quiet: bool = False) -> bool:
        if not quiet and not self._confirm_discard_changes():
            return False
        try:
            preset = builtin_presets.load_builtin(name)
        except SpecError as exc:
            self.info.show_message(f"Cannot open the built-in preset {name}: {exc}", "error")
            return False
        self.doc.replace(preset, builtin=name)
        self.statusBar().showMessage(f"Opened built-in preset {name}: {preset.description}", 8000)
        return True

    def open_preset(self, path: str | Path | None = None, quiet: bool = False) -> bool:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Open preset", self._last_dir(), "Presets (*.json);;All (*)")
            if not path:
                return False
        if not quiet and not self._confirm_discard_changes():
            return False
        try:
            preset = spec.load(path)
        except SpecError as exc:
            self.info.show_message(f"Cannot open {path}: {exc}", "error")
            self.statusBar().showMessage(f"⚠ {exc}", 10000)
            return False
        builtin = None
        if Path(path).resolve().parent == builtin_presets.BUILTIN_DIR.resolve():
            builtin = Path(path).stem  # built-ins are read-only: Save asks for a new file
            self.doc.replace(preset, builtin=builtin)
        else:
            self.doc.replace(preset, path=path)
            self._add_recent(Path(path).resolve())
        self.settings.setValue("session/lastDir", str(Path(path).resolve().parent))
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def _last_dir(self) -> str:
        return str(self.settings.value("session/lastDir", str(Path.home())))

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self._save_to(self.doc.path)

    def save_as(self, path: str | Path | None = None) -> bool:
        if path is None:
            suggestion = str(Path(self._last_dir()) / f"{self.doc.preset.name or 'preset'}.json")
            path, _ = QFileDialog.getSaveFileName(self, "Save preset as", suggestion, "Presets (*.json)")
            if not path:
                return False
            if not path.endswith(".json"):
                path += ".json"
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.doc.save(path)
        except (SpecError, OSError) as exc:
            self.info.show_message(f"Not saved: {exc}", "error")
            self.statusBar().showMessage(f"⚠ not saved: {exc}", 10000)
            return False
        self._add_recent(Path(path).resolve())
        self.settings.setValue("session/lastDir", str(Path(path).resolve().parent))
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def export_preset(self, path: str | Path | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export preset copy", self._last_dir(), "Presets (*.json)")
            if not path:
                return False
        try:
            spec.save(self.doc.preset, path)
        except (SpecError, OSError) as exc:
            self.info.show_message(f"Not exported: {exc}", "error")
            return False
        self.statusBar().showMessage(f"Exported {path}", 5000)
        return True

    def browse_data(self, path: str | None = None) -> None:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a data file", self._last_dir(), "All files (*)")
            if not path:
                return
        self.doc.set("data.path", str(path), text="Set data file", merge=False)

    def export_diagram(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            suggestion = str(Path(self._last_dir()) / f"{self.doc.preset.name}-diagram.png")
            path, _ = QFileDialog.getSaveFileName(self, "Export diagram", suggestion, "PNG image (*.png);;SVG (*.svg)")
            if not path:
                return None
        try:
            out = self.diagram.export(path)
        except OSError as exc:
            self.info.show_message(f"Not exported: {exc}", "error")
            return None
        self.statusBar().showMessage(f"Diagram saved to {out}", 5000)
        return out

    def export_panel(self, panel: PlotPanel, kind: str, path: str | Path | None = None) -> Path | None:
        if path is None:
            base = Path(self._last_dir()) / (panel.csv_name if kind == "csv" else
                                             panel.csv_name.replace(".csv", ".png"))
            filt = "CSV (*.csv)" if kind == "csv" else "PNG image (*.png);;SVG (*.svg)"
            path, _ = QFileDialog.getSaveFileName(self, f"Save {panel.title}", str(base), filt)
            if not path:
                return None
        try:
            if kind == "csv":
                out = panel.save_csv(path, self.runs, self.current_run)
            else:
                out = panel.save_image(path)
        except OSError as exc:
            self.info.show_message(f"Not saved: {exc}", "error")
            return None
        self.statusBar().showMessage(f"Saved {out}", 5000)
        return out

    # ---------------------------------------------------------------- drag and drop
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            if url.isLocalFile():
                self.open_dropped(url.toLocalFile())
                event.acceptProposedAction()
                return
        event.ignore()

    def open_dropped(self, path: str | Path) -> str:
        """A dropped file: a preset opens, a run folder overlays, anything else becomes
        the data file. Returns what it did ("preset", "run", "data" or "error")."""
        path = Path(path)
        if path.is_dir():
            if (path / "metrics.jsonl").is_file():
                return "run" if self.load_run_folder(path) else "error"
            self.info.show_message(f"{path} is a folder without metrics.jsonl: drop a preset (.json), a run folder "
                                   f"or a data file", "error")
            return "error"
        if path.suffix.lower() == ".json":
            try:
                spec.load(path)
            except SpecError as exc:
                if exc.field != "schema_version":  # a preset with a mistake: say which
                    self.info.show_message(f"Cannot open {path}: {exc}", "error")
                    return "error"
                # JSON without a schema version is not a preset: treat it as data.
            else:
                return "preset" if self.open_preset(path) else "error"
        self.doc.set("data.path", str(path), text="Set data file (dropped)", merge=False)
        self.statusBar().showMessage(f"Data file set to {path}", 5000)
        return "data"

    # ================================================================== runs and overlays
    def _next_colour(self) -> str:
        colour = PALETTE[self._colour_index % len(PALETTE)]
        self._colour_index += 1
        return colour

    def load_run_folder(self, path: str | Path | None = None) -> RunData | None:
        if path is None:
            path = QFileDialog.getExistingDirectory(self, "Compare with run folder", str(self.data_dir / "runs"))
            if not path:
                return None
        try:
            run = load_run_folder(path, self._next_colour())
        except (OSError, ValueError) as exc:
            self.info.show_message(f"Cannot load run: {exc}", "error")
            return None
        except Exception as exc:  # noqa: BLE001 - a hostile metrics file must cost a message, not the window
            self.info.show_message(f"Cannot load run {path}: its metrics.jsonl holds malformed records "
                                   f"({type(exc).__name__}: {exc})", "error")
            return None
        self.runs.append(run)
        self._plots_changed()
        self.statusBar().showMessage(f"Overlaying {run.name} ({run.last_step} steps)", 5000)
        self._try_run(run.run_dir)
        return run

    def _try_run(self, run_dir: str | Path) -> None:
        """Hand a run folder that holds trained weights to the Try it panel."""
        folder = Path(run_dir) if run_dir else None
        if folder is not None and (folder / "preset.json").is_file() and (
                (folder / "model.safetensors").is_file() or any((folder / "checkpoints").glob("*.safetensors"))):
            self.tryout.open_run(folder)

    def remove_run(self, run: RunData) -> None:
        if run is self.current_run and self._thread is not None:
            self.statusBar().showMessage("The running run stays; stop it first", 4000)
            return
        if run in self.runs:
            self.runs.remove(run)
        if run in self._session_runs:
            self._session_runs.remove(run)
        if run is self.current_run:
            self.current_run = None
        self._plots_changed()

    def clear_runs(self) -> None:
        keep = self.current_run if self._thread is not None else None
        self.runs = [keep] if keep is not None else []
        self._session_runs = [r for r in self._session_runs if r is keep]
        self.current_run = keep
        self._plots_changed()

    def open_runs_folder(self) -> None:
        folder = self.data_dir / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _plots_changed(self) -> None:
        for panel in self.panels:
            panel._drawn.clear()
        self.runs_panel.set_runs(self.runs)
        self._on_frame(force=True)

    def _new_run_dir(self, name: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "run"
        base = self.data_dir / "runs" / f"{safe}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    # ================================================================== training
    @property
    def training_active(self) -> bool:
        return self._thread is not None

    def start_training(self) -> bool:
        if self._thread is not None:
            return False
        errors = self.validation_errors()
        if errors:
            self.statusBar().showMessage(f"⚠ cannot train yet: {errors[0]}", 10000)
            self.info.show_message(f"Cannot train yet — {errors[0]}", "error")
            return False
        preset = preset_for_gui(self.doc.preset)
        run_dir = self._new_run_dir(preset.name)
        # Earlier runs stay for overlay; the oldest session runs go past the limit.
        for r in self.runs:
            r.live = False
        while len(self._session_runs) >= MAX_SESSION_RUNS:
            oldest = self._session_runs.pop(0)
            if oldest in self.runs:
                self.runs.remove(oldest)
        number = sum(1 for r in self.runs if r.name.startswith(preset.name)) + 1
        run = RunData(name=f"{preset.name}" + (f" #{number}" if number > 1 else ""), colour=self._next_colour(),
                      live=True, run_dir=str(run_dir), status="starting", clip=preset.train.clip,
                      clip_value=preset.train.clip_value, total_steps=preset.train.steps, task=preset.data.task)
        self.runs.append(run)
        self._session_runs.append(run)
        self._launch(preset, run, resume=False)
        return True

    def continue_run(self, run: RunData, total_steps: int | None = None) -> bool:
        """Train ``run`` on from its folder's last checkpoint, in that folder, its curves
        going on where they stopped: to its preset's step budget (a stopped or failed run),
        or to ``total_steps`` when that is more (a finished run trained further). The
        preset is the folder's own, with this window's device and thread settings."""
        if self._thread is not None:
            self.statusBar().showMessage("A run is training; stop it first", 4000)
            return False
        folder = Path(run.run_dir) if run.run_dir else None
        checkpoints = complete_checkpoints(folder) if folder is not None else []
        if folder is None or not (folder / "preset.json").is_file() or not checkpoints:
            self.info.show_message(f"Cannot continue {run.name}: its run folder holds no preset.json and "
                                   f"checkpoint to continue from", "error")
            return False
        try:
            preset = spec.load(folder / "preset.json")
        except (SpecError, OSError, ValueError) as exc:
            self.info.show_message(f"Cannot continue {run.name}: {exc}", "error")
            return False
        done = checkpoints[-1][0]
        steps = max(total_steps or 0, preset.train.steps)
        if steps <= done:
            self.info.show_message(f"{run.name} has trained all {preset.train.steps} of its steps: ask for more "
                                   f"to continue it", "info")
            return False
        if steps != preset.train.steps:
            preset = spec.with_overrides(preset, [f"train.steps={steps}"])
        preset.train.device = self.doc.preset.train.device
        preset = preset_for_gui(preset)
        for other in self.runs:
            other.live = False
        run.live, run.status, run.visible = True, "starting", True
        run.total_steps = steps
        if run not in self.runs:
            self.runs.append(run)
        self._launch(preset, run, resume=True)
        return True

    def _continue_selected(self) -> None:
        """The runs panel's Continue: a stopped run goes on to its budget; a finished one
        asks how far."""
        run = self.runs_panel.selected()
        if run is None:
            self.statusBar().showMessage("Select a run to continue", 4000)
            return
        total = None
        if run.status == "finished":
            answer = self._ask_number("continue_steps", "Continue training",
                                      f"{run.name} finished at step {run.last_step}. Train it on to step:",
                                      max(2 * run.last_step, run.last_step + 1), run.last_step + 1, spec.MAX_STEPS)
            if answer is None:
                return
            total = answer
        self.continue_run(run, total)

    def _ask_number(self, kind: str, title: str, text: str, default: int, lo: int, hi: int) -> int | None:
        """A whole number from the user; ``dialog_answers[kind]`` answers it without a dialog."""
        if kind in self.dialog_answers:
            return int(self.dialog_answers[kind])
        value, ok = QInputDialog.getInt(self, title, text, default, lo, hi)
        return int(value) if ok else None

    def _launch(self, preset: Preset, run: RunData, resume: bool) -> None:
        """Start the worker thread that trains ``preset`` into ``run`` (its folder)."""
        self.current_run = run
        self.info.hide()
        run_dir = Path(run.run_dir)
        thread = QThread(self)
        thread.setObjectName("workbench-trainer")
        worker = TrainWorker(preset, run_dir, resume=resume)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        queued = Qt.ConnectionType.QueuedConnection
        worker.records.connect(self._on_records, queued)
        worker.started.connect(self._on_worker_started, queued)
        worker.failed.connect(self._on_worker_failed, queued)
        worker.finished.connect(self._on_worker_finished, queued)
        worker.finished.connect(thread.quit)
        thread.finished.connect(self._on_thread_finished, queued)
        self._thread, self._worker = thread, worker  # keep references: Qt must not outlive them
        self._run_started_at = time.perf_counter()
        self._paused_total, self._paused_since = 0.0, None
        self._segment_first_step = 0
        self.progress.setRange(0, max(preset.train.steps, 1))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self.device_label.setText(f"device: {preset.train.device} (starting…)")
        self._set_running_ui(True)
        self.statusBar().showMessage(f"{'Continuing' if resume else 'Training'} {preset.name}: preparing the task…")
        self._plots_changed()
        thread.start()

    def toggle_pause(self) -> None:
        if self._worker is None:
            return
        if self._worker.paused:
            self._worker.resume()
            if self._paused_since is not None:
                self._paused_total += time.perf_counter() - self._paused_since
            self._paused_since = None
            self.act_pause.setText("&Pause")
            self.act_pause.setIcon(icon("pause"))
            self.statusBar().showMessage("Training resumed", 3000)
            if self.current_run is not None:
                self.current_run.status = "running"
        else:
            self._worker.pause()
            self._paused_since = time.perf_counter()
            self.act_pause.setText("&Resume")
            self.act_pause.setIcon(icon("train"))
            self.statusBar().showMessage("Training paused (F6 resumes)")
            if self.current_run is not None:
                self.current_run.status = "paused"
        self.runs_panel.set_runs(self.runs)

    @property
    def paused(self) -> bool:
        return self._worker is not None and self._worker.paused

    def stop_training(self) -> None:
        if self._worker is None:
            return
        self._worker.stop()
        self.act_stop.setEnabled(False)
        self.act_pause.setEnabled(False)
        self.statusBar().showMessage("Stopping after this step (the final weights are saved)…")

    def _set_running_ui(self, running: bool) -> None:
        self.act_train.setEnabled(not running and not self._errors)
        self.act_pause.setEnabled(running)
        self.act_stop.setEnabled(running)
        self.runs_panel.resume.setEnabled(not running)  # one run trains at a time
        self.act_pause.setText("&Pause")
        self.act_pause.setIcon(icon("pause"))

    @Slot(dict)
    def _on_worker_started(self, info: dict) -> None:
        self.statusBar().showMessage(f"Training… run folder {info.get('run_dir')}", 5000)

    @Slot(list)
    def _on_records(self, records: list) -> None:
        from workbench.engine.records import End, NonFinite, Record, Start, from_json

        run = self.current_run
        if run is None or self._closed:
            return
        records = [r if isinstance(r, Record) else from_json(r) for r in records]
        run.add(records)
        for r in records:
            if isinstance(r, Start):
                threads = r.torch_threads
                self.device_label.setText(f"device: {r.device}"
                                          + (f" · {threads} torch thread{'s' if threads != 1 else ''}"
                                             if r.device.startswith("cpu") else ""))
                self.progress.setRange(0, max(r.total_steps, 1))
                # throughput and ETA count this session's steps from here (a continued
                # run starts at its checkpoint's step, not at 0)
                self._run_started_at = time.perf_counter()
                self._paused_total = 0.0
                if self._paused_since is not None:  # paused before the set-up ended
                    self._paused_since = time.perf_counter()
                self._segment_first_step = r.step
                self.statusBar().showMessage(f"Training on {r.device}: {r.parameters:,} parameters", 5000)
            elif isinstance(r, NonFinite):
                self.statusBar().showMessage(f"⚠ non-finite {r.what}: {r.message}", 10000)
            elif isinstance(r, End):
                text = f"Training {r.status} after {r.step} steps in {_duration(r.time_s)}"
                if r.message:
                    text += f": {r.message}"
                self.statusBar().showMessage(text, 15000)

    @Slot(str)
    def _on_worker_failed(self, message: str) -> None:
        if self.current_run is not None:
            self.current_run.status = "failed"
        self.info.show_message(f"Training failed: {message}", "error")
        self.statusBar().showMessage(f"⚠ training failed: {message}", 15000)

    @Slot(object)
    def _on_worker_finished(self, end) -> None:
        """``end``: the run's End record (None when it never started)."""
        run = self.current_run
        if run is not None:
            run.live = False
            if run.status in ("running", "paused", "starting"):
                run.status = end.status if end is not None else "failed"
        self._set_running_ui(False)

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, worker = self._thread, self._worker
        if thread is not None:
            thread.wait()
        self._thread, self._worker = None, None
        if worker is not None:
            worker.deleteLater()
        if thread is not None:
            thread.deleteLater()
        self._set_running_ui(False)
        self._update_derived()
        self._plots_changed()
        if not self._close_pending and self.current_run is not None:
            self._try_run(self.current_run.run_dir)
        if self._close_pending:
            if self._discard_on_close and self.current_run is not None:
                self._discard_run_dir(Path(self.current_run.run_dir))
            self.close()

    def _discard_run_dir(self, folder: Path) -> None:
        runs_root = (self.data_dir / "runs").resolve()
        try:
            if folder.resolve().parent == runs_root and folder.is_dir():
                shutil.rmtree(folder)
                from workbench.runs import HistoryError, RunHistory

                try:  # the run session recorded it from its start: a discarded run leaves no row
                    history = RunHistory()
                    for info in history.list(run_dir=folder):
                        history.delete(info.id)
                except HistoryError:
                    pass
        except OSError as exc:
            self.statusBar().showMessage(f"could not delete {folder}: {exc}", 5000)

    # ================================================================== the plot timer
    def _on_frame(self, force: bool = False) -> None:
        """Redraw plots from the buffers, then the status line. One panel per tick, in
        turn (each panel ~10 Hz at the 30 Hz tick), so no single frame's update + paint
        blocks the event loop for long; the tick slows down when frames cost more than
        half of it (a slow or busy machine)."""
        if self._closed:
            return
        painted = PaintClock.take()  # what the previous frame's changes cost to paint
        if self._frame_update is not None:
            self.frame_times.append(self._frame_update + painted)
            if len(self.frame_times) > 100_000:
                del self.frame_times[:50_000]
            cost = self._frame_update + painted
            self.frame_timer.setInterval(int(min(250, max(FRAME_MS, 2000 * cost))))
            self._frame_update = None
        t0 = time.perf_counter()
        drew = False
        n = len(self.panels)
        for i in range(n):
            panel = self.panels[(self._next_panel + i) % n]
            if (force or panel.isVisible()) and panel.refresh(self.runs, self.current_run):
                drew = True
                if not force:
                    self._next_panel = (self._next_panel + i + 1) % n
                    break
        if drew:
            self._frame_update = time.perf_counter() - t0
        self._update_progress()
        if drew or force:
            self.runs_panel.set_runs(self.runs)

    def _update_progress(self) -> None:
        run = self.current_run
        if run is None or not len(run.steps):
            return
        step = run.last_step
        total = max(run.total_steps, 1)
        self.progress.setFormat("%v / %m steps")
        self.progress.setMaximum(total)
        self.progress.setValue(min(step, total))
        if self._thread is None:
            # Stopped or finished: an ETA and a rate would describe a run that no longer trains.
            text = self.time_label.text()
            if "ETA" in text:
                self.time_label.setText(text.split(" · ETA")[0].replace("elapsed", "trained for"))
                self.speed_label.setText("")
            return
        now = time.perf_counter()
        paused = self._paused_total + ((now - self._paused_since) if self._paused_since else 0.0)
        elapsed = now - self._run_started_at - paused
        done = step - self._segment_first_step  # this session's steps: a continued run began at its checkpoint
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = (total - step) / rate if rate > 0 else math.nan
        self.time_label.setText(f"elapsed {_duration(elapsed)} · ETA {_duration(eta)}")
        ups = run.units_per_s.view()
        recent = ups[-50:]
        units = float(recent[recent > 0].mean()) if (recent > 0).any() else 0.0
        self.speed_label.setText(f"{rate:.1f} steps/s · {units:,.0f} elements/s")

    # ================================================================== help
    def show_welcome(self) -> None:
        self.welcome.show()

    def show_shortcuts(self) -> None:
        lines = []
        for act in (self.act_new, self.act_open, self.act_save, self.act_save_as, self.act_undo, self.act_redo,
                    self.act_train, self.act_pause, self.act_stop, self.act_compare, self.act_export_diagram,
                    self.act_add_layer, self.act_remove_layer, self.act_log_loss, self.act_welcome):
            keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
            lines.append(f"<tr><td>{act.text().replace('&', '')}</td><td><b>{keys}</b></td></tr>")
        lines.append(f"<tr><td>Show/hide panels</td><td><b>Alt+1 … Alt+{len(self.docks)}</b></td></tr>")
        self._info_dialog("Keyboard shortcuts", "<table>" + "".join(lines) + "</table>")

    def show_about(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("rnn-workbench")
        except PackageNotFoundError:
            ver = "development"
        self._info_dialog("About RNN Workbench",
                          f"<b>RNN Workbench</b> {ver}<br>Design, train and inspect recurrent neural networks, with "
                          f"the gradients through time plotted live.<br>MIT licence.<br>Runs are saved in "
                          f"{self.data_dir / 'runs'}")

    def _info_dialog(self, title: str, html: str) -> None:
        if "info" in self.dialog_answers:
            return
        box = QMessageBox(self)
        box.setWindowTitle(title)
        box.setText(html)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.exec()

    def _ask(self, kind: str, title: str, text: str, buttons: list, default: str) -> str:
        """A question with named answers; ``dialog_answers[kind]`` answers it without a dialog."""
        if kind in self.dialog_answers:
            return self.dialog_answers[kind]
        box = QMessageBox(self)
        box.setWindowTitle(title)
        box.setText(text)
        box.setIcon(QMessageBox.Icon.Question)
        made = {}
        for key, label, role in buttons:
            made[box.addButton(label, role)] = key
            if key == default:
                box.setDefaultButton(list(made)[-1])
        box.exec()
        return made.get(box.clickedButton(), "cancel")

    # ================================================================== close
    def closeEvent(self, event) -> None:  # noqa: N802
        if self._thread is not None:
            if not self._close_pending:
                answer = self._ask("keep_run", "Training is running",
                                   "Training is still running. Stop it and close the window?\n\n"
                                   "Keep the run: its folder keeps the weights and metrics so far.\n"
                                   "Discard the run: its folder is deleted.",
                                   [("keep", "Stop and keep the run", QMessageBox.ButtonRole.AcceptRole),
                                    ("discard", "Stop and discard it", QMessageBox.ButtonRole.DestructiveRole),
                                    ("cancel", "Cancel", QMessageBox.ButtonRole.RejectRole)], "keep")
                if answer == "cancel":
                    event.ignore()
                    return
                self._close_pending = True
                self._discard_on_close = answer == "discard"
                self._worker.resume()  # a paused trainer must wake to see the stop
                self._worker.stop()
                self.statusBar().showMessage("Stopping training before closing…")
            # The window closes when the worker thread has finished (_on_thread_finished).
            event.ignore()
            return
        if not self._close_pending and not self._confirm_discard_changes():
            event.ignore()
            return
        if self._close_pending and self.doc.dirty and not self._confirm_discard_changes():
            self._close_pending = False
            event.ignore()
            return
        self._save_settings()
        self._closed = True
        self.frame_timer.stop()
        self.resolver.shutdown(wait=True)
        self.tryout.shutdown()
        event.accept()
