"""The forecasting task: chronological split, training-only statistics, windows, baselines
computed by hand, metrics in the file's units, artifacts for inference without data, and
learning on the real temperature file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from workbench import presets
from workbench.engine.model import build_model
from workbench.engine.trainer import Trainer
from workbench.io.errors import DataError
from workbench.spec import SpecError, with_overrides
from workbench.tasks import make_task


def _preset(name: str, *overrides: str):
    base = ["train.device=cpu", "train.probe_every=0", "train.checkpoint_every=0", "train.eval_every=0"]
    return with_overrides(presets.load_builtin(name), base + list(overrides))


def _csv(tmp_path, values, name="s.csv"):
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(values))
    path = tmp_path / name
    path.write_text("t,v\n" + rows)
    return path


def _task(tmp_path, values, *overrides, topology="many_to_one"):
    path = _csv(tmp_path, values)
    return make_task(_preset("forecast_airline_gru", f"data.path={path}", f"model.topology={topology}",
                             "data.options.relative=false", *overrides))


def _vals(batches, key="y"):
    return torch.cat([getattr(b, key) for b in batches])


def test_split_is_chronological_and_statistics_come_from_the_training_part(tmp_path):
    values = np.arange(100, dtype=float) ** 1.5
    task = _task(tmp_path, values, "data.options.window=5", "data.options.horizon=2", "data.options.season=4")
    assert task.n_train == 80
    assert task.mean[0] == pytest.approx(values[:80].mean()) and task.std[0] == pytest.approx(values[:80].std())
    # training windows: inputs and targets inside rows 0..79; held-out forecasts start at 80..98
    assert task.train_origins.tolist() == list(range(5, 79))
    assert task.val_origins.tolist() == list(range(80, 99))
    gen = torch.Generator().manual_seed(0)
    train = list(task.train_batches(8, gen))
    assert sum(b.size for b in train) == 74 and task.epoch_size(8) == len(train)
    x, y = _vals(train, "x"), _vals(train)
    assert x.shape == (74, 5, 1) and y.shape == (74, 2)
    # the series rises, so nothing from row 80 on is in training when nothing exceeds row 79
    assert float(torch.cat([x.flatten(), y.flatten()]).max()) == pytest.approx((values[79] - task.mean[0]) / task.std[0])
    # validation covers every held-out window even when max_batches is small
    val = list(task.val_batches(4, 2))
    assert sum(b.size for b in val) == 19
    # changing the held-out values leaves the statistics alone
    changed = values.copy()
    changed[80:] *= 10
    other = _task(tmp_path, changed, "data.options.window=5", "data.options.horizon=2", "data.options.season=4")
    assert other.mean[0] == task.mean[0] and other.std[0] == task.std[0]


def test_baselines_match_a_hand_computation(tmp_path):
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(10, 3, 60), 2)
    task = _task(tmp_path, values, "data.options.window=6", "data.options.horizon=3", "data.options.season=5")
    n_train = 48
    snaive_err, last_err = [], []
    for o in range(n_train, 60 - 3 + 1):
        for j in range(3):  # lead j+1 <= season: the value one season before the target
            snaive_err.append(values[o + j - 5] - values[o + j])
            last_err.append(values[o - 1] - values[o + j])
    scale = np.abs(values[5:n_train] - values[: n_train - 5]).mean()
    base = task.baseline()
    assert base["seasonal_naive_mae"] == pytest.approx(np.abs(snaive_err).mean())
    assert base["last_value_mae"] == pytest.approx(np.abs(last_err).mean())
    assert base["seasonal_naive_mse"] == pytest.approx(np.square(snaive_err).mean())
    assert base["seasonal_naive_mase"] == pytest.approx(np.abs(snaive_err).mean() / scale)
    assert base["mae"] == min(base["seasonal_naive_mae"], base["last_value_mae"])


def _metrics(task, output_fn):
    sums = {}
    for batch in task.val_batches(16, 100):
        for k, (s, c) in task.metric_sums(output_fn(batch), batch).items():
            acc = sums.setdefault(k, [0.0, 0.0])
            acc[0] += s
            acc[1] += c
    return {k: s / c for k, (s, c) in sums.items()}


def test_metrics_are_in_file_units(tmp_path):
    values = 100 + 20 * np.sin(np.arange(120) / 3)
    task = _task(tmp_path, values, "data.options.window=8", "data.options.horizon=2", "data.options.season=12")
    perfect = _metrics(task, lambda b: b.y)
    assert perfect["mae"] == pytest.approx(0) and perfect["mase"] == pytest.approx(0)
    off = _metrics(task, lambda b: b.y + 1.0 / task.std[0])  # one unit too high in file units
    assert off["mae"] == pytest.approx(1.0) and off["mse"] == pytest.approx(1.0)
    assert off["mase"] == pytest.approx(1.0 / task.mase_scale[0])


@pytest.mark.parametrize("topology,relative", [("many_to_one", False), ("many_to_one", True),
                                               ("many_to_many", False), ("many_to_many", True)])
def test_helpers_agree_with_the_trainers_metrics(tmp_path, topology, relative):
    values = 50 + np.cumsum(np.random.default_rng(1).normal(0.5, 2, 150))  # a trending random walk
    task = _task(tmp_path, values, "data.options.window=10", "data.options.horizon=2", "data.options.season=7",
                 f"data.options.relative={'true' if relative else 'false'}", topology=topology)
    model = build_model(_preset("forecast_airline_gru", f"model.topology={topology}").model, task.model_io()).eval()
    with torch.no_grad():
        metrics = _metrics(task, lambda b: model(b.x))
    res = task.validation_forecasts(model)
    assert res["predicted"].shape == res["actual"].shape == (len(task.val_origins), 2, 1)
    assert metrics["mae"] == pytest.approx(np.abs(res["predicted"] - res["actual"]).mean(), rel=1e-5)
    o = int(task.val_origins[3])
    np.testing.assert_allclose(task.forecast(model, values[:o]), res["predicted"][3], rtol=1e-5)
    np.testing.assert_allclose(res["actual"][3, :, 0], values[o:o + 2])
    if topology == "many_to_many":
        batch = next(task.val_batches(4, 100))
        assert batch.x.shape == (4, 10, 1) and batch.y.shape == (4, 10, 2)


def test_relative_windows_hold_changes_not_levels(tmp_path):
    values = np.arange(200, dtype=float) * 3 + 1000  # a pure trend: every change is +3
    task = _task(tmp_path, values, "data.options.window=4", "data.options.season=1", "data.options.horizon=1",
                 "data.options.relative=true")
    assert task.std[0] == 1.0  # the changes do not vary (std 0 is replaced by 1)
    held_out = next(task.val_batches(8, 1))
    training = next(task.train_batches(8, torch.Generator().manual_seed(0)))
    # the held-out levels (1480 and up) were never seen in training, yet every window is the same
    for batch in (held_out, training):
        assert torch.equal(batch.x[:, :, 0], torch.tensor([[-9.0, -6.0, -3.0, 0.0]]).expand(batch.size, 4))
        assert torch.equal(batch.y, torch.full((batch.size, 1), 3.0))


def test_artifacts_restore_for_inference_without_the_data(tmp_path):
    values = 20 + 5 * np.sin(np.arange(300) / 7) + np.random.default_rng(2).normal(0, 0.3, 300)
    path = _csv(tmp_path, values)
    preset = _preset("forecast_airline_gru", f"data.path={path}", "data.options.window=12", "data.options.horizon=3",
                     "data.options.season=44")
    task = make_task(preset)
    model = build_model(preset.model, task.model_io()).eval()
    saved = json.loads(json.dumps(task.artifacts()))
    path.unlink()  # the data is gone
    restored = make_task(preset, artifacts=saved)
    assert restored.model_io() == task.model_io()
    np.testing.assert_allclose(restored.forecast(model, values[:200]), task.forecast(model, values[:200]))
    np.testing.assert_allclose(restored.forecast_next(model), task.forecast(model, values))
    assert restored.baseline() == task.baseline()
    assert restored.forecast(model, values[-50:, None]).shape == (3, 1)


def test_bad_options_and_models_name_the_field(tmp_path):
    path = _csv(tmp_path, np.arange(50.0))
    small = ("data.options.window=5", "data.options.horizon=1")
    cases = [
        (("data.options.window=0",), "data.options.window"),
        (("data.options.gaps=skip",), "data.options.gaps"),
        (("data.options.val_fraction=0",), "data.options.val_fraction"),
        (("data.options.season=45",), "data.options.season"),  # longer than the 40 training rows
        (("model.input.kind=embedding",), "model.input.kind"),
        (("model.head.kind=classification",), "model.head.kind"),
        (("model.topology=many_to_many", "model.layers.0.bidirectional=true"), "model.layers.0.bidirectional"),
        (("model.topology=encoder_decoder", "model.decoder_layers=[{\"cell\": \"gru\"}]"), "model.topology"),
    ]
    for overrides, field in cases:
        with pytest.raises(SpecError) as info:
            make_task(_preset("forecast_airline_gru", f"data.path={path}", *small, *overrides))
        assert info.value.field == field, (overrides, info.value)
    with pytest.raises(DataError) as info:
        make_task(_preset("forecast_airline_gru", f"data.path={path}", *small, "data.options.window=40"))
    assert str(path) in str(info.value) and "window" in str(info.value)
    # a bidirectional many-to-one forecaster reads only the past window: allowed
    make_task(_preset("forecast_airline_gru", f"data.path={path}", *small, "model.layers.0.bidirectional=true"))


def test_builtin_series_is_deterministic_and_learnable():
    a = make_task(_preset("forecast_sine_gru", "data.options.length=300"))
    b = make_task(_preset("forecast_sine_gru", "data.options.length=300"))
    c = make_task(_preset("forecast_sine_gru", "data.options.length=300", "train.seed=1"))
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)
    assert a.columns == ["value"] and a.baseline()["seasonal_naive_mae"] > 0


def test_lstm_beats_both_baselines_on_the_temperature_file(shared_data):
    # The benchmark trains the preset fully (bench/quality.py --only timeseries); a small
    # budget already shows the model has learned more than the trivial forecasts.
    preset = _preset("forecast_temperature_lstm", "train.steps=250", "model.layers.0.hidden_size=32",
                     "train.eval_batches=1")
    task = make_task(preset)
    assert len(task.values) == 3650 and task.n_train == 2920 and len(task.val_origins) == 730
    trainer = Trainer(preset, task=task)
    end = list(trainer.run())[-1]
    assert end["status"] == "finished"
    base = task.baseline()
    assert base["seasonal_naive_mae"] == pytest.approx(2.965, abs=0.01)
    assert base["last_value_mae"] == pytest.approx(1.953, abs=0.01)
    assert end["metrics"]["mae"] < base["last_value_mae"] < base["seasonal_naive_mae"], (end["metrics"], base)


def test_cli_trains_a_forecaster_and_reports_a_bad_csv_in_one_line(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02",?0.2\n')
    args = ["train", "forecast_airline_gru", "--quiet", "--set", "train.probe_every=0"]
    assert main(args + ["--run-dir", str(tmp_path / "bad_run"), "--set", f"data.path={bad}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "line 3" in lines[0] and "'Temp'" in lines[0]
    monkeypatch.chdir(tmp_path)  # the preset's builtin: data file is found from any folder
    assert main(args + ["--steps", "5", "--run-dir", str(tmp_path / "run")]) == 0
    assert "seasonal_naive_mae" in capsys.readouterr().out
    saved = json.loads((tmp_path / "run" / "task.json").read_text())
    assert saved["columns"] == ["Passengers"] and saved["season"] == 12
