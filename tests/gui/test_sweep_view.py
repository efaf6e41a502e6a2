"""What the Sweep dialog shows, without Qt or a study (workbench/gui/sweep_view.py): the
parallel-coordinates axes and lines, the importance bars, and the trials' runs read from
their growing folders into the runs model."""
from __future__ import annotations

import json
import math

import pytest

from workbench.gui.rundata import MetricsTail
from workbench.gui.runs_model import RunsModel
from workbench.gui.sweep_view import Axis, TrialRow, TrialRuns, importance_items, parallel
from workbench.sweep import Param

PARAMS = [Param("train.lr", "log", 1e-4, 1e-2), Param("model.layers.0.cell", "choice", choices=("lstm", "gru", "rnn")),
          Param("model.layers.0.hidden_size", "int", 8, 24)]


def row(n, value, lr, cell, hidden, state="complete"):
    return TrialRow(n, state, value, {"train.lr": lr, "model.layers.0.cell": cell, "model.layers.0.hidden_size": hidden})


def test_axes_place_log_ranges_by_decade_and_choices_evenly():
    rows = [row(0, 0.5, 1e-4, "lstm", 8), row(1, 0.3, 1e-3, "rnn", 16), row(2, 0.2, 1e-2, "gru", 24),
            row(3, None, 1e-3, "gru", 9, state="pruned"), row(4, None, 1e-3, "gru", 9, state="running")]
    view = parallel(PARAMS, "val_loss", "minimize", rows)
    assert [(a.name, a.scale) for a in view.axes] == [("train.lr", "log"), ("model.layers.0.cell", "category"),
                                                      ("model.layers.0.hidden_size", "linear"), ("val_loss", "linear")]
    assert [ln.number for ln in view.lines] == [0, 1, 2]  # complete trials only
    ys = {ln.number: ln.ys for ln in view.lines}
    assert ys[0] == pytest.approx((0.0, 0.0, 0.0, 1.0))
    assert ys[1] == pytest.approx((0.5, 1.0, 0.5, 1 / 3))
    assert ys[2] == pytest.approx((1.0, 0.5, 1.0, 0.0))
    shade = {ln.number: ln.shade for ln in view.lines}
    assert shade[2] == 1.0 and shade[0] == 0.0 and [ln.number for ln in view.lines if ln.best] == [2]
    assert view.axes[0].ticks() == [(0.0, "0.0001"), (pytest.approx(0.5), "0.001"), (pytest.approx(1.0), "0.01")]
    assert [label for _y, label in view.axes[1].ticks()] == ["lstm", "gru", "rnn"]
    assert [label for _y, label in view.axes[2].ticks()] == ["8", "16", "24"]


def test_a_metric_spanning_decades_gets_a_log_axis():
    rows = [row(0, 0.001, 1e-3, "lstm", 8), row(1, 0.01, 1e-3, "gru", 8), row(2, 0.1, 1e-3, "gru", 8)]
    metric = parallel(PARAMS, "val_loss", "minimize", rows)
    assert metric.axes[-1].scale == "log" and [ln.ys[-1] for ln in metric.lines] == pytest.approx([0, 0.5, 1])
    rows = [row(0, 0.5, 1e-3, "lstm", 8), row(1, 0.9, 1e-3, "gru", 8)]
    assert parallel(PARAMS, "val_loss", "minimize", rows).axes[-1].scale == "linear"


def test_maximising_flips_the_best_and_equal_values_still_make_an_axis():
    rows = [row(0, 0.9, 1e-3, "lstm", 8), row(1, 0.9, 1e-3, "gru", 8)]
    view = parallel(PARAMS, "accuracy", "maximize", rows)
    metric = view.axes[-1]
    assert metric.low < 0.9 < metric.high and all(math.isfinite(y) for ln in view.lines for y in ln.ys)
    assert [ln.number for ln in view.lines if ln.best] == [0]
    view = parallel(PARAMS, "accuracy", "maximize", [row(0, 0.8, 1e-3, "lstm", 8), row(1, 0.9, 1e-3, "gru", 8)])
    assert [ln.number for ln in view.lines if ln.best] == [1]
    assert parallel(PARAMS, "val_loss", "minimize", []).lines == []


def test_choices_compare_as_values_of_their_type():
    axis = Axis("x", "category", categories=(1, True, "1", None))
    assert [axis.position(v) for v in (1, True, "1", None)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert axis.position(2) is None
    assert Axis("one", "category", categories=("a",)).position("a") == 0.5
    assert Axis("lr", "log", 1e-4, 1e-2).position(0) is None


def test_importances_become_bars_largest_first_or_a_message():
    assert importance_items({"a": 0.2, "b": 0.8}, 60) == ([("b", 0.8), ("a", 0.2)], "b 0.80, a 0.20")
    assert importance_items({"a": 1.0}, 3)[1] == "a 1.00 (from 3 trials: rough until about 50)"
    bars, message = importance_items("need two finished trials or more")
    assert bars == [] and message == "No importances yet: need two finished trials or more"


def test_a_growing_metrics_file_is_read_a_whole_line_at_a_time(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read() == []  # not written yet
    path.write_text('{"kind": "step", "step": 1, "loss": 2.0}\n{"kind": "step", "st')
    assert [r.step for r in tail.read()] == [1]
    with open(path, "a") as f:
        f.write('ep": 2, "loss": 1.5}\n')
    assert [(r.step, r.loss) for r in tail.read()] == [(2, 1.5)]
    assert tail.read() == []


def test_trial_runs_join_the_runs_model_named_by_study_and_number(tmp_path):
    model = RunsModel()
    runs = TrialRuns(model, lambda: "#123456")
    folder = tmp_path / "trial-0000"
    waiting = [TrialRow(0, "running", None, {}, str(folder))]
    assert runs.update("study-a", waiting) == [] and model.entries == []  # no metrics file yet
    folder.mkdir()
    lines = [{"kind": "start", "step": 0, "total_steps": 2}, {"kind": "step", "step": 1, "loss": 2.0}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    added = runs.update("study-a", waiting)
    assert [e.name for e in added] == ["study-a #0"] and added[0].data in model.plotted
    assert added[0].status == "running" and list(added[0].data.loss.view()) == [2.0]
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "step", "step": 2, "loss": 1.0}) + "\n")
        f.write(json.dumps({"kind": "end", "step": 2, "status": "finished"}) + "\n")
    assert runs.update("study-a", [TrialRow(0, "complete", 1.0, {}, str(folder))]) == []
    entry = model.entries[0]
    assert list(entry.data.loss.view()) == [2.0, 1.0] and entry.status == "finished" and len(model.entries) == 1
