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


# A 1280x800 screen, as in issue 15 (the offscreen platform's own screen is smaller;
# the window is held to this rectangle as a window manager would hold it).
SCREEN_W, SCREEN_H = 1280, 800


def _visible_docks(window):
    """The docks a user sees: shown, docked, and on top of their tab group."""
    return [d for d in window.docks if d.isVisible() and not d.isFloating() and not d.visibleRegion().isEmpty()]


def _assert_fits(window, what: str) -> None:
    from PySide6.QtCore import QRect

    window.layout().activate()
    hint = window.minimumSizeHint()
    assert hint.height() <= SCREEN_H and hint.width() <= SCREEN_W, f"{what}: the window needs {hint.width()}x{hint.height()}"
    assert window.minimumHeight() <= SCREEN_H, f"{what}: minimum height {window.minimumHeight()}"
    frame = window.frameGeometry()
    assert QRect(0, 0, SCREEN_W, SCREEN_H).contains(frame), f"{what}: the window grew to {frame}"
    # panels lie inside the window and do not overlap each other
    inside = QRect(0, 0, window.width(), window.height())
    rects = {}
    for d in _visible_docks(window):
        r = QRect(d.mapTo(window, d.rect().topLeft()), d.size())
        assert inside.contains(r), f"{what}: {d.windowTitle()} at {r} leaves the window {inside}"
        rects[d.windowTitle()] = r
    central = window.centralWidget()
    rects["central"] = QRect(central.mapTo(window, central.rect().topLeft()), central.size())
    names = list(rects)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not rects[a].intersects(rects[b]), f"{what}: {a} {rects[a]} overlaps {b} {rects[b]}"
    # and what a dock shows stays inside it (the Try it widgets do not paint over the tab bar)
    dock = window.tryout_dock
    top = dock.widget().mapTo(dock, dock.widget().rect().topLeft())
    assert top.y() >= 0 and dock.widget().height() <= dock.height(), f"{what}: Try it spills out of its dock"


def test_every_try_it_result_keeps_the_window_on_a_1280x800_screen(qtbot, tmp_path, trained_runs, shared_data):
    from PySide6.QtCore import QSettings

    from workbench.gui.main_window import MainWindow

    w = MainWindow(settings=QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat),
                   data_dir=tmp_path / "data")
    w.dialog_answers = {"keep_run": "keep", "save_changes": "discard", "info": "ok"}
    qtbot.addWidget(w)
    w.show()
    # the frame (title bar, borders) fills the screen, as a maximised window would
    extra = w.frameGeometry().size() - w.geometry().size()
    w.resize(SCREEN_W - extra.width(), SCREEN_H - extra.height())
    w.move(0, 0)
    panel = w.tryout
    try:
        w.tryout_dock.raise_()
        _assert_fits(w, "at start")

        def result(action, *kinds):
            seen: list[str] = []
            panel.result_shown.connect(seen.append)
            try:
                action()
                qtbot.waitUntil(lambda: all(k in seen for k in kinds) or bool(panel.error), timeout=TIMEOUT)
            finally:
                panel.result_shown.disconnect(seen.append)
            assert not panel.error, f"{panel.mode}: {panel.error}"
            qtbot.wait(50)

        def open_(name):
            result(lambda: panel.open_run(trained_runs[name]), "open")
            return panel.view

        video = shared_data / "video"
        drives = {
            "charlm": lambda v: (v.prompt.setPlainText("the quick"), v.length.setValue(60),
                                 result(v.start, "generate", "inside")),
            "tagger": lambda v: (v.input.setText("The dog saw the saw ."), result(v.run, "tag", "inside")),
            "textclass": lambda v: (v.input.setText("the plot was not good but the acting was great ."),
                                    result(v.run, "classify", "inside")),
            "brackets": lambda v: (v.input.setText("([]{})"), result(v.run, "classify")),
            "dates": lambda v: (v.input.setText("march 5, 2024"), result(v.run, "transduce", "inside")),
            "captions": lambda v: result(v.new_image, "caption", "inside"),
            "vclass": lambda v: result(lambda: v.open_video(str(video / "realshort.mp4")),
                                       "video_open", "video_outputs", "frame", "inside"),
            "vnext": lambda v: result(lambda: v.open_video(str(video / "cockatoo.mp4")),
                                      "video_open", "video_outputs", "frame"),
            "adding": lambda v: (v.input.setText("0.5* 0.1 0.25* 0.3"), result(v.run, "numbers", "inside")),
            "forecast": lambda v: (v.input.setText(" ".join(str(i % 7) for i in range(30))),
                                   result(v.run, "numbers", "inside")),
        }
        for name, drive in drives.items():
            drive(open_(name))
            _assert_fits(w, f"after a {name} result")
        w._default_layout()  # View ▸ Reset layout
        w.tryout_dock.raise_()
        qtbot.wait(50)
        _assert_fits(w, "after Reset layout")
    finally:
        panel.shutdown()
