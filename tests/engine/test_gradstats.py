"""The decay summary: the numbers it prints, and the vanishing-gradient contrast it is for."""
from __future__ import annotations

import math

import numpy as np
import pytest

from workbench import presets
from workbench.engine import gradstats
from workbench.engine.trainer import Trainer
from workbench.spec import with_overrides


def test_fit_recovers_a_known_exponential_decay():
    t = np.arange(1, 101)
    profile = 3.0 * 2.0 ** ((t - 100) / 7.0)  # halves every 7 steps going back from T
    d = gradstats.fit_decay(profile)
    assert d.ratio_first_last == pytest.approx(2.0 ** (-99 / 7.0))
    assert d.factor_per_step == pytest.approx(2.0 ** (-1 / 7.0))
    assert d.describe() == "halves every 7 steps back in time"
    grow = gradstats.fit_decay(profile[::-1].copy())
    assert grow.describe() == "doubles every 7 steps back in time"
    assert grow.ratio_first_last == pytest.approx(2.0 ** (99 / 7.0))
    assert gradstats.fit_decay(np.ones(10)).describe() == "flat through time"


def test_fit_ignores_underflowed_zeros_and_says_so():
    profile = np.concatenate([np.zeros(20), 0.5 ** np.arange(30, 0, -1)])
    d = gradstats.fit_decay(profile)
    assert d.ratio_first_last == 0
    assert d.factor_per_step == pytest.approx(0.5)
    line = gradstats.summary_lines({"layers.0": profile})[0]
    assert line.startswith("layers.0: ||dL/dh_1|| / ||dL/dh_T|| = 0 (") and "halves every 1 steps" in line
    assert "no gradient" in gradstats.fit_decay(np.zeros(5)).describe() or \
        not math.isfinite(gradstats.fit_decay(np.zeros(5)).factor_per_step)


def _first_probe(name: str, steps: int = 1) -> np.ndarray:
    p = with_overrides(presets.resolve(name), [f"train.steps={steps}", "train.device=cpu", "train.eval_every=0",
                                               "train.checkpoint_every=0", "train.eval_batches=1",
                                               "train.num_threads=1", "train.batch_size=16"])
    records = list(Trainer(p).run())
    probe = next(r for r in records if r["kind"] == "probe")
    return probe["hidden_grad_norms"]["layers.0"]


def test_tanh_rnn_gradient_vanishes_orders_of_magnitude_faster_than_lstm_on_adding_t100():
    rnn, lstm = _first_probe("adding_rnn_tanh"), _first_probe("adding_lstm")
    assert rnn.shape == lstm.shape == (100,)
    r_rnn, r_lstm = gradstats.fit_decay(rnn), gradstats.fit_decay(lstm)
    assert r_lstm.ratio_first_last > 0
    assert r_rnn.ratio_first_last < 1e-6 * r_lstm.ratio_first_last
    assert r_rnn.factor_per_step < r_lstm.factor_per_step < 1
    # and half-way back the LSTM still carries a usable signal
    assert lstm[50] / lstm[-1] > 1e3 * rnn[50] / rnn[-1]
