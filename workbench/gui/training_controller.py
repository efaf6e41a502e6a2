"""The training thread's lifecycle, out of the window: one TrainWorker in one QThread at a
time (start, pause, resume, stop, continue = start with resume), and the clock of the
running segment (throughput and ETA count only this segment's steps and leave pauses
out, so a continued run is not credited with its checkpoint's steps).

The worker's signals are re-emitted here, queued onto the GUI thread; ``state`` says
where the run is: "idle", "running", "paused" or "stopping".
"""
from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from workbench.gui.worker import TrainWorker
from workbench.spec import Preset


class TrainingController(QObject):
    state_changed = Signal(str)  # idle / running / paused / stopping
    started = Signal(dict)  # the worker's {"run_dir": ...}
    records = Signal(list)  # typed records, in order
    failed = Signal(str)  # a one-line reason
    finished = Signal(object)  # the End record (None when training never started)
    thread_finished = Signal()  # the thread is gone: a new run may start, the window may close

    def __init__(self, parent: QObject | None = None, clock=time.perf_counter):
        super().__init__(parent)
        self.clock = clock
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self.state = "idle"
        self._segment_start = 0.0
        self._segment_first_step = 0  # the step the running segment started from (> 0 when continued)
        self._paused_since: float | None = None
        self._paused_total = 0.0

    # -- state ----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A worker thread exists (from start until its thread has finished)."""
        return self._thread is not None

    @property
    def worker(self) -> TrainWorker | None:
        return self._worker

    @property
    def paused(self) -> bool:
        return self._worker is not None and self._worker.paused

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self, preset: Preset, run_dir: str | Path, resume: bool = False, history=None) -> bool:
        """Train ``preset`` into ``run_dir`` (``resume``: on from its last checkpoint; its
        row goes in ``history``, a RunHistory, default the user's)."""
        if self._thread is not None:
            return False
        thread = QThread(self)
        thread.setObjectName("workbench-trainer")
        worker = TrainWorker(preset, Path(run_dir), resume=resume, history=history)
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        queued = Qt.ConnectionType.QueuedConnection
        worker.records.connect(self.records, queued)
        worker.started.connect(self.started, queued)
        worker.failed.connect(self.failed, queued)
        worker.finished.connect(self._on_finished, queued)
        worker.finished.connect(thread.quit)
        thread.finished.connect(self._on_thread_finished, queued)
        self._thread, self._worker = thread, worker  # keep references: Qt must not outlive them
        self._segment_start = self.clock()
        self._paused_total, self._paused_since = 0.0, None
        self._segment_first_step = 0
        self._set_state("running")
        thread.start()
        return True

    def toggle_pause(self) -> None:
        if self._worker is None:
            return
        self.resume() if self._worker.paused else self.pause()

    def pause(self) -> None:
        if self._worker is None or self._worker.paused:
            return
        self._worker.pause()
        self._paused_since = self.clock()
        self._set_state("paused")

    def resume(self) -> None:
        if self._worker is None:
            return
        self._worker.resume()
        if self._paused_since is not None:
            self._paused_total += self.clock() - self._paused_since
        self._paused_since = None
        if self.state == "paused":
            self._set_state("running")

    def stop(self) -> None:
        """Stop after the current step (a paused trainer is woken to see it)."""
        if self._worker is None:
            return
        self._worker.resume()
        self._worker.stop()
        self._set_state("stopping")

    def segment_started(self, step: int) -> None:
        """The Start record arrived: the segment's clock starts at its set-up's end, from
        its first step (a continued run starts at its checkpoint's step, not at 0)."""
        self._segment_start = self.clock()
        self._paused_total = 0.0
        if self._paused_since is not None:  # paused before the set-up ended
            self._paused_since = self.clock()
        self._segment_first_step = step

    def rates(self, step: int, total: int) -> tuple[float, float, float]:
        """(training seconds of this segment, steps/s, ETA seconds) at ``step`` of ``total``."""
        now = self.clock()
        paused = self._paused_total + ((now - self._paused_since) if self._paused_since else 0.0)
        elapsed = now - self._segment_start - paused
        done = step - self._segment_first_step
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        eta = (total - step) / rate if rate > 0 else math.nan
        return elapsed, rate, eta

    # -- the worker's end -------------------------------------------------------------------
    @Slot(object)
    def _on_finished(self, end) -> None:
        self.finished.emit(end)

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
        self._set_state("idle")
        self.thread_finished.emit()
