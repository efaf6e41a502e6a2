"""The Dynamics panel fills from a short real run's records, overlaid across runs, and
redraws only when its buffers changed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.engine.helpers import preset
from workbench.engine.records import Dynamics
from workbench.engine.trainer import Trainer
from workbench.gui.rundata import RunData


def _records(cell: str) -> list:
    p = preset("adding_lstm", "train.steps=4", "train.probe_every=2", model_layers=[{"cell": cell, "hidden_size": 8}])
    return list(Trainer(p, probe_budget=None).run())


@pytest.fixture(scope="module")
def runs():
    lstm = RunData("lstm", colour="#1f77b4", task="adding")
    lstm.add(_records("lstm"))
    rnn = RunData("rnn", colour="#ff7f0e", task="adding")
    # the second run as it comes back from metrics.jsonl: JSON objects
    rnn.add([json.loads(r.to_json()) for r in _records("rnn_tanh")])
    return lstm, rnn


def test_the_panel_fills_from_a_short_runs_records(runs, qtbot):
    from workbench.gui.plots import DYNAMICS_TIPS, DynamicsPanel

    lstm, rnn = runs
    assert lstm.dynamics.count == 3 and rnn.dynamics.count == 3  # steps 0, 2, 4
    panel = DynamicsPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.refresh([lstm, rnn], lstm)
    assert panel.layer == "layers.0" and panel.chosen_run() is lstm
    for run in (lstm, rnn):  # side by side: a heatmap per run
        image = panel.heat_image(run).image
        assert image.shape == (3, 12) and np.isfinite(image).all()
    assert "lstm" in panel.run_legend.text() and lstm.colour in panel.run_legend.text()
    keys = set(panel._items)
    for run in (lstm, rnn):
        assert ("product", id(run), "bound") in keys and ("product", id(run), "grad") in keys
        assert {k[3] for k in keys if k[:2] == ("spectrum", id(run))} == (
            {"input", "forget", "cell", "output"} if run is lstm else {"W_hh"})
        assert sum(1 for k in keys if k[:2] == ("lyap", id(run))) == 3
        _x, y = panel._items[("lyap", id(run), 0)].getData()
        assert len(y) == 3 and np.isfinite(y).all()
    assert {k[3] for k in keys if k[:2] == ("gates", id(lstm))} == {"input", "forget", "cell", "output"}
    assert not any(k[:2] == ("gates", id(rnn)) for k in keys)  # no gates in a plain RNN
    eig = [k for k in keys if k[0] == "eigen" and k[1] == id(lstm)]
    assert len(eig) == 4 and [k for k in keys if k[0] == "eigen" and k[1] == id(rnn)] == [("eigen", id(rnn), "W_hh")]
    x, _y = panel._items[eig[0]].getData()
    assert len(x) == 8  # every eigenvalue of an 8x8 block
    _x, y = panel._items[("spectrum", id(lstm), "radius", "forget")].getData()
    np.testing.assert_allclose(y[-1], lstm.dynamics.latest.spectra["layers.0"]["forget"]["radius"])
    assert "spectral radius" in panel.readout.text() and "rnn</span> at step 4" in panel.readout.text()
    assert panel.key_text("spectrum") == "— input  - - forget  ··· cell  -·- output  — W_hh"
    assert panel.key_text("gates") == "● input  ■ forget  ▼ cell  ◆ output"
    assert "◆ output" in panel.eigen_item.titleLabel.text and "■ forget" in panel.gates_item.titleLabel.text
    paths = [k for k in keys if k[0] == "traj" and k[3] == "line"]
    assert len(paths) == 4 and all(k[1] == id(lstm) for k in paths)  # every row (4) of the chosen run
    x, y = panel._items[paths[0]].getData()
    assert len(x) == 12 and np.isfinite(y).all()
    assert "PC1" in panel.traj_item.getAxis("bottom").labelText
    # the same buffers: nothing to redraw; the other run chosen: the trajectory follows it
    assert not panel.refresh([lstm, rnn], lstm)
    panel.run_box.setCurrentIndex(1)
    assert panel.chosen_run() is rnn and all(k[1] == id(rnn) for k in panel._items if k[0] == "traj")
    assert "rnn,spectral_radius,layers.0,W_hh,4," in panel.csv([lstm, rnn], lstm)
    for tip in DYNAMICS_TIPS.values():
        assert len(tip) > 80
    assert "Lanczos" in panel.heat.toolTip() and "QR" in panel.lyap.toolTip()


def test_a_new_record_redraws(runs, qtbot):
    from workbench.gui.plots import DynamicsPanel

    lstm, _ = runs
    run = RunData("copy", task="adding")
    run.add([r for r in _records("lstm") if isinstance(r, Dynamics)][:1])
    panel = DynamicsPanel()
    qtbot.addWidget(panel)
    panel.refresh([run], run)
    assert panel.heat_image(run).image.shape[0] == 1
    run.add([lstm.dynamics.latest])
    assert panel.refresh([run], run) and panel.heat_image(run).image.shape[0] == 2


def test_the_panel_saves_its_picture_and_data(runs, qtbot, tmp_path):
    from workbench.gui.plots import DynamicsPanel

    lstm, rnn = runs
    panel = DynamicsPanel()
    qtbot.addWidget(panel)
    panel.resize(800, 400)
    panel.show()
    panel.refresh([lstm, rnn], lstm)
    for tab in range(panel.tabs.count()):
        panel.tabs.setCurrentIndex(tab)
        assert panel.save_image(tmp_path / f"d{tab}.png").stat().st_size > 500
    assert "<svg" in panel.save_image(tmp_path / "d.svg").read_text()
    lines = panel.save_csv(tmp_path / "d.csv", [lstm, rnn], lstm).read_text().splitlines()
    assert lines[0] == "run,quantity,layer,key,step,value"
    assert any(line.startswith("lstm,gate_saturation,layers.0,forget,") for line in lines)


def test_the_trajectory_turns_in_3d_and_colours_by_class(qtbot):
    """3-D: each dot where project_3d puts its PC1..PC3 (checked against the rotation
    written out as matrices); by class: one colour per class, named in the legend."""
    from workbench.gui.plots import _CLASS_COLOURS, DynamicsPanel, project_3d

    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 3, 9))  # 6 rows, PC1..PC3 over 9 steps
    d = Dynamics(step=3, jacobian_norms={"layers.0": np.ones(9)}, lyapunov={"layers.0": np.array([-0.1])},
                 spectra={"layers.0": {"W_hh": {"radius": 0.9, "sigma_max": 1.0, "eigenvalues": [[0.9], [0.0]]}}},
                 trajectories={"layers.0": {"rows": rows.tolist(), "explained": [0.5, 0.3, 0.1],
                                            "labels": [0, 1, 0, 2, 1, 0]}})
    run = RunData("cls", colour="#444444", task="brackets")
    run.add([json.loads(d.to_json())])  # through the record's JSON, as the run folder gives it back
    rows = np.asarray(run.dynamics.latest.trajectories["layers.0"]["rows"])  # as stored (4 digits)
    panel = DynamicsPanel()
    qtbot.addWidget(panel)
    panel.refresh([run], run)
    dots = panel._items[("traj", id(run), "every row", "dots")]
    x, y = dots.getData()
    assert x.shape == (6 * 9,)  # every row's dots in one item, row by row
    np.testing.assert_allclose(np.stack([x, y])[:, 18:27], rows[2, :2], rtol=1e-6)  # 2-D: PC1, PC2
    brushes = dots.opts["symbolBrush"]  # by timestep: dark first, yellow last, the same in every row
    assert len(brushes) == 54 and brushes[0].color() == brushes[9].color() != brushes[8].color()
    assert len({b.color().name() for b in brushes}) == 9
    _x, y0 = panel._items[("traj", id(run), "every row", "start")].getData()
    np.testing.assert_allclose(y0, rows[:, 1, 0], rtol=1e-6)  # a ring on each row's first step
    assert panel.azimuth.isHidden()  # the angles only for the 3-D view
    panel.traj_item.setXRange(0.0, 0.2)  # zoomed in: the dots keep one brush each (nothing clipped)
    panel.traj_view.setCurrentIndex(1)
    assert not panel.azimuth.isHidden()
    panel.azimuth.setValue(40)
    panel.elevation.setValue(20)
    x, y = panel._items[("traj", id(run), "every row", "dots")].getData()
    x, y = x[18:27], y[18:27]  # row 2
    az, el = np.radians(40), np.radians(20)
    turn = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])  # about PC3
    tilt = np.array([[1, 0, 0], [0, np.sin(el), np.cos(el)]])  # the camera's two screen axes
    np.testing.assert_allclose(np.stack([x, y]), tilt @ turn @ rows[2], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(project_3d(np.eye(3), 0, 90), [[1, 0], [0, 1], [0, 0]], atol=1e-12)  # from above
    assert "azimuth 40" in panel.traj_item.getAxis("bottom").labelText
    assert len(panel._traj_extras) == 6  # three axes and their labels
    panel.traj_colour.setCurrentIndex(1)
    brushes = panel._items[("traj", id(run), "every row", "dots")].opts["symbolBrush"]
    assert {b.color().name() for b in brushes[27:36]} == {_CLASS_COLOURS[2]}  # row 3: class 2, the third seen
    assert brushes[0].color().name() == _CLASS_COLOURS[0]
    assert [label.text for _sample, label in panel.traj_legend.items] == ["class 0", "class 1", "class 2"]
    # a run without classes: the class colouring is offered but greyed, the dots by time
    plain = RunData("plain", task="adding")
    d.trajectories["layers.0"].pop("labels")
    plain.add([d])
    panel.refresh([plain], plain)
    assert not panel.traj_colour.model().item(1).isEnabled() and not panel.traj_legend.items
