"""The run history: SQLite in WAL mode, filters, interrupted runs, the CLI."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from workbench import cli, runs, userdirs
from workbench.engine.records import End, Start
from workbench.presets import load_builtin
from workbench.runs import HistoryError, RunHistory, RunRecorder


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_user_folders_follow_the_platform_and_the_override(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert userdirs.data_dir() == tmp_path / "xdg" / "rnn-workbench" / "workbench"
        monkeypatch.setenv("XDG_DATA_HOME", "relative/is/ignored")
        assert userdirs.data_dir() == userdirs.Path.home() / ".local" / "share" / "rnn-workbench" / "workbench"
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "wb"))
    assert userdirs.data_dir() == tmp_path / "wb"
    assert userdirs.history_path() == tmp_path / "wb" / "history.sqlite3"
    assert userdirs.user_presets_dir() == tmp_path / "wb" / "presets"
    assert userdirs.config_dir() == tmp_path / "wb" / "config"


def test_user_folders_are_the_ones_qt_gives_the_window(tmp_path, monkeypatch):
    """The GUI names its application in workbench/gui/app.py; Qt then places its folders
    exactly where userdirs looks (without Qt)."""
    qt = pytest.importorskip("PySide6.QtCore")
    from workbench.gui import app

    assert (app.ORGANISATION, app.APPLICATION) == (userdirs.ORGANISATION, userdirs.APPLICATION)
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    qt.QCoreApplication.setOrganizationName(app.ORGANISATION)
    qt.QCoreApplication.setApplicationName(app.APPLICATION)
    where = qt.QStandardPaths.writableLocation
    kinds = qt.QStandardPaths.StandardLocation
    assert userdirs.Path(where(kinds.AppDataLocation)) == userdirs.data_dir()
    assert userdirs.Path(where(kinds.AppConfigLocation)) == userdirs.config_dir()
    assert userdirs.Path(where(kinds.CacheLocation)) == userdirs.cache_dir()


def test_start_update_finish_list_filter_delete(home):
    h = RunHistory()
    gru, lstm = load_builtin("adding_gru"), load_builtin("charlm_lstm")
    a = h.start(gru, home / "a", source="gui")
    b = h.start(lstm, home / "b")
    h.update(a, device="cpu", total_steps=100, step=50, metrics={"mse": 0.1, "nan": float("nan")})
    h.finish(a, "finished", metrics={"mse": 0.01}, step=100)
    h.mark(b, "stopped", "by the user")
    info = h.get(a)
    assert (info.status, info.step, info.device, info.source, info.metrics) == ("finished", 100, "cpu", "gui",
                                                                                {"mse": 0.01})
    assert info.preset().name == "adding_gru" and info.run_dir == str((home / "a").resolve())
    assert info.ended_at >= info.started_at and info.duration_s >= 0
    assert [r.id for r in h.list()] == [b, a]  # newest first
    assert [r.id for r in h.list(status="finished")] == [a]
    assert [r.id for r in h.list(status=("finished", "stopped"))] == [b, a]
    assert [r.id for r in h.list(task="charlm")] == [b]
    assert [r.id for r in h.list(name="GRU")] == [a]  # case-insensitive part of the name
    assert [r.id for r in h.list(run_dir=home / "b")] == [b]
    assert h.list(limit=1)[0].id == b
    assert h.get(b).message == "by the user"
    with pytest.raises(ValueError):
        h.update(a, status="exploded")
    with pytest.raises(ValueError):
        h.update(a, pid=1)
    (home / "b").mkdir()
    (home / "b" / "preset.json").write_text("{}")
    assert h.delete(b, remove_folder=True) and not (home / "b").exists()
    assert h.get(b) is None and not h.delete(b)
    with sqlite3.connect(userdirs.history_path()) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_running_row_whose_process_is_gone_becomes_interrupted(home):
    h = RunHistory()
    run_id = h.start(load_builtin("adding_gru"), home / "r")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    with sqlite3.connect(userdirs.history_path()) as conn:
        conn.execute("UPDATE runs SET pid = ?, pid_start = '' WHERE id = ?", (pid, run_id))
    live = h.start(load_builtin("adding_gru"), home / "s")  # this process: alive
    reused = h.start(load_builtin("adding_gru"), home / "t")
    with sqlite3.connect(userdirs.history_path()) as conn:  # our pid, but another process's start time
        conn.execute("UPDATE runs SET pid_start = '1' WHERE id = ?", (reused,))
    assert h.get(run_id).status == "running"  # this object already recovered at its first use
    fresh = RunHistory()  # "the next start"
    statuses = {r.id: r.status for r in fresh.list()}
    assert statuses[run_id] == "interrupted" and statuses[live] == "running"
    assert statuses[reused] == ("interrupted" if runs._process_start(os.getpid()) else "running")
    assert "killed" in fresh.get(run_id).message


def test_recorder_marks_failed_and_stopped_and_survives_a_broken_history(home, tmp_path):
    preset = load_builtin("adding_gru")
    with pytest.raises(RuntimeError):
        with RunRecorder(preset, tmp_path / "x") as rec:
            rec.observe(Start(device="cpu", total_steps=10, step=0))
            raise RuntimeError("boom")
    with pytest.raises(KeyboardInterrupt):
        with RunRecorder(preset, tmp_path / "y"):
            raise KeyboardInterrupt
    h = RunHistory()
    by_dir = {os.path.basename(r.run_dir): r for r in h.list()}
    assert by_dir["x"].status == "failed" and "boom" in by_dir["x"].message and by_dir["x"].device == "cpu"
    assert by_dir["y"].status == "stopped"
    # A file that is not a database: a clear error, and training is never stopped by it.
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match="broken.sqlite3"):
        RunHistory(broken).list()
    warnings = []
    with RunRecorder(preset, tmp_path / "z", history=RunHistory(broken), warn=warnings.append) as rec:
        rec.observe(End(status="finished"))
    assert len(warnings) == 1 and "not recorded" in warnings[0]


def test_cli_records_runs_and_lists_them(home, tmp_path, capsys):
    args = ["train", "adding_gru", "--steps", "3", "--quiet", "--set", "data.options.seq_len=6",
            "--set", "model.layers.0.hidden_size=4", "--set", "train.probe_every=0", "--set", "train.eval_every=0",
            "--set", "data.options.val_size=16"]
    assert cli.main(args + ["--run-dir", str(tmp_path / "one")]) == 0
    exploding = ["--set", "model.layers.0.cell=rnn_relu", "--set", "model.init.spectral_radius=100",
                 "--set", "data.options.seq_len=60", "--set", "train.on_non_finite=stop"]
    assert cli.main(args + exploding + ["--run-dir", str(tmp_path / "two")]) == 1
    capsys.readouterr()
    assert cli.main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["id", "status", "preset", "task"] and len(table) == 3
    assert str(tmp_path / "one") in table[2] and "finished" in table[2] and "3/3" in table[2]
    assert str(tmp_path / "two") in table[1] and "failed" in table[1]
    assert cli.main(["runs", "--json", "--status", "finished", "--since", "1d"]) == 0
    rows = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert any(r["run_dir"] == str(tmp_path / "one") and "val_loss" in r["metrics"] for r in rows)
    assert cli.main(["runs", "show", str(rows[0]["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["preset"]["name"] == "adding_gru"
    assert cli.main(["runs", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err
    assert cli.main(["runs", "delete", "999"]) == 2
    # resuming reuses the run's row
    assert cli.main(args[:2] + ["--steps", "5"] + args[4:] + ["--run-dir", str(tmp_path / "one"), "--resume"]) == 0
    one = RunHistory().list(run_dir=tmp_path / "one")
    assert len(one) == 1 and one[0].step == 5 and one[0].status == "finished"


def test_the_recorder_keeps_the_training_time_across_a_continued_run(home, tmp_path):
    """A continued run is one row whose training time goes on from where it was (the time
    between its sessions is not counted)."""
    preset = load_builtin("adding_gru")
    with RunRecorder(preset, tmp_path / "g", source="gui") as rec:
        rec.observe(Start(device="cpu", total_steps=7, step=0), 0.0)
        rec.observe(End(status="stopped", step=4, metrics={"mse": 0.2}, time_s=3.0), 3.0)
    with RunRecorder(preset, tmp_path / "g", source="gui", resume=True) as again:
        again.observe(Start(device="cpu", total_steps=7, step=4), 0.0)
        again.observe(End(status="finished", step=7, metrics={"mse": 0.1}, time_s=2.5), 2.5)
    assert again.run_id == rec.run_id
    info = RunHistory().get(rec.run_id)
    assert (info.source, info.status, info.step, info.total_steps, info.metrics["mse"]) == ("gui", "finished", 7, 7, 0.1)
    assert info.train_s == 5.5 and info.duration_s == 5.5
