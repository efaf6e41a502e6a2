"""The training worker: a QObject moved to a QThread that iterates the engine's trainer.

The only Qt module that touches the engine (it imports workbench.engine lazily, inside
the worker thread, so the window starts without torch and never imports torch itself).
It writes the run folder like the CLI does (preset.json, task.json, metrics.jsonl and
the trainer's weights/checkpoints) and emits plain data only: lists of record dicts
(floats, strings, small numpy arrays). Records are batched to at most ~30 signals a
second, so a fast trainer cannot flood the GUI thread's event queue.
"""
from __future__ import annotations

import itertools
import json
import os
import threading
import time
import traceback
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from workbench.spec import Preset, SpecError

# Emit buffered records at most this often (the plots redraw at <= 30 Hz anyway).
EMIT_INTERVAL_S = 1 / 30


def gui_cpu_threads() -> int:
    """Torch CPU threads while the window is open: one fewer than the cores, so the GUI
    thread keeps a core (measured: p99 event delay 22 ms with 1 of 2 vs 45 ms with 2)."""
    from workbench.engine.cpu_policy import cpu_cores

    return max(1, cpu_cores() - 1)


def preset_for_gui(preset: Preset) -> Preset:
    """The preset the worker trains: as edited, with torch threads set to leave the GUI a
    core when the user left train.num_threads automatic (0)."""
    out = preset.copy()
    if out.train.num_threads == 0:
        out.train.num_threads = gui_cpu_threads()
    return out


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
    records = Signal(list)  # [record dict, ...] in order
    failed = Signal(str)  # a one-line reason (bad preset, bad data, no such device, crash)
    finished = Signal(dict)  # the end record ({} when training never started)

    def __init__(self, preset: Preset, run_dir: str | Path | None, resume: bool = False):
        super().__init__()
        self.preset = preset
        self.run_dir = Path(run_dir) if run_dir else None
        self.from_checkpoint = resume and self.run_dir is not None  # continue the run folder's last checkpoint
        self._lock = threading.Lock()
        self._control = None  # workbench.engine.trainer.TrainControl, made in the worker thread
        self._want_stop = False
        self._want_pause = False
        self.end: dict = {}
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
        end: dict = {}
        try:
            end = self._train()
        except Exception as exc:  # noqa: BLE001 - every failure must reach the window
            self.error = _describe(exc)
            if os.environ.get("WORKBENCH_DEBUG"):
                traceback.print_exc()
            self.failed.emit(self.error)
        self.end = end
        self.finished.emit(end)

    def _train(self) -> dict:
        from workbench.engine import cpu_policy

        # Below the GUI thread's priority when asked (WORKBENCH_TRAINER_NICE), before torch
        # starts its worker threads for this thread (they inherit it).
        cpu_policy.lower_this_thread()
        # Engine imports happen here, in the worker thread (torch loads off the GUI thread).
        from workbench.engine.records import record_to_json
        from workbench.engine.trainer import Trainer
        from workbench.fileio import atomic_write_text
        from workbench.tasks import make_task

        preset = self.preset
        control = self._make_control()
        task = make_task(preset)  # validates options and reads the data: before any folder exists
        if control.stopped:
            return {}
        # The trainer's set-up (memory check, model) runs up to its start record before the
        # run folder is made, so a preset that cannot train leaves no folder behind.
        trainer = Trainer(preset, run_dir=self.run_dir, control=control, task=task, resume=self.from_checkpoint)
        stream = trainer.run()
        first = next(stream)
        metrics = None
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # (a continued run may have been given more steps; its task.json stays as it began)
            atomic_write_text(self.run_dir / "preset.json", preset.to_json())
            if not self.from_checkpoint:
                atomic_write_text(self.run_dir / "task.json", json.dumps(task.artifacts()) + "\n")
            metrics = open(self.run_dir / "metrics.jsonl", "a" if self.from_checkpoint else "w", encoding="utf-8")
        self.started.emit({"run_dir": str(self.run_dir) if self.run_dir else ""})
        pending: list[dict] = []
        last_emit = time.perf_counter()
        end: dict = {}
        start_record: dict = {}
        try:
            for record in itertools.chain([first], stream):
                if metrics is not None:
                    metrics.write(record_to_json(record) + "\n")
                kind = record["kind"]
                if kind == "start":
                    start_record = record
                elif kind == "end":
                    end = record
                pending.append(record)
                now = time.perf_counter()
                # Steps are batched; anything else (eval, non-finite, end) goes out at once.
                if kind != "step" or now - last_emit >= EMIT_INTERVAL_S or control.paused or control.stopped:
                    self.records.emit(pending)
                    pending = []
                    last_emit = now
                    if metrics is not None and kind != "step":
                        metrics.flush()
            if pending:
                self.records.emit(pending)
        finally:
            if metrics is not None:
                metrics.close()
        _record_history(preset, self.run_dir, start_record, end, self.from_checkpoint)
        return end


def _describe(exc: BaseException) -> str:
    """One line for the status bar: preset and data errors name their field or file."""
    if isinstance(exc, SpecError):
        return str(exc)
    text = " ".join(str(exc).split())
    known = {"DataError", "TrainingError", "SaveError", "FileNotFoundError", "PermissionError",
             "IsADirectoryError", "OutOfMemoryError", "WeightsError"}
    if type(exc).__name__ in known:
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _record_history(preset: Preset, run_dir: Path | None, start: dict, end: dict, resume: bool = False) -> None:
    """Hook for the run history (workbench.runs), when that module is present; the same
    hook the CLI calls, so GUI and CLI runs land in one history."""
    if run_dir is None:
        return
    try:
        from workbench import runs
    except ImportError:
        return
    record = getattr(runs, "record_gui_run", None) or getattr(runs, "record_cli_run", None)
    if record is None:
        return
    try:
        record(preset, run_dir, start, end, resume=resume)
    except Exception:  # noqa: BLE001 - a history failure must not lose the run itself
        if os.environ.get("WORKBENCH_DEBUG"):
            traceback.print_exc()
