"""The window's run collection without Qt: the history's rows and this session's runs,
one entry per run folder, most recent first, with subscribe events."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

from workbench import presets
from workbench.engine.records import Eval, Start, Step
from workbench.gui.rundata import RunData
from workbench.gui.runs_model import RunsModel, describe, main_metric, matches
from workbench.runs import RunHistory


def history_with_rows(tmp_path):
    """A history of three runs: an adding run (finished), a tagger (stopped) and a
    run whose process died while it ran (its row still says running)."""
    history = RunHistory(tmp_path / "history.sqlite")
    adding = presets.load_builtin("adding_lstm")
    tagger = presets.load_builtin("tagger_bilstm")
    ids = {}
    for name, preset in (("adding", adding), ("tagger", tagger), ("killed", adding)):
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        ids[name] = history.start(preset, run_dir, source="cli")
    history.finish(ids["adding"], "finished", metrics={"mse": 0.002, "val_loss": 0.002}, step=300)
    history.finish(ids["tagger"], "stopped", metrics={"accuracy": 0.875, "val_loss": 0.41}, step=120)
    # the killed one: written by a process that no longer exists
    with sqlite3.connect(history.path) as conn:
        conn.execute("UPDATE runs SET pid = 2147483000, pid_start = '' WHERE id = ?", (ids["killed"],))
    return history, ids


def test_history_rows_listed_most_recent_first_and_a_killed_run_shows_interrupted(tmp_path):
    history, ids = history_with_rows(tmp_path)
    model = RunsModel(history)
    events = []
    model.subscribe(events.append)
    assert model.load_history() == 3
    assert [e.kind for e in events] == ["reset"]
    entries = model.sorted_entries()
    assert [e.info.id for e in entries] == [ids["killed"], ids["tagger"], ids["adding"]]
    killed = entries[0]
    assert killed.status == "interrupted" and "interrupted" in model.describe(killed)
    # reloading keeps one entry per folder
    model.load_history()
    assert len(model.entries) == 3


def test_the_line_names_the_tasks_main_metric(tmp_path):
    history, _ids = history_with_rows(tmp_path)
    model = RunsModel(history)
    model.load_history()
    tagger = next(e for e in model.entries if e.task == "tagging")
    assert "val loss 0.41" in model.describe(tagger)  # before the task classes are known
    model.set_metric_names({"tagging": "accuracy", "adding": "mse"})
    assert main_metric(tagger, model.metric_names) == ("accuracy", 0.875)
    assert "accuracy 0.875" in model.describe(tagger) and "val loss" not in model.describe(tagger)
    # a per-unit metric matches the run's own unit
    run = RunData("lm", task="charlm")
    run.add([Eval(step=10, metrics={"val_loss": 1.0, "nats_per_word": 4.5})])
    entry = model.add_run(run)
    assert describe(entry, {"charlm": "nats_per_char"}).count("nats per word 4.5") == 1


def test_session_runs_join_their_history_row_and_publish_events(tmp_path):
    history, _ids = history_with_rows(tmp_path)
    model = RunsModel(history, clock=lambda: 1e12)  # this session's runs are the newest
    model.load_history()
    events = []
    unsubscribe = model.subscribe(lambda e: events.append((e.kind, e.entry)))
    live = RunData("new run", live=True, run_dir=str(tmp_path / "runs" / "new"), status="starting", task="adding")
    entry = model.add_run(live)
    assert events[-1] == ("add", entry) and model.sorted_entries()[0] is entry and model.plotted == [live]
    live.add([Start(step=0, total_steps=100, device="cpu"), Step(step=1, loss=0.5)])
    model.changed(entry)
    assert events[-1] == ("update", entry) and entry.status == "running" and entry.step == 1
    model.select(entry)
    assert events[-1] == ("select", entry) and model.selected is entry
    # the tagger's row gains curves when overlaid (same folder: same entry)
    tagger = next(e for e in model.entries if e.task == "tagging")
    curves = RunData("tagger curves", run_dir=tagger.run_dir)
    assert model.add_run(curves, session=False) is tagger and tagger.data is curves
    # out of the plots: a history run stays listed, a folder-less one goes
    model.unplot(curves)
    assert tagger in model.entries and not tagger.in_plots(model.plotted)
    loose = model.add_run(RunData("in memory"))
    model.unplot(loose.data)
    assert loose not in model.entries and events[-1] == ("remove", loose)
    model.remove(entry)
    assert events[-1] == ("remove", entry) and model.selected is None
    unsubscribe()
    n = len(events)
    model.select(tagger)
    assert len(events) == n


def test_search_matches_name_task_and_status(tmp_path):
    history, _ids = history_with_rows(tmp_path)
    model = RunsModel(history)
    model.load_history()
    by_task = {e.task: e for e in model.entries if e.status != "interrupted"}
    assert matches(by_task["tagging"], "TAGG") and not matches(by_task["adding"], "tagg")
    assert matches(by_task["tagging"], "stopped bilstm") and not matches(by_task["tagging"], "finished")
    assert [e.status for e in model.entries if matches(e, "interrupted")] == ["interrupted"]


def test_an_unusable_history_leaves_the_session_runs(tmp_path):
    bad = tmp_path / "history.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    model = RunsModel(RunHistory(bad))
    assert model.load_history() == 0 and str(bad) in model.history_error
    model.add_run(RunData("still listed"))
    assert [e.name for e in model.sorted_entries()] == ["still listed"]


def test_the_model_imports_no_qt():
    code = ("import sys, workbench.gui.runs_model; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'shiboken6', 'pyqtgraph', 'torch'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
