"""The main window's "Try it" dock: fed each run that finishes in the window and each
run folder opened from the runs panel."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

TIMEOUT = 60_000


@pytest.fixture
def window(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow

    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                   data_dir=tmp_path / "data")
    w.dialog_answers = {"keep_run": "keep", "save_changes": "discard", "info": "ok"}
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    if w.training_active:
        w._worker.stop()
        qtbot.waitUntil(lambda: not w.training_active, timeout=TIMEOUT)
    w.tryout.shutdown()


def test_try_it_dock_follows_finished_and_opened_runs(qtbot, window, trained_runs):
    assert window.tryout_dock.widget() is window.tryout
    assert window.tryout_dock.windowTitle() == "Try it"
    # a run opened from the runs panel
    assert window.load_run_folder(trained_runs["tagger"]) is not None
    qtbot.waitUntil(lambda: window.tryout.mode == "tag", timeout=TIMEOUT)
    # a run trained in the window
    doc = window.doc
    window.open_builtin("adding_lstm", quiet=True)
    for key, value in {"model.layers.0.hidden_size": 8, "data.options.seq_len": 10, "data.options.val_size": 16,
                       "train.batch_size": 8, "train.steps": 3, "train.eval_every": 1000, "train.probe_every": 0,
                       "train.checkpoint_every": 0}.items():
        doc.set(key, value)
    assert window.start_training()
    qtbot.waitUntil(lambda: not window.training_active, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.tryout.mode == "adding", timeout=TIMEOUT)
    assert window.tryout.info["run_dir"] == str(window.current_run.run_dir)
