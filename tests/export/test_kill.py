"""Killing a training process with SIGKILL mid-run: the history stays readable (the run
is marked interrupted at the next start) and the run resumes from its last checkpoint."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.engine.checkpoint import latest_checkpoint
from workbench.runs import RunHistory

from .processes import child_env, sigkill_when, start_child

PROJECT = Path(__file__).resolve().parents[2]
SETTINGS = ["--device", "cpu", "--quiet", "--set", "data.options.seq_len=8", "--set", "model.layers.0.hidden_size=8",
            "--set", "train.checkpoint_every=5", "--set", "train.eval_every=0", "--set", "train.probe_every=0",
            "--set", "data.options.val_size=16", "--set", "train.num_threads=1"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_sigkill_leaves_a_readable_history_and_a_resumable_checkpoint(tmp_path):
    home, run_dir = tmp_path / "home", tmp_path / "run"
    env = child_env(home)
    cmd = [sys.executable, "-m", "workbench", "train", "adding_gru", "--run-dir", str(run_dir)] + SETTINGS
    proc = start_child(cmd[1:] + ["--steps", "1000000"], tmp_path, env)

    def saved_ten_steps():
        saved = latest_checkpoint(run_dir)
        return saved is not None and int(saved.name[5:]) >= 10

    def history_readable():  # another process reads the history while the run writes it (WAL)
        running = RunHistory(home / "history.sqlite3").list()
        assert [r.status for r in running] == ["running"] and running[0].pid == proc.pid

    sigkill_when(proc, saved_ten_steps, "no checkpoint", while_running=history_readable)
    history = RunHistory(home / "history.sqlite3")  # the next start
    (row,) = history.list()
    assert row.status == "interrupted" and row.run_dir == str(run_dir.resolve())
    saved = latest_checkpoint(run_dir)
    assert saved is not None
    step = int(saved.name[5:])
    assert step >= 10 and step % 5 == 0
    # metrics.jsonl may end in a torn line; everything before it is readable
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "start"
    resumed = subprocess.run(cmd + ["--steps", str(step + 5), "--resume"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    records = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()[len(lines):]
               if l.startswith("{") and l.endswith("}")]
    start = next(r for r in records if r["kind"] == "start")
    assert start["step"] == step and start["resumed_from"].endswith(saved.name)
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(step + 1, step + 6))
    (row,) = RunHistory(home / "history.sqlite3").list()  # the same row, now finished
    assert row.status == "finished" and row.step == step + 5
