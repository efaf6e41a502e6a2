"""Take the README's screenshots of the real window (run under Xvfb, see README.md):

    xvfb-run -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb .venv/bin/python docs/screenshots.py

Writes docs/screenshot-idle.png (first start) and docs/screenshot-training.png (an LSTM
run finished and tried out in the Try it panel, a vanilla RNN training, the gradient
heatmap filling), then the Dynamics panel, given the bottom of the window beside the
loss, on the two pairs side by side: docs/screenshot-dynamics-adding-TAB.png (that
LSTM and RNN; TAB: jacobian, spectrum, gates, lyapunov) and
docs/screenshot-dynamics-exploding-jacobian.png (exploding_relu_noclip and
exploding_relu_clip), and a classifier's trajectory in 3-D coloured by class
(docs/screenshot-dynamics-brackets-trajectory.png); all at 1280x800. Uses a temporary
settings file and data folder, so it never touches the user's own.
``--dynamics-only``: skip the idle and training shots (and the Try it step; the LSTM
trains 1500 steps, not 2500), for a quicker run: how the Dynamics shots were taken.

    ... docs/screenshots.py sweep

writes docs/screenshot-sweep.png instead: the Sweep dialog after a small real study (8
trials of a small adding LSTM, about a minute), its table, parallel coordinates and
importances.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QSettings

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

from workbench.gui.app import create_app  # noqa: E402


def pump(app, seconds: float, until=None) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return
        time.sleep(0.005)


def shot(app, window, name: str) -> None:
    pump(app, 0.5)
    screen = app.primaryScreen()
    pixmap = screen.grabWindow(0, 0, 0, 1280, 800) if screen is not None else window.grab()
    if pixmap.isNull():
        pixmap = window.grab()
    pixmap.save(str(DOCS / name))
    print("wrote", DOCS / name)


TABS = ("jacobian", "spectrum", "gates", "lyapunov", "trajectory")


def dynamics_shots(app, window, pair: str, tabs=TABS) -> None:
    """Tabs of the Dynamics panel, the panel given the bottom of the window beside the
    loss (the gradient-norm panel closed, the bottom row taller)."""
    from PySide6.QtCore import Qt

    window.norm_dock.hide()
    window.dynamics_dock.raise_()
    window.resizeDocks([window.loss_dock, window.dynamics_dock], [400, 880], Qt.Orientation.Horizontal)
    window.resizeDocks([window.loss_dock], [500], Qt.Orientation.Vertical)
    panel = window.dynamics_panel
    for name in tabs:
        panel.tabs.setCurrentIndex(TABS.index(name))
        window._plots_changed()
        shot(app, window, f"screenshot-dynamics-{pair}-{name}.png")


def main() -> int:
    dynamics_only = "--dynamics-only" in sys.argv
    app = create_app()
    from workbench.gui.main_window import MainWindow, icon

    app.setWindowIcon(icon("app"))
    tmp = Path(tempfile.mkdtemp(prefix="workbench-shots-"))
    settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, data_dir=tmp / "data")
    window.dialog_answers = {"keep_run": "discard", "save_changes": "discard"}
    window.setGeometry(0, 0, 1280, 800)
    window.show()
    pump(app, 20, until=lambda: window.resolver.task_info("adding") is not None and window.resolver.devices)
    pump(app, 1)
    if not dynamics_only:
        shot(app, window, "screenshot-idle.png")

    # An LSTM first (kept for comparison), then the vanilla RNN, caught mid-run.
    window.welcome.hide()
    window.open_builtin("adding_lstm", quiet=True)
    window.doc.set("train.steps", 1500 if dynamics_only else 2500)
    window.start_training()
    pump(app, 900, until=lambda: not window.training_active)
    tryout = window.tryout
    if not dynamics_only:
        # The finished LSTM in Try it: a sum asked of it, and the look inside.
        pump(app, 120, until=lambda: tryout.mode == "adding")
        seen: list[str] = []
        tryout.result_shown.connect(seen.append)
        tryout.view.input.setText("0.3 0.9* 0.1 0.4 0.7 0.2* 0.5 0.8 0.6 0.1 0.3 0.2")
        tryout.view.run()
        pump(app, 120, until=lambda: "numbers" in seen and "inside" in seen)
        window.tryout_dock.raise_()
    window.open_builtin("adding_rnn_tanh", quiet=True)
    window.doc.set("train.steps", 1500)
    window.start_training()
    run = window.current_run
    pump(app, 600, until=lambda: run.last_step >= 700)
    if not dynamics_only:
        shot(app, window, "screenshot-training.png")
    # the same moment in the Dynamics panel: why the RNN's gradient vanishes and the LSTM's not
    dynamics_shots(app, window, "adding", ("jacobian", "spectrum", "gates", "lyapunov"))
    window.stop_training()
    pump(app, 60, until=lambda: not window.training_active)

    # The exploding pair from the same initial weights: without clipping the first
    # updates overflow (the run stops on the non-finite loss), with it the run trains.
    for data in window.runs_model.plotted:
        data.visible = False
    window.open_builtin("exploding_relu_noclip", quiet=True)
    window.start_training()
    pump(app, 300, until=lambda: not window.training_active)
    window.open_builtin("exploding_relu_clip", quiet=True)
    window.doc.set("train.steps", 600)
    window.start_training()
    pump(app, 600, until=lambda: not window.training_active)
    window.loss_panel.log_box.setChecked(True)  # the unclipped run's loss reaches 1e8
    dynamics_shots(app, window, "exploding", ("jacobian",))

    # A classification task with padded rows (bracket strings of 2 to 20): the trajectory
    # of 16 strings in 3-D, coloured by class (well nested or not), padding left out.
    for data in window.runs_model.plotted:
        data.visible = False
    window.loss_panel.log_box.setChecked(False)
    window.open_builtin("brackets_gru", quiet=True)
    window.doc.set("train.steps", 600)
    window.start_training()
    pump(app, 600, until=lambda: not window.training_active)
    panel = window.dynamics_panel
    panel.traj_view.setCurrentIndex(panel.traj_view.findData("3d"))
    panel.traj_colour.setCurrentIndex(panel.traj_colour.findData("class"))
    dynamics_shots(app, window, "brackets", ("trajectory",))
    tryout.shutdown()
    window.close()
    pump(app, 2)
    return 0


def sweep_main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="workbench-shots-"))
    os.environ["WORKBENCH_HOME"] = str(tmp / "home")  # the trials' history rows and study: not the user's
    app = create_app()
    from workbench.gui.main_window import MainWindow

    settings = QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, data_dir=tmp / "data")
    window.dialog_answers = {"keep_run": "discard", "save_changes": "discard"}
    window.setGeometry(0, 0, 1280, 800)
    window.show()
    window.welcome.hide()
    window.open_builtin("adding_lstm", quiet=True)
    for field, value in {"model.layers.0.hidden_size": 16, "data.options.seq_len": 20, "train.steps": 150,
                         "train.eval_every": 25, "train.probe_every": 0, "train.checkpoint_every": 0}.items():
        window.doc.set(field, value)
    pump(app, 2)
    dialog = window.open_sweep()
    dialog.params.setPlainText("train.lr=log:1e-3..3e-2\nmodel.layers.0.cell=lstm,gru\n"
                               "model.layers.0.hidden_size=int:8..32")
    dialog.trials.setValue(8)
    dialog.setGeometry(0, 0, 1280, 800)
    ended: list[str] = []
    dialog.finished_sweep.connect(ended.append)
    dialog.start()
    pump(app, 900, until=lambda: bool(ended))
    pump(app, 120, until=lambda: dialog.importance_shown_for == 8)
    shot(app, dialog, "screenshot-sweep.png")
    window.close()
    pump(app, 2)
    return 0


if __name__ == "__main__":
    sys.exit(sweep_main() if "sweep" in sys.argv[1:] else main())
