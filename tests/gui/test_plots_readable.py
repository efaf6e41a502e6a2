"""Plots a user can read (issue 15): losses of different tasks on their own axes (or
normalised), the gradient heatmap over the whole run, no axes on empty plots."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from workbench.gui.rundata import HeatmapRing, RunData  # noqa: E402

pytestmark = pytest.mark.gui


def _run(name: str, task: str, losses, colour="#1f77b4") -> RunData:
    run = RunData(name, colour=colour, task=task)
    run.add([{"kind": "step", "step": i + 1, "loss": float(v), "lr": 1e-3, "grad_norm": 1.0}
             for i, v in enumerate(losses)])
    return run


@pytest.fixture
def loss_panel(qtbot):
    from workbench.gui.plots import LossPanel

    panel = LossPanel()
    qtbot.addWidget(panel)
    panel.resize(500, 400)
    panel.show()
    return panel


def test_losses_of_different_tasks_get_their_own_axes(loss_panel):
    panel = loss_panel
    charlm = _run("charlm", "charlm", np.linspace(4.2, 3.8, 60), "#ff7f0e")
    adding = _run("adding", "adding", np.linspace(0.2, 0.15, 60))
    adding2 = _run("adding 2", "adding", np.linspace(0.18, 0.1, 60), "#2ca02c")
    runs = [charlm, adding, adding2]
    assert panel.axes_mode == "task"  # the default
    panel.refresh(runs, adding)
    items = panel.plot_items()
    assert len(items) == 2  # one axis per task
    on = {name: panel._items[id(r)]["plot"] for name, r in (("c", charlm), ("a", adding), ("a2", adding2))}
    assert on["c"] is not on["a"] and on["a"] is on["a2"]
    # each axis spans its own task's losses: the adding MSE is not flattened by a loss near 4
    _x, y = panel._items[id(adding)]["smooth"].getData()
    assert float(np.nanmax(y)) < 1.0
    lo, hi = on["a"].getViewBox().viewRange()[1]
    assert hi < 1.0, f"the adding axis spans {lo}..{hi}"
    # normalised: every loss over its first value, on one axis
    panel.axes_box.setCurrentIndex(panel.axes_box.findData("normalised"))
    assert len(panel.plot_items()) == 1
    for r in runs:
        _x, y = panel._items[id(r)]["raw"].getData()
        assert y[0] == pytest.approx(1.0) and float(np.nanmax(y)) <= 1.0 + 1e-9
    assert "first loss" in panel.item.getAxis("left").labelText
    # one shared axis, as before
    panel.axes_box.setCurrentIndex(panel.axes_box.findData("shared"))
    assert len(panel.plot_items()) == 1
    _x, y = panel._items[id(charlm)]["raw"].getData()
    assert y[0] == pytest.approx(4.2)


def test_empty_plots_have_no_axes(loss_panel, qtbot):
    from workbench.gui.plots import GradientPanel, NormPanel

    loss_panel.refresh([], None)
    assert not loss_panel.item.getAxis("left").isVisible() and not loss_panel.item.getAxis("bottom").isVisible()
    norm = NormPanel()
    grad = GradientPanel()
    for w in (norm, grad):
        qtbot.addWidget(w)
        w.show()
        w.refresh([], None)
    assert not norm.norm_item.getAxis("left").isVisible() and not norm.lr_item.getAxis("bottom").isVisible()
    assert not grad.profile_item.getAxis("left").isVisible()
    run = _run("r", "adding", np.linspace(1, 0.5, 10))
    loss_panel.refresh([run], run)
    norm.refresh([run], run)
    assert loss_panel.item.getAxis("left").isVisible() and norm.norm_item.getAxis("left").isVisible()


def test_the_gradient_heatmap_shows_the_whole_run_downsampled(qtbot):
    from workbench.gui.plots import GradientPanel

    ring = HeatmapRing(rows=50)
    T = 20
    for step in range(1, 1001):
        # the gradient path opens at step 100: early timesteps go from 1e-8 to 1e-1
        early = -8.0 if step < 100 else -1.0
        ring.append(step, 10.0 ** np.r_[np.full(5, early), np.zeros(T - 5)])
    recent, recent_steps = ring.image()
    assert recent.shape == (50, T) and recent_steps[0] == 951  # the newest 50 only
    whole, steps = ring.image(whole=True)
    assert whole.shape[1] == T and 25 <= whole.shape[0] <= 50
    assert steps[0] == 1 and steps[-1] > 900
    assert whole[0, 0] == pytest.approx(-8.0) and whole[-1, 0] == pytest.approx(-1.0)
    # the panel's "whole run" switch draws it
    run = RunData("r", task="adding")
    run.add([{"kind": "step", "step": s, "loss": 1.0, "lr": 1e-3, "grad_norm": 1.0,
              "timestep_grad_norms": {"layers.0": list(10.0 ** np.full(T, -8.0 if s < 100 else -1.0))}}
             for s in range(1, 1001)])
    panel = GradientPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.refresh([run], run)
    _plot, img = panel._heat_plots["layers.0"]
    assert img.image.shape[0] < 1000 and float(np.nanmin(img.image[:, 0])) > -5  # the last steps only
    panel.whole_box.setChecked(True)
    _plot, img = panel._heat_plots["layers.0"]
    assert float(np.nanmin(img.image[:, 0])) == pytest.approx(-8.0)  # the first steps are in view again
    assert panel._bar is not None and "log10" in panel._bar.getAxis("left").labelText
