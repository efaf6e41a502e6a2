"""The Sweep dialog (workbench/gui/sweep_dialog.py): a real three-trial study from the
open preset, its live table, its parallel-coordinates plot and importance chart, the
trials' runs in the runs model, a trial opened as a run, and bad input shown in place."""
from __future__ import annotations

import pytest

pytest.importorskip("optuna")

import math  # noqa: E402

from workbench import presets, spec  # noqa: E402

TINY = ["data.options.seq_len=10", "data.options.val_size=64", "model.layers.0.hidden_size=8", "train.steps=10",
        "train.batch_size=16", "train.eval_every=5", "train.probe_every=0", "train.checkpoint_every=0",
        "train.device=cpu", "train.num_threads=1"]


def test_the_dialog_runs_a_study_and_opens_a_trial(qtbot, tmp_path):
    from workbench.gui.runs_model import RunsModel
    from workbench.gui.sweep_dialog import SweepDialog
    from workbench.runs import RunHistory

    preset = spec.with_overrides(presets.resolve("adding_lstm"), TINY)
    model = RunsModel(RunHistory())  # the trials write their rows to the (test session's) user history
    dialog = SweepDialog(preset, storage=str(tmp_path / "s.sqlite3"), runs_root=tmp_path / "runs", runs=model)
    qtbot.addWidget(dialog)
    dialog.params.setPlainText("model.layers.0.cell=banana,gru")
    assert not dialog.start()
    assert "banana" in dialog.status.text() and "\n" not in dialog.status.text()

    dialog.field_combo.setCurrentText("model.layers.0.cell")
    dialog.params.setPlainText("train.lr=log:1e-3..1e-2")
    dialog._add_field()
    assert dialog.params.toPlainText().splitlines() == ["train.lr=log:1e-3..1e-2", "model.layers.0.cell=lstm,gru"]
    dialog.trials.setValue(3)
    with qtbot.waitSignal(dialog.finished_sweep, timeout=120_000) as done:
        assert dialog.start()
    assert done.args == ["done: 3 trial(s) run"]
    assert dialog.table.rowCount() == 3
    assert [dialog.table.item(r, 1).text() for r in range(3)] == ["complete"] * 3
    assert dialog.summary.text().startswith("best: trial ")

    # the parallel plot: one line per complete trial, each value where its axis puts it
    study = dialog.rows
    lines = dialog.parallel.lines
    assert sorted(lines) == [0, 1, 2]
    values = [t.value for t in study]
    best = min(study, key=lambda t: t.value)
    for t in study:
        x, y = lines[t.number].getData()
        assert list(x) == [0, 1, 2]
        lr = (math.log10(t.params["train.lr"]) + 3) / 1  # log axis 1e-3..1e-2
        cell = {"lstm": 0.0, "gru": 1.0}[t.params["model.layers.0.cell"]]
        scaled = math.log10 if dialog.parallel.geometry.axes[-1].scale == "log" else float
        metric = (scaled(t.value) - scaled(min(values))) / (scaled(max(values)) - scaled(min(values)))
        assert y == pytest.approx([lr, cell, metric])
    assert [ln.number for ln in dialog.parallel.geometry.lines if ln.best] == [best.number]
    assert [a.scale for a in dialog.parallel.geometry.axes][:2] == ["log", "category"]

    # the importance chart: one bar per swept field, computed off the GUI thread
    qtbot.waitUntil(lambda: dialog.importance_shown_for == 3, timeout=60_000)
    assert sorted(k for k, _v in dialog.importance.values) == ["model.layers.0.cell", "train.lr"], \
        dialog.importance.note.text()
    assert len(dialog.importance.bars.opts["width"]) == 2

    # each trial is a run in the runs model, named by study and number, with its curves
    names = {e.name: e for e in model.entries}
    assert sorted(names) == [f"{dialog.job.study} #{n}" for n in range(3)]
    for entry in names.values():
        assert entry.status == "finished" and len(entry.data.steps) == 10 and entry.data in model.plotted
        assert entry.info is not None and entry.info.study == dialog.job.study

    folder = dialog.table.item(0, dialog.table.columnCount() - 1).text()
    assert folder.startswith(str(tmp_path / "runs" / dialog.job.study))
    with qtbot.waitSignal(dialog.open_run) as opened:
        dialog._open_row(0, 0)
    assert opened.args == [folder]


def test_importances_on_too_few_trials_are_a_note_not_a_crash(qtbot):
    from workbench.gui.sweep_plots import ImportancePlot
    from workbench.gui.sweep_view import importance_items

    chart = ImportancePlot()
    qtbot.addWidget(chart)
    chart.show_importances(*importance_items("need two finished trials or more"))
    assert chart.bars is None and chart.note.text().startswith("No importances yet: need two")
    chart.show_importances(*importance_items({"train.lr": 0.25, "model.layers.0.cell": 0.75}))
    assert [k for k, _v in chart.values] == ["model.layers.0.cell", "train.lr"]
    assert len(chart.bars.opts["width"]) == 2


def test_the_window_opens_the_dialog_on_its_preset(make_window, tmp_path):
    w = make_window()
    dialog = w.open_sweep()
    assert dialog is not None and dialog.preset.to_dict() == w.doc.preset.to_dict()
    assert dialog.runs_root == w.data_dir / "runs" / "sweeps"
    assert dialog.trial_runs.model is w.runs_model  # the trials' runs join the window's
    assert w.act_sweep.isEnabled()
    dialog.close()


def test_a_listed_trial_opens_as_itself_not_as_a_second_copy(make_window, tmp_path):
    from workbench.gui.rundata import RunData

    w = make_window()
    folder = tmp_path / "trial-0000"
    folder.mkdir()
    data = RunData(name="study #0", run_dir=str(folder), visible=False)
    entry = w.runs_model.add_run(data)
    assert w.open_trial_run(str(folder)) is data
    assert w.runs_model.selected is entry and data.visible
    assert [e for e in w.runs_model.entries if e.run_dir == str(folder)] == [entry]
