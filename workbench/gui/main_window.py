"""The workbench window: design a network, train it in a worker thread, watch the loss
and the gradients through time live.

Threads: the trainer runs in a TrainWorker moved to a QThread; its signals reach this
window queued, carrying plain records that are appended to RunData buffers. One QTimer
(<= 30 Hz, paced by workbench/gui/pacing.py) redraws the plots on screen from the buffers.
Nothing here waits on training, imports torch, or touches a widget from another thread.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QSettings, QStandardPaths, Qt, QTimer, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QIcon
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QFileDialog,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from workbench import builtin, spec
from workbench import presets as builtin_presets
from workbench.fileio import complete_checkpoints
from workbench.gui import actions as action_table
from workbench.gui.diagram import DiagramView
from workbench.gui.document import Change, PresetDocument
from workbench.gui.editor import ArchitectureEditor
from workbench.gui.exporter import KINDS as EXPORT_KINDS
from workbench.gui.exporter import RunExporter, ask_export_target, done_message
from workbench.gui.pacing import FramePacer
from workbench.gui.plots import DynamicsPanel, GradientPanel, LossPanel, NormPanel, PaintClock, PlotPanel
from workbench.gui.resolver import Resolver, fallback_io, input_lengths
from workbench.gui.rundata import RunData
from workbench.gui.runs_model import RunEntry, RunsEvent, RunsModel
from workbench.gui.runs_panel import RunsPanel
from workbench.gui.training_controller import TrainingController
from workbench.gui.training_panel import DEVICE_LABELS, TrainingPanel, set_device_availability
from workbench.gui.tryout import TryoutPanel
from workbench.gui.window_parts import InfoBar, StatusLine, Welcome, _duration
from workbench.gui.window_settings import FIRST_PRESET, WindowSettings  # noqa: F401 - FIRST_PRESET: tests
from workbench.gui.worker import preset_for_gui
from workbench.spec import Preset, SpecError

APP_TITLE = "RNN Workbench"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
MAX_SESSION_RUNS = 8  # earlier in-app runs kept for overlay
FRAME_MS = 33  # the plot timer: <= 30 Hz (its pace: workbench/gui/pacing.py)
STATUS_S = 1.0  # the status line and the run's row in the Runs panel: at least this often while training


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


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None, data_dir: str | Path | None = None,
                 open_default: bool = True, history=None):
        """``history``: the workbench.runs.RunHistory the Runs panel lists (default: the
        user's)."""
        super().__init__()
        self.settings = settings if settings is not None else QSettings()
        self.prefs = WindowSettings(self, self.settings)
        self.data_dir = Path(data_dir) if data_dir else default_data_dir()
        self.doc = PresetDocument()
        self.resolver = Resolver(self)
        self.runs_model = RunsModel(history)  # the history's runs and this session's (Qt-free)
        self._session_runs: list[RunData] = []  # runs trained in this window (the oldest go past a limit)
        self.current_run: RunData | None = None
        self.trainer = TrainingController(self)  # the training thread's lifecycle
        self.exporter = RunExporter(self)
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
        self.pacer = FramePacer()  # whether a frame tick draws, and when the next comes
        self._status_at = self._row_at = -1e9  # when the status line / the run's row were last updated
        self._row_stale = False  # a frame drew news that the run's row does not show yet

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self._build_central()
        self._build_docks()
        self.actions = action_table.build(self, icon=icon)
        self._build_toolbar_widgets()
        self._build_statusbar()
        self.loss_panel.log_box.toggled.connect(self.act_log_loss.setChecked)

        self.doc.subscribe(self._on_doc_change)
        self.resolver.task_info_ready.connect(self._on_task_info)
        self.resolver.io_ready.connect(lambda _key: self._update_derived())
        self.resolver.devices_ready.connect(self._on_devices)
        self.editor.browse_requested.connect(self.browse_data)
        self.runs_panel.load_requested.connect(lambda: self.load_run_folder())
        self.runs_panel.remove_requested.connect(self.remove_run)
        self.runs_panel.continue_requested.connect(self.continue_selected)
        self.runs_panel.overlay_requested.connect(self.overlay_entry)
        self.runs_panel.try_requested.connect(lambda entry: self._try_run(entry.run_dir, show=True))
        self.runs_panel.export_requested.connect(lambda kind: self.export_selected(kind))
        self.runs_model.subscribe(self._on_runs_event)
        self.trainer.records.connect(self._on_records)
        self.trainer.started.connect(lambda info: self.statusBar().showMessage(
            f"Training… run folder {info.get('run_dir')}", 5000))
        self.trainer.failed.connect(self._on_worker_failed)
        self.trainer.finished.connect(self._on_worker_finished)
        self.trainer.thread_finished.connect(self._on_thread_finished)
        self.trainer.state_changed.connect(lambda _state: self._set_running_ui())
        self.exporter.done.connect(lambda kind, paths: self.statusBar().showMessage(done_message(kind, paths), 10000))
        self.exporter.failed.connect(lambda kind, message: self.info.show_message(
            f"Not exported ({EXPORT_KINDS[kind][0].lower()}): {message}", "error"))
        for panel in self.plot_panels:
            panel.export_requested.connect(lambda kind, p=panel: self.export_panel(p, kind))

        self.frame_timer = QTimer(self)
        self.frame_timer.setInterval(FRAME_MS)
        self.frame_timer.timeout.connect(self._on_frame)
        self.frame_timer.start()
        # A user's action that changes what a plot must show: a pan or zoom (re-decimated for the
        # new view), a dock tabbed in; these wake the plots at once (the pacer: full frame rate
        # for a moment). Signals, not an application event filter: that ran Python for each of
        # ~600 events a second while training, each taking the GIL from the trainer.
        for panel in self.plot_panels:
            for item in panel.plot_items():
                item.getViewBox().sigRangeChangedManually.connect(lambda *_: self._wake_plots(input_=True))
        for dock in (self.loss_dock, self.grad_dock, self.norm_dock, self.dynamics_dock):
            dock.visibilityChanged.connect(lambda shown: shown and self._wake_plots(input_=True))

        self.prefs.restore()
        self.runs_model.load_history()  # the Runs panel lists the history's runs from the start
        self._set_running_ui()
        if open_default:
            self.prefs.open_start_preset()
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
        self.runs_panel = RunsPanel(self.runs_model)
        self.loss_panel = LossPanel()
        self.grad_panel = GradientPanel()
        self.norm_panel = NormPanel()
        self.dynamics_panel = DynamicsPanel()
        # panels: the views of the training signal (loss, gradients, norms); plot_panels:
        # every plot panel the frame timer draws and File > Export saves, Dynamics included
        self.panels: list[PlotPanel] = [self.loss_panel, self.grad_panel, self.norm_panel]
        self.plot_panels: list[PlotPanel] = self.panels + [self.dynamics_panel]
        self.design_dock = self._dock("Design", "designDock", self.editor, left)
        self.training_dock = self._dock("Training", "trainingDock", self.training, left)
        self.runs_dock = self._dock("Runs", "runsDock", self.runs_panel, left)
        self.loss_dock = self._dock("Loss", "lossDock", self.loss_panel, bottom)
        self.grad_dock = self._dock("Gradient through time", "gradDock", self.grad_panel, bottom)
        self.norm_dock = self._dock("Gradient norm · learning rate", "normDock", self.norm_panel, bottom)
        # why the gradient vanishes: Jacobians, spectra, gates (a tab beside the gradient panel)
        self.dynamics_dock = self._dock("Dynamics", "dynamicsDock", self.dynamics_panel, bottom)
        # Try it: the trained model as a playground (fed each finished or opened run folder).
        self.tryout = TryoutPanel()
        self.tryout_dock = self._dock("Try it", "tryoutDock", self.tryout, Qt.DockWidgetArea.RightDockWidgetArea)
        self.docks = [self.design_dock, self.training_dock, self.runs_dock, self.loss_dock, self.grad_dock,
                      self.norm_dock, self.tryout_dock, self.dynamics_dock]
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
        self.tabifyDockWidget(self.grad_dock, self.dynamics_dock)
        self.grad_dock.raise_()
        self.resizeDocks([self.design_dock], [390], Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock, self.grad_dock, self.norm_dock], [270, 420, 230],
                         Qt.Orientation.Horizontal)
        self.resizeDocks([self.loss_dock], [340], Qt.Orientation.Vertical)
        if self.isVisible():
            self.resize(size)  # a reset rearranges the panels, never the window

    # ---------------------------------------------------------------- actions (workbench/gui/actions.py)
    def conditions(self) -> dict[str, bool]:
        """When the actions are enabled: the table's ``enabled`` column names these."""
        selected = self.runs_model.selected
        weights = selected is not None and selected.has_weights() and not (selected.data is not None
                                                                            and selected.data.live)
        return {"can_undo": self.doc.can_undo, "can_redo": self.doc.can_redo,
                "can_train": not self._errors and not self.trainer.active,
                "can_pause": self.trainer.active and self.trainer.state != "stopping",
                "can_continue": not self.trainer.active and RunsPanel.can_continue(selected),
                "selected_has_weights": weights}

    def _refresh_actions(self) -> None:
        action_table.refresh_enabled(self, self.actions)

    def _build_toolbar_widgets(self) -> None:
        """The Run toolbar's preset and device pickers (widgets, beside the table's actions)."""
        tb = self.toolbars["Run"]
        first = self.act_train
        tb.insertWidget(first, QLabel(" Preset "))
        self.preset_combo = QComboBox()
        self.preset_combo.setToolTip("Open a built-in preset")
        self.preset_combo.addItem("built-in…", None)
        for name in builtin_presets.builtin_names():
            self.preset_combo.addItem(name, name)
        self.preset_combo.activated.connect(self._on_preset_combo)
        tb.insertWidget(first, self.preset_combo)
        tb.insertSeparator(first)
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

    def _build_statusbar(self) -> None:
        self.status_line = StatusLine(self.statusBar())
        line = self.status_line  # the window's names for its widgets (tests and benchmarks read them)
        self.device_label, self.progress, self.time_label, self.speed_label = (
            line.device_label, line.progress, line.time_label, line.speed_label)

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
        self.act_undo.setText(f"&Undo {self.doc.undo_text}" if self.doc.can_undo else "&Undo")
        self.act_redo.setText(f"&Redo {self.doc.redo_text}" if self.doc.can_redo else "&Redo")
        self._sync_preset_combo()
        if self.current_run is None:
            self.status_line.show_budget(self.doc.preset.train.steps)
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
        self._refresh_actions()
        if errors:
            self.act_train.setToolTip(f"Fix first: {errors[0]}")
            self.statusBar().showMessage(f"⚠ {errors[0]}")
            self._last_message = str(errors[0])
        else:
            self.act_train.setToolTip("Train (F5)")
            if self._last_message:
                self.statusBar().clearMessage()
                self._last_message = ""

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
        seq, out = input_lengths(preset, self.resolver.task_info(preset.data.task))
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
        # the Runs list names each task's main metric (a tagger's accuracy, a language model's nats per char)
        self.runs_model.set_metric_names({name: str(getattr(info.cls, "main_metric", "") or "")
                                          for name, info in infos.items() if info is not None and info.cls})
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
            path, _ = QFileDialog.getOpenFileName(self, "Open preset", self.prefs.last_dir(), "Presets (*.json);;All (*)")
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
            self.prefs.add_recent(Path(path).resolve())
        self.settings.setValue("session/lastDir", str(Path(path).resolve().parent))
        self.statusBar().showMessage(f"Opened {path}", 5000)
        return True

    def recent_files(self) -> list[str]:
        return self.prefs.recent_files()

    def save(self) -> bool:
        if self.doc.path is None:
            return self.save_as()
        return self._save_to(self.doc.path)

    def save_as(self, path: str | Path | None = None) -> bool:
        if path is None:
            suggestion = str(Path(self.prefs.last_dir()) / f"{self.doc.preset.name or 'preset'}.json")
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
        self.prefs.add_recent(Path(path).resolve())
        self.settings.setValue("session/lastDir", str(Path(path).resolve().parent))
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def export_preset(self, path: str | Path | None = None) -> bool:
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export preset copy", self.prefs.last_dir(), "Presets (*.json)")
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
            path, _ = QFileDialog.getOpenFileName(self, "Choose a data file", self.prefs.last_dir(), "All files (*)")
            if not path:
                return
        self.doc.set("data.path", str(path), text="Set data file", merge=False)

    def export_diagram(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            suggestion = str(Path(self.prefs.last_dir()) / f"{self.doc.preset.name}-diagram.png")
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
            base = Path(self.prefs.last_dir()) / (panel.csv_name if kind == "csv" else
                                             panel.csv_name.replace(".csv", ".png"))
            filt = "CSV (*.csv)" if kind == "csv" else "PNG image (*.png);;SVG (*.svg)"
            path, _ = QFileDialog.getSaveFileName(self, f"Save {panel.title}", str(base), filt)
            if not path:
                return None
        try:
            if kind == "csv":
                out = panel.save_csv(path, self.runs, self.current_run)
            else:
                panel.refresh(self.runs, self.current_run)  # a panel behind a tab is drawn only when shown
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

    # ================================================================== runs (the RunsModel) and overlays
    @property
    def runs(self) -> list[RunData]:
        """The curves in the plots, in drawing order (the runs model's list)."""
        return self.runs_model.plotted

    @runs.setter
    def runs(self, runs: list[RunData]) -> None:  # the plots alone (bench/gui_latency.py replays a run so)
        self.runs_model.plotted[:] = list(runs)

    @property
    def training_active(self) -> bool:
        return self.trainer.active

    @property
    def paused(self) -> bool:
        return self.trainer.paused

    @property
    def _worker(self):  # the running TrainWorker (tests stop it directly)
        return self.trainer.worker

    def _next_colour(self) -> str:
        colour = PALETTE[self._colour_index % len(PALETTE)]
        self._colour_index += 1
        return colour

    def _on_runs_event(self, event: RunsEvent) -> None:
        if event.kind in ("select", "reset"):
            self._refresh_actions()

    def load_run_folder(self, path: str | Path | None = None) -> RunData | None:
        """"Open run…": a run folder's curves into the plots (the dialog starts in the
        runs folder); the run is selected in the Runs panel and opened in Try it."""
        if path is None:
            runs_root = self.data_dir / "runs"
            runs_root.mkdir(parents=True, exist_ok=True)
            path = QFileDialog.getExistingDirectory(self, "Open run", str(runs_root))
            if not path:
                return None
        entry = self.runs_model.find(run_dir=path)
        if entry is not None and entry.data is None:  # a history row: its curves join the plots
            if self.overlay_entry(entry, True) is None:
                return None
        else:  # a folder not listed yet, or one already in the plots: opened (again) beside them
            data = self._read_run(path)
            if data is None:
                return None
            entry = self.runs_model.add_run(data, session=True, merge=entry is None)
        run = entry.data
        self._plots_changed()
        self.runs_model.select(entry)
        self.statusBar().showMessage(f"Overlaying {run.name} ({run.last_step} steps)", 5000)
        self._try_run(run.run_dir)
        return run

    def _read_run(self, path: str | Path) -> RunData | None:
        from workbench.gui.rundata import load_run_folder

        try:
            return load_run_folder(path, self._next_colour())
        except (OSError, ValueError) as exc:
            self.info.show_message(f"Cannot load run: {exc}", "error")
        except Exception as exc:  # noqa: BLE001 - a hostile metrics file must cost a message, not the window
            self.info.show_message(f"Cannot load run {path}: its metrics.jsonl holds malformed records "
                                   f"({type(exc).__name__}: {exc})", "error")
        return None

    def overlay_entry(self, entry: RunEntry, shown: bool = True) -> RunData | None:
        """Tick (Compare) or untick a run in the Runs panel: its curves in or out of the plots."""
        if not shown:
            self.runs_model.set_visible(entry, False)
            self._plots_changed()
            return entry.data
        if entry.data is None:
            data = self._read_run(entry.run_dir) if entry.can_overlay() else None
            if data is None:
                if not entry.can_overlay():
                    self.info.show_message(f"Cannot compare {entry.name}: its run folder {entry.run_dir or '?'} "
                                           f"holds no metrics.jsonl", "error")
                self.runs_model.changed(entry)  # untick it again
                return None
            self.runs_model.attach(entry, data)
        else:
            self.runs_model.set_visible(entry, True)
        self._plots_changed()
        return entry.data

    def _try_run(self, run_dir: str | Path, show: bool = False) -> None:
        """Hand a run folder that holds trained weights to the Try it panel (``show``: and raise it)."""
        folder = Path(run_dir) if run_dir else None
        if folder is not None and (folder / "preset.json").is_file() and (
                (folder / "model.safetensors").is_file() or any((folder / "checkpoints").glob("*.safetensors"))):
            self.tryout.open_run(folder)
            if show:
                self.tryout_dock.show()
                self.tryout_dock.raise_()

    def remove_run(self, run: RunData) -> None:
        if run is self.current_run and self.trainer.active:
            self.statusBar().showMessage("The running run stays; stop it first", 4000)
            return
        self.runs_model.unplot(run)
        if run in self._session_runs:
            self._session_runs.remove(run)
        if run is self.current_run:
            self.current_run = None
        self._plots_changed()

    def clear_runs(self) -> None:
        keep = self.current_run if self.trainer.active else None
        for run in list(self.runs):
            if run is not keep:
                self.runs_model.unplot(run)
        self._session_runs = [r for r in self._session_runs if r is keep]
        self.current_run = keep
        self._plots_changed()

    def open_sweep(self):
        """The Sweep dialog for the open preset (workbench/gui/sweep_dialog.py); its trials'
        run folders go under the window's runs folder, each trial's run joins the Runs
        panel and the loss plot as it trains, and a double-clicked one opens here."""
        from workbench.gui.sweep_dialog import SweepDialog

        err = self.doc.validation_error()
        if err:
            self.info.show_message(f"Fix the preset before a sweep: {err}", "error")
            return None
        dialog = SweepDialog(self.doc.preset, self, runs_root=self.data_dir / "runs" / "sweeps",
                             runs=self.runs_model, colour=self._next_colour)
        dialog.open_run.connect(self.open_trial_run)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog

    def open_trial_run(self, path: str | Path) -> RunData | None:
        """A sweep trial's run, double-clicked in the Sweep dialog: the one already listed
        (its curves shown, selected, in Try it), else opened from its folder."""
        entry = self.runs_model.find(run_dir=path)
        if entry is None or entry.data is None:
            return self.load_run_folder(path)
        self.runs_model.set_visible(entry, True)
        self.runs_model.select(entry)
        self._plots_changed()
        self._try_run(entry.run_dir, show=True)
        return entry.data

    def open_runs_folder(self) -> None:
        folder = self.data_dir / "runs"
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _plots_changed(self) -> None:
        for panel in self.plot_panels:
            panel._drawn.clear()
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

    # ---------------------------------------------------------------- export (the selected run)
    def export_selected(self, kind: str, target: str | Path | None = None) -> bool:
        """Export the Runs panel's selected run as ``kind`` (weights / onnx / script), off
        the GUI thread (workbench/gui/exporter.py); ``target``: the file (the script: a
        folder), else asked for."""
        entry = self.runs_model.selected
        if entry is None or not entry.has_weights():
            self.statusBar().showMessage("Select a run with trained weights to export", 4000)
            return False
        return self.export_run(entry.run_dir, kind, target)

    def export_run(self, run_dir: str | Path, kind: str, target: str | Path | None = None) -> bool:
        target = target or ask_export_target(self, run_dir, kind, self.prefs.last_dir())
        if not target:
            return False
        self.exporter.submit(kind, run_dir, target)
        self.statusBar().showMessage(f"Exporting {Path(run_dir).name}: {EXPORT_KINDS[kind][0].lower()}…")
        return True

    # ================================================================== training (a TrainingController)
    def start_training(self) -> bool:
        if self.trainer.active:
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
            self.runs_model.unplot(self._session_runs.pop(0))
        number = sum(1 for r in self.runs if r.name.startswith(preset.name)) + 1
        run = RunData(name=f"{preset.name}" + (f" #{number}" if number > 1 else ""), colour=self._next_colour(),
                      live=True, run_dir=str(run_dir), status="starting", clip=preset.train.clip,
                      clip_value=preset.train.clip_value, total_steps=preset.train.steps, task=preset.data.task)
        self._session_runs.append(run)
        self.runs_model.select(self.runs_model.add_run(run))
        self._launch(preset, run, resume=False)
        return True

    def continue_run(self, run: RunData, total_steps: int | None = None) -> bool:
        """Train ``run`` on from its folder's last checkpoint, in that folder, its curves
        going on where they stopped: to its preset's step budget (a stopped or failed run),
        or to ``total_steps`` when that is more (a finished run trained further). The
        preset is the folder's own, with this window's device and thread settings."""
        if self.trainer.active:
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
        self.runs_model.add_run(run)
        self._launch(preset, run, resume=True)
        return True

    def continue_selected(self) -> None:
        """The Runs panel's Continue: a stopped run goes on to its budget; a finished one
        asks how far. A history row's curves are read from its folder first."""
        entry = self.runs_model.selected
        if entry is None:
            self.statusBar().showMessage("Select a run to continue", 4000)
            return
        run = entry.data if entry.data is not None else self.overlay_entry(entry, True)
        if run is None:
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

    _continue_selected = continue_selected

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
        self.status_line.starting(preset.train.device, preset.train.steps)
        self.statusBar().showMessage(f"{'Continuing' if resume else 'Training'} {preset.name}: preparing the task…")
        self.trainer.start(preset, run.run_dir, resume=resume, history=self.runs_model.history)
        self._plots_changed()

    def toggle_pause(self) -> None:
        if not self.trainer.active:
            return
        self.trainer.toggle_pause()
        paused = self.trainer.paused
        self.statusBar().showMessage("Training paused (F6 resumes)" if paused else "Training resumed",
                                     0 if paused else 3000)
        if self.current_run is not None:
            self.current_run.status = "paused" if paused else "running"
            self._run_changed(self.current_run)

    def stop_training(self) -> None:
        if not self.trainer.active:
            return
        self.trainer.stop()
        self.statusBar().showMessage("Stopping after this step (the final weights are saved)…")

    def _set_running_ui(self) -> None:
        """The actions and the Runs panel follow the trainer's state."""
        paused = self.trainer.state == "paused"
        self.act_pause.setText("&Resume" if paused else "&Pause")
        self.act_pause.setIcon(icon("train" if paused else "pause"))
        self.runs_panel.set_training(self.trainer.active)  # one run trains at a time
        self._refresh_actions()

    def _run_changed(self, run: RunData | None) -> None:
        entry = self.runs_model.find(data=run) if run is not None else None
        if entry is not None:
            self.runs_model.changed(entry)

    @Slot(list)
    def _on_records(self, records: list) -> None:
        from workbench.engine.records import End, NonFinite, Record, Start, from_json

        run = self.current_run
        if run is None or self._closed:
            return
        records = [r if isinstance(r, Record) else from_json(r) for r in records]
        run.add(records)
        self._wake_plots()
        for r in records:
            if isinstance(r, Start):
                self.status_line.started(r)
                self.trainer.segment_started(r.step)
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
            self._run_changed(self.current_run)
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
            self._run_changed(run)

    @Slot()
    def _on_thread_finished(self) -> None:
        self._update_derived()
        self._plots_changed()
        entry = self.runs_model.find(data=self.current_run) if self.current_run is not None else None
        if entry is not None and not self._discard_on_close:
            self.runs_model.refresh_row(entry)  # the row the run session wrote: status, time, metrics
        if not self._close_pending and self.current_run is not None:
            self._try_run(self.current_run.run_dir)
        self._set_running_ui()
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
                    history = self.runs_model.history or RunHistory()
                    for info in history.list(run_dir=folder):
                        history.delete(info.id)
                except HistoryError:
                    pass
        except OSError as exc:
            self.statusBar().showMessage(f"could not delete {folder}: {exc}", 5000)

    # ================================================================== the plot timer
    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._wake_plots(input_=True)  # the panels skipped while hidden draw now

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.type() == QEvent.Type.WindowStateChange and not self.isMinimized():
            self._wake_plots(input_=True)  # restored: the panels skipped while minimised draw now
        super().changeEvent(event)

    def _wake_plots(self, input_: bool = False) -> None:
        """Records arrived (or, ``input_``, the user did something): the plots have news;
        tick as soon as the pacer allows, not at the end of a long idle interval."""
        if self._closed:
            return
        if input_:
            self.pacer.mark_input()
        else:
            self.pacer.mark_data()
        wait_ms = round(1000 * (self.pacer.paced_s() if input_ else self.pacer.data_wake()))
        if self.frame_timer.remainingTime() > wait_ms:
            self.frame_timer.start(wait_ms)

    def _on_frame(self, force: bool = False) -> None:
        """Redraw plots from the buffers, then the status line. Only when something
        changed (the pacer: records, a user's input), and one panel per tick, in turn, so
        no single frame's update + paint blocks the event loop for long; the pacer spaces
        the frames so that drawing stays a small share of one core while a model trains
        (workbench/gui/pacing.py). ``force``: every panel on screen now."""
        if self._closed:
            return
        pacer = self.pacer
        painted, painted_cpu = PaintClock.take()  # what the previous frame's changes cost to paint
        pacer.painted(painted_cpu)
        if self._frame_update is not None:
            self.frame_times.append(self._frame_update + painted)
            if len(self.frame_times) > 100_000:
                del self.frame_times[:50_000]
            self._frame_update = None
        pacer.training = self.trainer.active and not self.trainer.paused
        drew = False
        if force or pacer.pending:
            t0, c0 = time.perf_counter(), time.thread_time()
            n = len(self.plot_panels)
            for i in range(n):
                panel = self.plot_panels[(self._next_panel + i) % n]
                # (off screen: behind a tab, or minimised. Its dock's visibilityChanged and the
                # window's restore wake the plots when it shows; forced frames skip it too, as a
                # Dynamics draw takes 0.6 s, at every run's start and end.)
                if panel.on_screen() and panel.refresh(self.runs, self.current_run):
                    drew = True
                    if not force:
                        self._next_panel = (self._next_panel + i + 1) % n
                        break
            if drew:
                self._frame_update = time.perf_counter() - t0
            # (a forced frame draws every panel on screen at once: not a frame the pacer spaces)
            if drew and not force:
                pacer.drew(time.thread_time() - c0)
            elif not force:
                pacer.settled()
        else:
            pacer.idle_tick()
        now = time.perf_counter()
        if drew or force or now - self._status_at >= STATUS_S:
            self._status_at = now
            self._update_progress()
        self._row_stale = self._row_stale or drew
        if self.current_run is not None and (force or (self._row_stale and now - self._row_at >= STATUS_S)):
            self._row_at, self._row_stale = now, False
            self._run_changed(self.current_run)  # its line in the Runs panel: steps, status, metric
        self.frame_timer.setInterval(round(1000 * pacer.interval()))

    def _update_progress(self) -> None:
        self.status_line.update(self.current_run, self.trainer)

    # ================================================================== help
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
        if self.trainer.active:
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
                self.trainer.stop()  # wakes a paused trainer to see the stop
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
        self.prefs.save()
        self._closed = True
        self.frame_timer.stop()
        self.resolver.shutdown(wait=True)
        self.exporter.shutdown(wait=True)
        self.tryout.shutdown()
        event.accept()
