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
    image = panel.heat_img.image
    assert image.shape == (3, 12) and np.isfinite(image).all()
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
    eig = [k for k in keys if k[0] == "eigen"]
    assert len(eig) == 4 and all(k[1] == id(lstm) for k in eig)
    x, _y = panel._items[eig[0]].getData()
    assert len(x) == 8  # every eigenvalue of an 8x8 block
    _x, y = panel._items[("spectrum", id(lstm), "radius", "forget")].getData()
    np.testing.assert_allclose(y[-1], lstm.dynamics.latest.spectra["layers.0"]["forget"]["radius"])
    assert "spectral radius" in panel.readout.text()
    paths = [k for k in keys if k[0] == "traj" and k[3] == "line"]
    assert len(paths) == 4 and all(k[1] == id(lstm) for k in paths)  # the first 4 rows of the chosen run
    x, y = panel._items[paths[0]].getData()
    assert len(x) == 12 and np.isfinite(y).all()
    assert "PC1" in panel.traj_item.getAxis("bottom").labelText
    # the same buffers: nothing to redraw; the other run chosen: the heatmap follows it
    assert not panel.refresh([lstm, rnn], lstm)
    panel.run_box.setCurrentIndex(1)
    assert panel.chosen_run() is rnn and all(k[1] == id(rnn) for k in panel._items if k[0] == "eigen")
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
    assert panel.heat_img.image.shape[0] == 1
    run.add([lstm.dynamics.latest])
    assert panel.refresh([run], run) and panel.heat_img.image.shape[0] == 2


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
