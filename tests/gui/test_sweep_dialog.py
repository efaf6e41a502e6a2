"""The Sweep dialog (workbench/gui/sweep_dialog.py): a real two-trial study from the
open preset, its live table, a trial opened as a run, and bad input shown in place."""
from __future__ import annotations

import pytest

pytest.importorskip("optuna")

from workbench import presets, spec  # noqa: E402

TINY = ["data.options.seq_len=10", "data.options.val_size=64", "model.layers.0.hidden_size=8", "train.steps=10",
        "train.batch_size=16", "train.eval_every=5", "train.probe_every=0", "train.checkpoint_every=0",
        "train.device=cpu", "train.num_threads=1"]


def test_the_dialog_runs_a_study_and_opens_a_trial(qtbot, tmp_path):
    from workbench.gui.sweep_dialog import SweepDialog

    preset = spec.with_overrides(presets.resolve("adding_lstm"), TINY)
    dialog = SweepDialog(preset, storage=str(tmp_path / "s.sqlite3"), runs_root=tmp_path / "runs")
    qtbot.addWidget(dialog)
    dialog.params.setPlainText("model.layers.0.cell=banana,gru")
    assert not dialog.start()
    assert "banana" in dialog.status.text() and "\n" not in dialog.status.text()

    dialog.field_combo.setCurrentText("model.layers.0.cell")
    dialog.params.setPlainText("train.lr=log:1e-3..1e-2")
    dialog._add_field()
    assert dialog.params.toPlainText().splitlines() == ["train.lr=log:1e-3..1e-2", "model.layers.0.cell=lstm,gru"]
    dialog.trials.setValue(2)
    with qtbot.waitSignal(dialog.finished_sweep, timeout=120_000) as done:
        assert dialog.start()
    assert done.args == ["done: 2 trial(s) run"]
    assert dialog.table.rowCount() == 2
    assert [dialog.table.item(r, 1).text() for r in range(2)] == ["complete", "complete"]
    assert dialog.summary.text().startswith("best: trial ") and "importance: " in dialog.summary.text()
    folder = dialog.table.item(0, dialog.table.columnCount() - 1).text()
    assert folder.startswith(str(tmp_path / "runs" / dialog.job.study))
    with qtbot.waitSignal(dialog.open_run) as opened:
        dialog._open_row(0, 0)
    assert opened.args == [folder]


def test_the_window_opens_the_dialog_on_its_preset(make_window, tmp_path):
    w = make_window()
    dialog = w.open_sweep()
    assert dialog is not None and dialog.preset.to_dict() == w.doc.preset.to_dict()
    assert dialog.runs_root == w.data_dir / "runs" / "sweeps"
    assert w.act_sweep.isEnabled()
    dialog.close()
