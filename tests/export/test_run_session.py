"""The one run session: the CLI and the window's worker write the same run, a killed
window's run is 'interrupted', training time leaves pauses out, and records keep their
type through JSON."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from workbench import cli
from workbench.engine.records import (
    KINDS,
    Checkpoint,
    Dynamics,
    End,
    Eval,
    NonFinite,
    Probe,
    Start,
    Step,
    from_json,
    read_metrics,
)
from workbench.engine.session import PROFILE_EVERY, RunSession
from workbench.engine.trainer import TrainControl
from workbench.runs import RunHistory

from .processes import child_env, sigkill_when, start_child

PROJECT = Path(__file__).resolve().parents[2]
SETS = ["data.options.seq_len=6", "model.layers.0.hidden_size=4", "train.probe_every=3", "train.eval_every=2",
        "data.options.val_size=16", "train.num_threads=1", "train.checkpoint_every=2"]


def small_preset(steps: int = 4, extra: tuple[str, ...] = ()):
    return cli.load_preset_with_overrides("adding_gru", SETS + list(extra), steps, "cpu", 7)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _layout(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_cli_and_the_window_write_the_same_run(home, tmp_path):
    pytest.importorskip("PySide6.QtCore")
    from workbench.gui.worker import TrainWorker

    by_cli, by_gui = tmp_path / "cli", tmp_path / "gui"
    args = ["train", "adding_gru", "--steps", "4", "--device", "cpu", "--seed", "7", "--quiet"]
    for item in SETS:
        args += ["--set", item]
    assert cli.main(args + ["--run-dir", str(by_cli)]) == 0
    worker = TrainWorker(small_preset(), by_gui)  # what the window runs, minus the thread
    seen = []
    worker.records.connect(seen.extend)
    worker.run()
    assert worker.error == "" and isinstance(worker.end, End) and worker.end.status == "finished"
    assert [type(r) for r in seen[:2]] == [Start, Probe] and isinstance(seen[-1], End)

    assert _layout(by_cli) == _layout(by_gui) and "checkpoints" in _layout(by_cli)
    for name in ("preset.json", "task.json"):
        assert (by_cli / name).read_bytes() == (by_gui / name).read_bytes(), name
    a, b = read_metrics(by_cli / "metrics.jsonl"), read_metrics(by_gui / "metrics.jsonl")
    assert [(type(r), r.step) for r in a] == [(type(r), r.step) for r in b]
    assert [r.loss for r in a if isinstance(r, Step)] == [r.loss for r in b if isinstance(r, Step)]

    rows = {Path(r.run_dir).name: r.to_dict() for r in RunHistory().list()}
    assert rows["cli"]["source"] == "cli" and rows["gui"]["source"] == "gui"
    differ = {"id", "started_at", "updated_at", "ended_at", "pid", "pid_start", "host", "source", "run_dir",
              "train_s", "duration_s"}
    same = {k: v for k, v in rows["cli"].items() if k not in differ}
    assert same == {k: v for k, v in rows["gui"].items() if k not in differ}
    assert same["status"] == "finished" and same["step"] == 4 and "val_loss" in same["metrics"]
    assert rows["gui"]["train_s"] > 0 and rows["gui"]["ended_at"] >= rows["gui"]["started_at"]


def test_a_continued_run_keeps_its_task_json_and_its_row(home, tmp_path):
    run_dir = tmp_path / "run"
    with RunSession(small_preset(4), run_dir, source="gui") as first:
        list(first)
    (run_dir / "task.json").write_text('{"kept": true}\n')  # as the run began (the weights were trained on it)
    with RunSession(small_preset(6), run_dir, source="gui", resume=True) as again:
        records = list(again)
    assert records[0].step == 4 and records[0].resumed_from and again.end.step == 6
    assert json.loads((run_dir / "task.json").read_text()) == {"kept": True}
    assert json.loads((run_dir / "preset.json").read_text())["train"]["steps"] == 6  # given more steps
    (row,) = RunHistory().list()
    assert row.status == "finished" and row.step == 6


def test_metrics_keep_profiles_only_every_few_steps(home, tmp_path):
    """Every step's profile reaches the plots of a live run; the file keeps one per
    PROFILE_EVERY steps (they were ~2 KB of every step's line)."""
    steps = 2 * PROFILE_EVERY + 3
    with RunSession(small_preset(steps, ("train.log_every=1",)), tmp_path / "run") as run:
        live = [r.step for r in run if isinstance(r, Step) and r.timestep_grad_norms]
    on_disk = [r.step for r in read_metrics(tmp_path / "run" / "metrics.jsonl")
               if isinstance(r, Step) and r.timestep_grad_norms]
    assert live == list(range(1, steps + 1))
    assert on_disk == [1, 1 + PROFILE_EVERY, 1 + 2 * PROFILE_EVERY]


def test_training_time_leaves_a_pause_out(home, tmp_path, monkeypatch):
    """A pause of 1000 s (the clock jumps while the trainer waits) counts neither in the
    End record's time nor in the history's training time."""
    offset = [0.0]
    real = time.perf_counter
    monkeypatch.setattr(time, "perf_counter", lambda: real() + offset[0])
    waiting = threading.Event()

    class Control(TrainControl):
        def wait_if_paused(self, poll_s: float = 0.1) -> None:
            if self.paused:
                waiting.set()
            super().wait_if_paused(poll_s)

    control = Control()

    def resume_after_the_pause():
        waiting.wait()
        offset[0] += 1000.0  # the user left for 1000 s
        control.resume()

    resumer = threading.Thread(target=resume_after_the_pause, daemon=True)
    with RunSession(small_preset(4), tmp_path / "run", control=control) as run:
        for record in run:
            if isinstance(record, Step) and record.step == 2:
                control.pause()
                resumer.start()
    resumer.join()
    assert waiting.is_set() and control.paused_s >= 1000.0
    assert 0 < run.end.time_s < 1000.0
    (row,) = RunHistory().list()
    assert 0 < row.train_s < 1000.0 and row.duration_s == row.train_s


def _gui_trainer_script(run_dir: Path) -> str:
    return f"""
import sys
from PySide6.QtCore import QCoreApplication
from workbench import cli
from workbench.gui.worker import TrainWorker
app = QCoreApplication(sys.argv)
preset = cli.load_preset_with_overrides("adding_gru", {SETS!r} + ["train.checkpoint_every=0", "train.eval_every=0"],
                                        1000000, "cpu", 7)
worker = TrainWorker(preset, {str(run_dir)!r})
worker.run()
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_a_window_killed_mid_run_leaves_its_run_interrupted(tmp_path):
    pytest.importorskip("PySide6.QtCore")
    home, run_dir = tmp_path / "home", tmp_path / "run"
    env = child_env(home, QT_QPA_PLATFORM="offscreen")
    proc = start_child(["-c", _gui_trainer_script(run_dir)], tmp_path, env)
    metrics = run_dir / "metrics.jsonl"

    def running_in_history():
        running = RunHistory(home / "history.sqlite3").list()
        assert [(r.status, r.source, r.pid) for r in running] == [("running", "gui", proc.pid)]

    # the window's worker flushes its records at each eval/checkpoint only: wait for bytes on disk
    sigkill_when(proc, lambda: metrics.is_file() and metrics.stat().st_size > 4096, "the run wrote nothing",
                 while_running=running_in_history)
    (row,) = RunHistory(home / "history.sqlite3").list()  # the next start (or `workbench runs`)
    assert row.status == "interrupted" and row.run_dir == str(run_dir.resolve()) and "killed" in row.message
    listed = subprocess.run([sys.executable, "-m", "workbench", "runs"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0 and "interrupted" in listed.stdout.splitlines()[1]


# ----------------------------------------------------------------------------- records


def test_every_kind_of_record_round_trips_through_json():
    profile = {"layers.0": np.array([1.5, 0.25, math.nan, math.inf, 0.0])}  # exact in 4 digits
    records = [
        Start(step=3, device="cpu", parameters=10, total_steps=9, resumed_from="x/step-3", layers=["layers.0"]),
        Step(step=4, loss=math.nan, lr=1e-3, grad_norm=math.inf, grad_norm_clipped=1.0, clipped=True,
             time_s=0.25, units_per_s=1024.0, scaler_skipped=True, timestep_grad_norms=profile,
             param_grad_norms={"layers.0": {"forward": 0.5, "recurrent": 0.125, "bias": 2.0}}),
        Step(step=5, loss=0.1234567890123, lr=1e-3, grad_norm=0.5, grad_norm_clipped=0.5),
        Probe(step=5, hidden_grad_norms=profile, time_s=0.5),
        Dynamics(step=5, jacobian_norms=profile, lyapunov={"layers.0": np.array([-0.125, -0.5])},
                 spectra={"layers.0": {"forget": {"radius": 0.75, "sigma_max": 1.25,
                                                  "eigenvalues": [[0.75, -0.5], [0.0, 0.25]]}}},
                 gates={"layers.0": {"forget": {"mean": 0.875, "saturation": 0.0625}}},
                 trajectories={"layers.0": {"rows": [[[0.5, -0.25], [1.0, 0.125]]], "explained": [0.75, 0.125]}},
                 time_s=0.25),
        Eval(step=6, metrics={"val_loss": 0.5, "accuracy": math.nan}),
        NonFinite(step=7, what="loss", action="skipped", restored=True, message="step 7: the loss is nan"),
        Checkpoint(step=8, path="run/checkpoints/step-8", final=True),
        End(step=9, status="stopped", time_s=1.5, last_loss=-math.inf, metrics={"val_loss": 0.25},
            fused_stacks=None, graphs_off="no"),
    ]
    assert {type(r) for r in records} == set(KINDS.values())
    for record in records:
        line = record.to_json()
        assert "NaN" not in line and "Infinity" not in line  # plain JSON
        back = from_json(json.loads(line))
        assert type(back) is type(record) and back == record, line
        assert back.to_json() == line
    assert from_json(records[2].to_json()).loss == 0.1234567890123  # scalars keep full precision
    assert records[3] != Probe(step=5, hidden_grad_norms={"layers.0": np.array([1.5])}, time_s=0.5)


def test_records_read_tolerantly():
    older = from_json({"kind": "eval", "step": 2, "val_loss": "nan", "mse": 0.5})  # the flat JSON form
    assert isinstance(older, Eval) and math.isnan(older.val_loss) and older.metrics["mse"] == 0.5
    newer = from_json({"kind": "step", "step": 1, "loss": 0.5, "a_field_from_later": 3})
    assert newer.loss == 0.5 and newer.extra == {"a_field_from_later": 3} and math.isnan(newer.grad_norm)
    for junk in ('{"kind": "st', '{"kind": "step"}', '{"kind": "step", "step": 1.5}', '{"kind": 3}', "[1]",
                 '{"kind": "unknown", "step": 1}', '{"kind": "step", "step": true}'):
        assert from_json(junk) is None, junk


def test_the_session_and_the_records_need_no_qt():
    code = ("import sys, workbench.engine.session, workbench.engine.records, workbench.runs; "
            "print(any(m.startswith('PySide6') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(PROJECT)},
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
