"""Long learning runs (pytest -m slow): the presets do what their descriptions say.

- adding_lstm learns the adding problem at T=100 to a validation MSE below 0.01 on the
  CPU within its step budget, while adding_rnn_tanh, with the same budget, stays near
  the trivial baseline (1/6 ~ 0.167); the final probes show why.
- exploding_relu_noclip diverges (the gradient grows going back in time, a step's loss
  becomes non-finite and the run stops with the last good weights), while
  exploding_relu_clip, identical but for clipping, trains.
"""
from __future__ import annotations

import math
import time

import pytest

from workbench import presets
from workbench.engine import gradstats
from workbench.engine.trainer import Trainer
from workbench.spec import with_overrides

pytestmark = pytest.mark.slow


def run(name: str, *overrides: str):
    p = with_overrides(presets.resolve(name), ["train.device=cpu", "train.num_threads=1", "train.checkpoint_every=0",
                                               *overrides])
    t0 = time.perf_counter()
    records = list(Trainer(p).run())
    return p, records, time.perf_counter() - t0


def of(records, kind):
    return [r for r in records if r["kind"] == kind]


def test_lstm_learns_adding_t100_where_a_tanh_rnn_stays_at_the_baseline():
    lstm_p, lstm, lstm_s = run("adding_lstm")
    rnn_p, rnn, rnn_s = run("adding_rnn_tanh")
    assert lstm_p.data.options["seq_len"] == rnn_p.data.options["seq_len"] == 100
    for key in ("steps", "batch_size", "lr", "optimizer", "clip", "clip_value"):
        assert getattr(lstm_p.train, key) == getattr(rnn_p.train, key), key  # the same budget
    lstm_mse, rnn_mse = lstm[-1]["metrics"]["mse"], rnn[-1]["metrics"]["mse"]
    print(f"\nadding T=100, {lstm_p.train.steps} steps: LSTM val MSE {lstm_mse:.4g} ({lstm_s:.0f} s), "
          f"tanh RNN val MSE {rnn_mse:.4g} ({rnn_s:.0f} s), baseline {1 / 6:.4g}")
    assert lstm[-1]["status"] == rnn[-1]["status"] == "finished"
    assert lstm_mse < 0.01
    assert 0.12 < rnn_mse < 0.25
    # the last exact probes: the LSTM's gradient reaches the first steps, the RNN's does not
    d_lstm = gradstats.fit_decay(of(lstm, "probe")[-1]["hidden_grad_norms"]["layers.0"])
    d_rnn = gradstats.fit_decay(of(rnn, "probe")[-1]["hidden_grad_norms"]["layers.0"])
    print(f"ratio ||dL/dh_1||/||dL/dh_T||: LSTM {d_lstm.ratio_first_last:.3g}, RNN {d_rnn.ratio_first_last:.3g}")
    assert d_rnn.ratio_first_last < 1e-6 * d_lstm.ratio_first_last


def test_exploding_pair_noclip_diverges_and_clip_trains():
    noclip_p, noclip, _ = run("exploding_relu_noclip", "train.steps=300")
    clip_p, clip, _ = run("exploding_relu_clip", "train.steps=300")
    assert noclip_p.train.clip == "none" and clip_p.train.clip == "norm"
    first = of(noclip, "probe")[0]["hidden_grad_norms"]["layers.0"]
    growth = gradstats.fit_decay(first)
    assert growth.ratio_first_last > 10 and growth.factor_per_step > 1  # grows going back in time
    bad = of(noclip, "non_finite")
    assert bad and bad[0]["action"] == "stopped"
    assert noclip[-1]["status"] == "failed" and noclip[-1]["step"] < 20
    assert math.isfinite(noclip[-1]["metrics"]["mse"])  # the last good weights were kept
    steps = of(clip, "step")
    assert not of(clip, "non_finite") and clip[-1]["status"] == "finished"
    assert steps[0]["clipped"] and steps[0]["grad_norm"] > 100 * clip_p.train.clip_value
    assert clip[-1]["metrics"]["mse"] < 0.3 < steps[0]["loss"]
