"""The window's small pieces: the info bar above the diagram, the first-start welcome and
the status line (device, progress, elapsed time and ETA, throughput)."""
from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QToolButton,
    QVBoxLayout,
)

VANISHING_PAIR = ("adding_rnn_tanh", "adding_lstm")
EXPLODING_PAIR = ("exploding_relu_noclip", "exploding_relu_clip")


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


class StatusLine:
    """The status bar's permanent part: the device, the progress bar, the run's time with
    its ETA, and its throughput; the rates come from the TrainingController (this
    segment's steps only, pauses left out)."""

    def __init__(self, bar: QStatusBar):
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
            bar.addPermanentWidget(w)

    def show_budget(self, steps: int) -> None:
        """Before a run: the preset's step budget (the progress bar had said 0 / 1)."""
        steps = max(int(steps), 1)
        self.progress.setRange(0, steps)
        self.progress.setValue(0)
        self.progress.setFormat(f"{steps:,} steps to train")

    def starting(self, device: str, steps: int) -> None:
        self.progress.setRange(0, max(steps, 1))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m steps")
        self.device_label.setText(f"device: {device} (starting…)")

    def started(self, start) -> None:
        """The run's Start record: its device (and CPU threads) and its step budget."""
        threads = start.torch_threads
        self.device_label.setText(f"device: {start.device}"
                                  + (f" · {threads} torch thread{'s' if threads != 1 else ''}"
                                     if start.device.startswith("cpu") else ""))
        self.progress.setRange(0, max(start.total_steps, 1))

    def update(self, run, trainer) -> None:
        """Progress of ``run`` (a RunData); time, ETA and rate while ``trainer`` trains it."""
        if run is None or not len(run.steps):
            return
        step = run.last_step
        total = max(run.total_steps, 1)
        self.progress.setFormat("%v / %m steps")
        self.progress.setMaximum(total)
        self.progress.setValue(min(step, total))
        if not trainer.active:
            # Stopped or finished: an ETA and a rate would describe a run that no longer trains.
            text = self.time_label.text()
            if "ETA" in text:
                self.time_label.setText(text.split(" · ETA")[0].replace("elapsed", "trained for"))
                self.speed_label.setText("")
            return
        elapsed, rate, eta = trainer.rates(step, total)  # this segment's steps, pauses left out
        self.time_label.setText(f"elapsed {_duration(elapsed)} · ETA {_duration(eta)}")
        ups = run.units_per_s.view()
        recent = ups[-50:]
        units = float(recent[recent > 0].mean()) if (recent > 0).any() else 0.0
        self.speed_label.setText(f"{rate:.1f} steps/s · {units:,.0f} elements/s")


def shortcuts_html(actions: dict, docks: list) -> str:
    """Help ▸ Keyboard shortcuts: every action of the table that has one."""
    lines = []
    for act in actions.values():
        if act.shortcut().isEmpty():
            continue
        keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in act.shortcuts())
        lines.append(f"<tr><td>{act.text().replace('&', '')}</td><td><b>{keys}</b></td></tr>")
    lines.append(f"<tr><td>Show/hide panels</td><td><b>Alt+1 … Alt+{len(docks)}</b></td></tr>")
    return "<table>" + "".join(lines) + "</table>"


def about_html(runs_folder) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("rnn-workbench")
    except PackageNotFoundError:
        ver = "development"
    return (f"<b>RNN Workbench</b> {ver}<br>Design, train and inspect recurrent neural networks, with the gradients "
            f"through time plotted live.<br>MIT licence.<br>Runs are saved in {runs_folder}")
