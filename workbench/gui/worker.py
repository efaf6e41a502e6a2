"""The training worker: a QObject moved to a QThread that iterates the engine's trainer.

The only Qt module that touches the engine (it imports workbench.engine lazily, inside
the worker thread, so the window starts without torch and never imports torch itself).
The run folder and the history row are the engine's run session's (the same one the
CLI uses: workbench/engine/session.py); the worker only turns its records into
signals: lists of typed records (workbench/engine/records.py), batched to at most 10
signals a second, so a fast trainer cannot flood the GUI thread's event queue.
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from workbench.errors import describe
from workbench.spec import Preset

# Emit buffered records at most this often: each signal wakes the interface thread (and takes
# the GIL from this one), and while a model trains the plots draw a few times a second
# (workbench/gui/pacing.py). A record after a quiet spell goes out at once.
EMIT_INTERVAL_S = 0.1


def preset_for_gui(preset: Preset) -> Preset:
    """The preset the worker trains: a copy of it as edited (its torch threads and their
    priority are the worker's, cpu_policy.window_training())."""
    return preset.copy()


def available_devices() -> list[str]:
    """Devices this machine can train on ("cpu" always). Imports torch: call it off the
    GUI thread (the resolver does)."""
    from workbench.engine.trainer import TrainingError, resolve_device

    found = ["cpu"]
    for name in ("cuda", "mps"):
        try:
            resolve_device(name)
            found.append(name)
        except (TrainingError, RuntimeError, AttributeError):
            pass
    return found


class TrainWorker(QObject):
    """Runs one training run. Create it in the GUI thread, moveToThread(), then connect
    QThread.started to ``run``. pause()/resume()/stop() are called from the GUI thread
    directly (thread-safe), not through signals: this thread is busy inside the
    trainer's loop. They forward to the engine's TrainControl, which is created in the
    worker thread (its module imports torch); requests made before it exists are kept.
    """

    started = Signal(dict)  # {"run_dir": str}
    records = Signal(list)  # [workbench.engine.records.Record, ...] in order
    failed = Signal(str)  # a one-line reason (bad preset, bad data, no such device, crash)
    finished = Signal(object)  # the End record (None when training never started)

    def __init__(self, preset: Preset, run_dir: str | Path | None, resume: bool = False, history=None):
        """``history``: the workbench.runs.RunHistory the run's row goes in (default: the user's)."""
        super().__init__()
        self.history = history
        self.preset = preset
        self.run_dir = Path(run_dir) if run_dir else None
        self.from_checkpoint = resume and self.run_dir is not None  # continue the run folder's last checkpoint
        self._lock = threading.Lock()
        self._control = None  # workbench.engine.trainer.TrainControl, made in the worker thread
        self._want_stop = False
        self._want_pause = False
        self.end = None  # the End record, once the run is over
        self.error = ""

    # -- called from the GUI thread ------------------------------------------------------
    def pause(self) -> None:
        with self._lock:
            self._want_pause = True
            if self._control is not None:
                self._control.pause()

    def resume(self) -> None:
        with self._lock:
            self._want_pause = False
            if self._control is not None:
                self._control.resume()

    def stop(self) -> None:
        with self._lock:
            self._want_stop = True
            if self._control is not None:
                self._control.stop()

    @property
    def paused(self) -> bool:
        return self._want_pause and not self._want_stop

    @property
    def stopping(self) -> bool:
        return self._want_stop

    def _make_control(self):
        from workbench.engine.trainer import TrainControl

        with self._lock:
            self._control = TrainControl()
            if self._want_pause:
                self._control.pause()
            if self._want_stop:
                self._control.stop()
        return self._control

    @Slot()
    def run(self) -> None:
        end = None
        try:
            end = self._train()
        except Exception as exc:  # noqa: BLE001 - every failure must reach the window
            self.error = describe(exc)  # a user's error as its message, a defect with its class name
            if os.environ.get("WORKBENCH_DEBUG"):
                traceback.print_exc()
            self.failed.emit(self.error)
        self.end = end
        self.finished.emit(end)

    def _train(self):
        from workbench.engine import cpu_policy

        # Every core, this thread and torch's team below the GUI thread's priority (or, where
        # that cannot be, cores - 1 threads); before the trainer starts, recorded in its Start.
        cpu_policy.window_training(self.preset.train.num_threads)
        # Engine imports happen here, in the worker thread (torch loads off the GUI thread).
        from workbench.engine.records import Step
        from workbench.engine.session import RunSession
        from workbench.tasks import make_task

        control = self._make_control()
        task = make_task(self.preset)  # validates options and reads the data: before any folder exists
        if control.stopped:
            return None
        session = RunSession(self.preset, self.run_dir, source="gui", resume=self.from_checkpoint, task=task,
                             control=control, history=self.history)
        session.open()  # the trainer's set-up, up to its Start record: a preset that cannot train leaves no folder
        pending: list = []
        last_emit = time.perf_counter()
        with session:
            self.started.emit({"run_dir": str(self.run_dir) if self.run_dir else ""})
            for record in session:
                pending.append(record)
                now = time.perf_counter()
                # Steps are batched; anything else (eval, non-finite, end) goes out at once.
                if not isinstance(record, Step) or now - last_emit >= EMIT_INTERVAL_S or control.paused \
                        or control.stopped:
                    self.records.emit(pending)
                    pending = []
                    last_emit = now
            if pending:
                self.records.emit(pending)
        return session.end
