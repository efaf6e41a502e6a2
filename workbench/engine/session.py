"""One training run from its first record to its last: the run folder and the history row.

Every caller trains through a RunSession, unchanged: ``workbench train`` (and each
``torchrun`` rank), the window's worker thread, sweeps and tests. None of them writes a
run file or a history row itself, so a run folder and its row look the same whoever
made them.

    session = RunSession(preset, run_dir, source="cli", resume=False)
    start = session.open()          # task, trainer set-up, up to its Start record
    with session:                   # the row is 'running' from here on
        for record in session:      # Start, Step, ..., End (workbench/engine/records.py)
            ...                     # print, plot

What it writes, in ``run_dir``:
  preset.json    the preset as trained (rewritten when a run is continued: it may have
                 been given more steps)
  task.json      what the task derived from its data (vocabulary, ...), written when the
                 run begins and KEPT when it is continued: the weights were trained
                 against it, so a data file edited since must not change it
  metrics.jsonl  one record a line (records.py's JSON form), appended when continued;
                 per-timestep profiles at most every PROFILE_EVERY steps (the plots of a
                 live run get every one); flushed at each eval, checkpoint and the end,
                 so a killed run keeps its records up to its last checkpoint
  checkpoint-*   written by the trainer
and its row in the history (workbench/runs.py): 'running' from open() on with a
heartbeat every few seconds, then finished / stopped / failed; a process that dies
without closing it (SIGKILL) leaves it 'running' with a dead pid, which the next reader
of the history marks 'interrupted'. The training time kept there leaves out pauses and,
for a continued run, the time between its sessions.

Nothing is written before the Start record: a preset, data or memory error raised by
open() leaves no folder and no row. With ``run_dir`` None (a throwaway run) nothing is
written at all; off rank 0 of a torchrun job neither (that rank trains in step, quietly).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from workbench.engine import distributed
from workbench.engine.records import Checkpoint, End, Eval, Record, Start, Step
from workbench.spec import Preset

# Per-timestep profiles (a Step's timestep_grad_norms / param_grad_norms) go to
# metrics.jsonl at most once per this many steps: with log_every 1 and 100 time steps
# they were ~2 KB of every step's ~2.2 KB line. A loaded run's heatmap gets a row every
# PROFILE_EVERY steps (it shows at most a few hundred rows anyway).
PROFILE_EVERY = 10


class RunSession:
    """Owns one run: the trainer, the run folder's files and the history row.

    ``task``: a task already made (the window makes it first, to react to a stop while
    the data loads); else open() makes it. ``control``: the TrainControl a UI pauses
    and stops (else the session makes one). ``history``: a RunHistory (tests), else the
    user's. ``study``, ``trial``: the sweep trial this run is, kept on its history row
    (workbench/sweep.py). ``trainer_options``: passed on to the Trainer (probe_budget, ...)."""

    def __init__(self, preset: Preset, run_dir: str | Path | None, *, source: str = "cli", resume: bool = False,
                 task=None, control=None, history=None, warn=None, study: str | None = None,
                 trial: int | None = None, **trainer_options):
        from workbench.engine.trainer import TrainControl

        self.preset = preset
        self.run_dir = Path(run_dir) if run_dir else None
        self.source = source
        self.resume = resume and self.run_dir is not None
        self.task = task
        self.control = control or TrainControl()
        self.history = history
        self.warn = warn
        self.trainer_options = trainer_options
        self.study, self.trial = study, trial
        self.run_id: int | None = None  # the history row, once the run has begun (None: not recorded)
        # rank > 0 of a torchrun job trains in step with rank 0 and writes nothing
        self.writes = self.run_dir is not None and distributed.is_main_process()
        self.trainer = None
        self.start: Start | None = None
        self.end: End | None = None
        self._records: Iterator[Record] | None = None
        self._metrics = None
        self._recorder = None
        self._began = 0.0
        self._paused_at_start = 0.0
        self._last_profile = -PROFILE_EVERY

    # ------------------------------------------------------------------ set-up
    def open(self) -> Start:
        """Make the task (unless given) and the trainer and run its set-up up to the Start
        record: everything that can refuse the input (SpecError, DataError,
        TrainingError, WeightsError) is raised here, before any file is written."""
        from workbench.engine.trainer import Trainer
        from workbench.tasks import make_task

        if self.task is None:
            self.task = make_task(self.preset)
        # rank > 0 reads the checkpoint to resume from but never writes one
        trainer_dir = self.run_dir if (self.writes or self.resume) else None
        self.trainer = Trainer(self.preset, run_dir=trainer_dir, control=self.control, task=self.task,
                               resume=self.resume, **self.trainer_options)
        self._records = self.trainer.run()
        self.start = next(self._records)
        return self.start

    def __enter__(self) -> RunSession:
        """The run begins: the folder and its files, the history row ('running')."""
        from workbench.fileio import atomic_write_text
        from workbench.runs import RunRecorder

        if self.start is None:
            self.open()
        if self.writes:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "preset.json", self.preset.to_json())
            if not (self.resume and (self.run_dir / "task.json").exists()):
                atomic_write_text(self.run_dir / "task.json", json.dumps(self.task.artifacts()) + "\n")
            self._metrics = open(self.run_dir / "metrics.jsonl", "a" if self.resume else "w", encoding="utf-8")
            self._recorder = RunRecorder(self.preset, self.run_dir, source=self.source, resume=self.resume,
                                         history=self.history, warn=self.warn, study=self.study, trial=self.trial)
            self._recorder.__enter__()
            self.run_id = self._recorder.run_id
        self._began, self._paused_at_start = time.perf_counter(), self.control.paused_s
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if self._metrics is not None:
                self._metrics.close()
                self._metrics = None
        finally:
            if self._recorder is not None:
                self._recorder.__exit__(exc_type, exc, tb)
                self._recorder = None
        if exc_type is None and self.end is not None:
            distributed.finish()  # torchrun: every rank leaves together (not after a Ctrl-C: they may not come)
        return False

    # ------------------------------------------------------------------ the run
    @property
    def train_s(self) -> float:
        """This session's training time so far: wall time since the run began, pauses left out."""
        if not self._began:
            return 0.0
        return time.perf_counter() - self._began - (self.control.paused_s - self._paused_at_start)

    def __iter__(self) -> Iterator[Record]:
        """The records, Start first, each written and recorded before it is handed on."""
        if self._records is None:
            raise RuntimeError("RunSession: call open() (or enter the session) first")
        self._record(self.start)
        yield self.start
        for record in self._records:
            self._record(record)
            if isinstance(record, End):
                self.end = record
            yield record

    def _record(self, record: Record) -> None:
        if self._metrics is not None:
            profiles = True
            if isinstance(record, Step) and record.timestep_grad_norms is not None:
                profiles = record.step - self._last_profile >= PROFILE_EVERY
                if profiles:
                    self._last_profile = record.step
            self._metrics.write(record.to_json(profiles=profiles) + "\n")
            if isinstance(record, (Eval, Checkpoint, End)):  # a killed run keeps its records up to here
                self._metrics.flush()
        if self._recorder is not None:
            self._recorder.observe(record, self.train_s)

    def stop(self) -> None:
        """Stop after the current step (thread-safe: the control's flag)."""
        self.control.stop()
