"""Killing a training process with SIGKILL mid-run: the history stays readable (the run
is marked interrupted at the next start) and the run resumes from its last checkpoint."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.engine.checkpoint import latest_checkpoint
from workbench.runs import RunHistory

PROJECT = Path(__file__).resolve().parents[2]
SETTINGS = ["--device", "cpu", "--quiet", "--set", "data.options.seq_len=8", "--set", "model.layers.0.hidden_size=8",
            "--set", "train.checkpoint_every=5", "--set", "train.eval_every=0", "--set", "train.probe_every=0",
            "--set", "data.options.val_size=16", "--set", "train.num_threads=1"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")
def test_sigkill_leaves_a_readable_history_and_a_resumable_checkpoint(tmp_path):
    home, run_dir = tmp_path / "home", tmp_path / "run"
    env = {**os.environ, "WORKBENCH_HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "workbench", "train", "adding_gru", "--run-dir", str(run_dir)] + SETTINGS
    proc = subprocess.Popen(cmd + ["--steps", "1000000"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while latest_checkpoint(run_dir) is None or int(latest_checkpoint(run_dir).name[5:]) < 10:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        # While it runs, another process can read the history (WAL: readers never block).
        running = RunHistory(home / "history.sqlite3").list()
        assert [r.status for r in running] == ["running"] and running[0].pid == proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
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
