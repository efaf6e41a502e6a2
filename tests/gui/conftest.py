"""A workbench window with its settings and data folder in a temporary folder."""
from __future__ import annotations

import gc

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture(autouse=True)
def _garbage_collected_on_the_gui_thread(qapp):
    """As in the app (workbench.gui.app.run_app): automatic cycle collection off, a timer
    collecting on the GUI thread. Otherwise a worker thread's collection could destroy a
    closed window's Qt objects while this thread deleted others, and each waited on the
    other (the GIL and a Qt lock): the suite stalled in about one run in ten."""
    from pyqtgraph.util.garbage_collector import GarbageCollector

    gc.collect()
    collector = GarbageCollector(interval=0.5)
    yield
    collector.timer.stop()
    gc.collect()
    gc.enable()


@pytest.fixture
def make_window(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow

    made = []

    def make(settings_name: str = "settings.ini", **kwargs):
        settings = QSettings(str(tmp_path / settings_name), QSettings.Format.IniFormat)
        w = MainWindow(settings=settings, data_dir=tmp_path / "data", **kwargs)
        # Answer the window's questions without dialogs.
        w.dialog_answers = {"keep_run": "keep", "save_changes": "discard", "info": "ok"}
        qtbot.addWidget(w)
        w.resize(1280, 800)
        w.show()
        made.append(w)
        return w

    yield make
    # Never let Qt delete a window whose training thread still runs.
    for w in made:
        if w.training_active:
            w._worker.stop()
            qtbot.waitUntil(lambda w=w: not w.training_active, timeout=60_000)


@pytest.fixture
def window(make_window):
    return make_window()


def tiny(window, steps: int = 5000, **extra):
    """Shrink the open preset so a CPU trains it in milliseconds per step."""
    doc = window.doc
    doc.set("model.layers.0.hidden_size", 8)
    doc.set("data.options.seq_len", 12)
    doc.set("data.options.val_size", 64)
    doc.set("train.batch_size", 16)
    doc.set("train.steps", steps)
    doc.set("train.eval_every", 25)
    doc.set("train.eval_batches", 2)
    doc.set("train.probe_every", 10)
    doc.set("train.checkpoint_every", 0)
    for k, v in extra.items():
        doc.set(k, v)
