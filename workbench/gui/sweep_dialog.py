"""The Sweep dialog: a sweep of the open preset (workbench/sweep.py) with a live table of
its trials, the trials in parallel coordinates, the parameters' importances, and (given
the window's runs model) each trial's run in the Runs panel and the loss plot. A
double-clicked trial opens like any run folder (``open_run``).

The sweep runs on a plain Python thread (its trials train there, or in worker processes
with more than one job); the table and the plots are refreshed from the study's storage
by a timer on the GUI thread, so the window never waits on a trial. The importances
(Optuna's fANOVA, a forest fit that grows with the trials) are computed on a thread of
their own. No torch is imported here.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workbench import sweep
from workbench.errors import describe, one_line
from workbench.gui import sweep_view
from workbench.gui.sweep_plots import ImportancePlot, ParallelPlot
from workbench.spec import Preset

REFRESH_MS = 1000


def suggestions(preset: Preset) -> dict[str, str]:
    """--param lines for the fields a sweep most often varies, around the preset's values."""
    t = preset.train
    out = {"train.lr": f"train.lr=log:{t.lr / 10:.3g}..{min(t.lr * 10, 1.0):.3g}",
           "train.batch_size": f"train.batch_size=int:log:{max(t.batch_size // 4, 1)}..{t.batch_size * 4}",
           "train.clip_value": "train.clip_value=0.1,1,10",
           "train.weight_decay": "train.weight_decay=0,1e-5,1e-4",
           "train.optimizer": "train.optimizer=adam,sgd,rmsprop"}
    for i, layer in enumerate(preset.model.layers):
        out[f"model.layers.{i}.hidden_size"] = (f"model.layers.{i}.hidden_size=int:{max(layer.hidden_size // 2, 1)}"
                                                f"..{layer.hidden_size * 2}")
        out[f"model.layers.{i}.cell"] = f"model.layers.{i}.cell=lstm,gru"
        out[f"model.layers.{i}.dropout"] = f"model.layers.{i}.dropout=0..0.5"
    return out


def summarise(study, metric: str) -> str:
    """'best: trial 3, val_loss 0.012 (train.lr=0.003)' (the importances are in their chart)."""
    try:
        best = study.best_trial
    except ValueError:
        return "no finished trial yet"
    params = ", ".join(f"{k}={sweep.fmt_value(v)}" for k, v in best.params.items())
    return f"best: trial {best.number}, {metric} {best.value:.5g} ({params})"


def _importances(storage, name: str) -> dict[str, float] | str:
    """On the importance thread: the study's importances, or why there are none."""
    try:
        return sweep.importances(sweep.load_study(storage, name))
    except Exception as exc:  # noqa: BLE001 - a study the evaluator cannot read costs a message
        return one_line(exc)


class SweepDialog(QDialog):
    open_run = Signal(str)  # a trial's run folder, to open like any run
    finished_sweep = Signal(str)  # the sweep ended: its last line
    importances_shown = Signal()  # the importance chart was redrawn (bars or a note)
    _importances_ready = Signal(object, int)  # from the importance thread: (answer, complete trials)

    def __init__(self, preset: Preset, parent=None, storage: str | None = None, runs_root=None,
                 runs=None, colour=None):
        """``storage``: the study's (default: the user's sweeps file). ``runs_root``: the
        trials' run folders go to runs_root/STUDY (default: runs/sweeps/STUDY). ``runs``:
        the window's RunsModel, where each trial's run appears (``colour()``: its colour)."""
        super().__init__(parent)
        self.setWindowTitle(f"Sweep — {preset.name}")
        self.preset = preset.copy()
        self.storage, self.runs_root = storage, runs_root
        self.job: sweep.Sweep | None = None
        self._thread: threading.Thread | None = None
        self._stop = None
        self._outcome: str | None = None
        self._store = None
        self.trial_runs = sweep_view.TrialRuns(runs, colour or (lambda: "#1f77b4")) if runs is not None else None
        self.rows: list[sweep_view.TrialRow] = []
        self._drawn_trials = None  # what the parallel plot shows: skip identical redraws
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="importance")
        self._importance_job: Future | None = None
        self._importance_for = -1  # complete trials the chart's importances were asked for
        self.importance_shown_for = -1  # ... and those it shows
        self._importances_ready.connect(self._show_importances)

        self.field_combo = QComboBox()
        self._suggested = suggestions(self.preset)
        self.field_combo.addItems(list(self._suggested))
        add = QPushButton("Add field")
        add.clicked.connect(self._add_field)
        self.params = QPlainTextEdit()
        self.params.setPlaceholderText("one FIELD=SPEC a line: LOW..HIGH, log:LOW..HIGH, int:LOW..HIGH, or A,B,C")
        self.params.setPlainText(self._suggested["train.lr"])
        self.trials = QSpinBox(minimum=1, maximum=10_000, value=sweep.DEFAULT_TRIALS)
        self.jobs = QSpinBox(minimum=1, maximum=64, value=1)
        self.metric_box = QLineEdit("val_loss")  # not self.metric: QWidget.metric() is Qt's, called on paint
        self.maximize = QCheckBox("higher is better")
        self.sampler = QComboBox()
        self.sampler.addItems(list(sweep.SAMPLERS))
        self.prune = QCheckBox("stop trials behind the median")
        self.study = QLineEdit()
        self.study.setPlaceholderText("(default: the preset's name and a hash of the question)")

        pick = QHBoxLayout()
        pick.addWidget(self.field_combo, 1)
        pick.addWidget(add)
        form = QFormLayout()
        form.addRow("Fields", pick)
        form.addRow("", self.params)
        form.addRow("Trials", self.trials)
        form.addRow("Jobs", self.jobs)
        form.addRow("Metric", self.metric_box)
        form.addRow("", self.maximize)
        form.addRow("Sampler", self.sampler)
        form.addRow("Pruning", self.prune)
        form.addRow("Study", self.study)

        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.summary = QLabel("")  # the best trial, once the sweep ends
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.setToolTip("Double-click a trial to open its run (loss curves, Try it)")
        self.table.cellDoubleClicked.connect(self._open_row)
        self.parallel = ParallelPlot()
        self.importance = ImportancePlot()

        left = QWidget()
        side = QVBoxLayout(left)
        side.setContentsMargins(0, 0, 0, 0)
        side.addLayout(form)
        side.addLayout(buttons)
        side.addWidget(self.status)
        side.addStretch(1)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(left)
        top.addWidget(self.table)
        top.setStretchFactor(1, 1)
        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.parallel)
        plots.addWidget(self.importance)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 2)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(plots)
        split.setSizes([300, 420])  # the plots get the room the form does not need
        layout = QVBoxLayout(self)
        layout.addWidget(split, 1)
        layout.addWidget(self.summary)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.resize(1180, 740)

    # -- the sweep ---------------------------------------------------------------------
    def _add_field(self) -> None:
        line = self._suggested.get(self.field_combo.currentText(), "")
        text = self.params.toPlainText().rstrip()
        self.params.setPlainText(f"{text}\n{line}" if text else line)

    def start(self) -> bool:
        """Check the input (a bad field or range: one line in the status, nothing runs) and
        start the sweep on its thread."""
        if self.running:
            return False
        try:
            lines = [x.strip() for x in self.params.toPlainText().splitlines() if x.strip()]
            self.job = sweep.Sweep(self.preset, [sweep.parse_param(x) for x in lines], metric=self.metric_box.text().strip(),
                                   direction="maximize" if self.maximize.isChecked() else "minimize",
                                   sampler=self.sampler.currentText(), prune=self.prune.isChecked(),
                                   trials=self.trials.value(), jobs=self.jobs.value(), storage=self.storage,
                                   study=self.study.text().strip() or None, source="gui")
            if self.runs_root is not None:
                self.job.runs_dir = Path(self.runs_root) / self.job.study
            self._store = sweep.open_storage(self.job.storage)
        except Exception as exc:  # noqa: BLE001 - a user's error shows as it is, anything else with its class
            self._say(describe(exc), error=True)
            return False
        self._stop = sweep.make_stop_event(self.job.jobs)
        self._outcome = None
        self._thread = threading.Thread(target=self._run, name="sweep", daemon=True)
        self._thread.start()
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self._say(f"sweep {self.job.study}: {self.job.trials} trials, {self.job.direction} {self.job.metric}")
        self.timer.start()
        return True

    def _run(self) -> None:  # the sweep's thread: no widget is touched here
        try:
            result = self.job.run(say=lambda _text: None, stop=self._stop)
            self._outcome = (f"stopped after {result['ran']} trial(s); Start resumes the study" if result["stopped"]
                             else f"done: {result['ran']} trial(s) run")
        except Exception as exc:  # noqa: BLE001 - shown in the dialog
            self._outcome = "error: " + describe(exc)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """The running trials end after their current step; the study can be resumed."""
        if self._stop is not None:
            self._stop.set()
            self._say("stopping after the current step…")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if error else "")

    # -- the table and the plots -----------------------------------------------------------
    def refresh(self) -> None:
        """Read the study's trials into the table, the plots and the runs; when the sweep's
        thread has ended, say how."""
        if self.job is None or self._store is None:
            return
        ended = not self.running and self._thread is not None  # before reading: the last read sees the end
        try:
            study = sweep.load_study(self._store, self.job.study)
        except Exception:  # noqa: BLE001 - not created yet: the next tick
            return
        self.rows = sweep_view.read_trials(study)
        self._fill_table(self.rows)
        drawn = tuple((r.number, r.state, r.value) for r in self.rows)
        if drawn != self._drawn_trials:
            self._drawn_trials = drawn
            self.parallel.show_trials(sweep_view.parallel(self.job.params, self.job.metric, self.job.direction,
                                                          self.rows))
        self._ask_importances(sum(r.state == "complete" for r in self.rows))
        if self.trial_runs is not None:
            self.trial_runs.update(self.job.study, self.rows)
        if ended:
            self._thread = None
            self.timer.stop()
            self.start_button.setEnabled(True)
            self.stop_button.setEnabled(False)
            outcome = self._outcome or "ended"
            self._say(outcome, error=outcome.startswith("error"))
            self.summary.setText(summarise(study, self.job.metric))
            self.finished_sweep.emit(outcome)

    def _fill_table(self, rows: list[sweep_view.TrialRow]) -> None:
        fields = [p.field for p in self.job.params]
        header = ["trial", "state", self.job.metric, *fields, "run folder"]
        self.table.setColumnCount(len(header))
        self.table.setHorizontalHeaderLabels(header)
        self.table.setRowCount(len(rows))
        for row, t in enumerate(rows):
            cells = [str(t.number), t.state, t.shown_value(),
                     *(sweep.fmt_value(t.params[f]) if f in t.params else "-" for f in fields), t.run_dir]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()

    def _ask_importances(self, complete: int) -> None:
        """Recompute the importances on their thread when a trial has completed since
        they were last asked for (one computation at a time; the newest count wins)."""
        if complete == self._importance_for or (self._importance_job and not self._importance_job.done()):
            return
        self._importance_for = complete
        if complete < 2:
            self._show_importances("need two complete trials or more", complete)
            return
        try:
            self._importance_job = self._pool.submit(_importances, self._store, self.job.study)
        except RuntimeError:  # closed: its pool is shut down
            return
        self._importance_job.add_done_callback(lambda job, n=complete: self._deliver(job, n))

    def _deliver(self, job: Future, complete: int) -> None:  # the importance thread
        if job.cancelled():
            return
        try:
            self._importances_ready.emit(job.result(), complete)
        except RuntimeError:  # the dialog is gone
            pass

    def _show_importances(self, found, complete: int) -> None:
        bars, message = sweep_view.importance_items(found, complete)
        self.importance.show_importances(bars, message)
        self.importance_shown_for = complete
        self.importances_shown.emit()
        if not self.running and complete != sum(r.state == "complete" for r in self.rows):
            self._ask_importances(sum(r.state == "complete" for r in self.rows))  # trials ended meanwhile

    def _open_row(self, row: int, _col: int) -> None:
        item = self.table.item(row, self.table.columnCount() - 1)
        if item is not None and item.text():
            self.open_run.emit(item.text())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.stop()  # the trials stop after their step; the thread ends on its own
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)
