"""engine/dynamics.py against independent computations: the tanh RNN's one-step Jacobian
as the matrix diag(1 - h_t^2) W_hh with torch.linalg; W_hh's spectrum at the identity
(IRNN) and spectral-radius initialisations against the configured values; a linear
RNN's Lyapunov exponents against log|eigenvalues| of its matrix; an LSTM's gates and
Jacobian on hand-set weights against their closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.engine.helpers import DEVICE, preset, small_model
from workbench import cells
from workbench.cells import Cell
from workbench.engine.dynamics import DynamicsSettings, model_dynamics, trajectory_and_lyapunov
from workbench.engine.records import Dynamics, from_json
from workbench.engine.trainer import Trainer
from workbench.spec import LayerSpec, with_overrides

EXACT = DynamicsSettings(power_iterations=64, lyapunov_vectors=3, max_rows=0)


def _run(model, batch, settings=EXACT):
    return model_dynamics(model, lambda: model(batch.x, batch.y_in, batch.lengths, unrolled=True), settings)


def _tanh_model(hidden=8, bidirectional=False):
    stack = [LayerSpec(cell="rnn_tanh", hidden_size=hidden, bidirectional=bidirectional),
             LayerSpec(cell="rnn_tanh", hidden_size=hidden)]
    model, batch = small_model("many_to_one", stack)
    with torch.no_grad():  # larger recurrent weights: a spread of Jacobian norms over t
        for _n, _s, rnn in model.recurrent_layers():
            for name, p in rnn.named_parameters():
                if name.startswith("weight_hh"):
                    p.mul_(3.0)
    return model, batch


def _direct_tanh_norms(rnn, x: torch.Tensor, reverse: bool = False) -> np.ndarray:
    """mean_b ||diag(1 - h_t^2) W_hh||_2 over t, from the module's own forward (the kernel)."""
    sfx = "_reverse" if reverse else ""
    w = getattr(rnn, f"weight_hh_l0{sfx}").detach()  # [H, H]
    H = w.shape[0]
    out, _ = rnn(x)
    h = out[..., H:] if reverse else out[..., :H]  # [B, T, H]
    J = (1 - h.pow(2)).unsqueeze(-1) * w  # [B, T, H, H]: row i scaled by 1 - h_i^2
    return torch.linalg.matrix_norm(J, ord=2).mean(dim=0).detach().cpu().numpy()


def test_tanh_rnn_jacobian_norm_matches_the_matrix_norm():
    model, batch = _tanh_model(bidirectional=True)
    got = _run(model, batch)["jacobian_norms"]
    assert set(got) == {"layers.0", "layers.0.reverse", "layers.1"}
    layers = {name: rnn for name, _s, rnn in model.recurrent_layers()}
    x0 = model.encode_input(batch.x)
    x1, _ = layers["layers.0"](x0)
    np.testing.assert_allclose(got["layers.0"], _direct_tanh_norms(layers["layers.0"], x0), rtol=1e-6)
    np.testing.assert_allclose(got["layers.0.reverse"], _direct_tanh_norms(layers["layers.0"], x0, True), rtol=1e-6)
    np.testing.assert_allclose(got["layers.1"], _direct_tanh_norms(layers["layers.1"], x1), rtol=1e-6)
    assert np.ptp(got["layers.1"]) > 0.05  # the profile varies over t: a constant could not pass by luck


def test_default_power_iterations_are_close_to_the_exact_norm():
    """The trainer's default (10 Lanczos iterations) against the exact norm: a lower bound within 1%."""
    model, batch = _tanh_model(hidden=32)
    default = DynamicsSettings(max_rows=0)
    got = _run(model, batch, default)["jacobian_norms"]["layers.1"]
    x1, _ = dict((n, r) for n, _s, r in model.recurrent_layers())["layers.0"](model.encode_input(batch.x))
    exact = _direct_tanh_norms(dict((n, r) for n, _s, r in model.recurrent_layers())["layers.1"], x1)
    assert np.all(got <= exact * (1 + 1e-9)) and np.all(got >= 0.99 * exact)


@pytest.mark.parametrize("cell", ["rnn_tanh", "rnn_relu"])
def test_identity_init_has_spectral_radius_one(cell):
    p = preset("adding_lstm", "train.steps=1", "train.probe_every=1", "model.init.recurrent=identity",
               model_layers=[{"cell": cell, "hidden_size": 8}])
    trainer = Trainer(p, probe_budget=None)
    records = [r for r in trainer.run() if isinstance(r, Dynamics)]
    first = records[0].spectra["layers.0"]  # before the first update: the initialisation
    assert set(first) == {"W_hh"}
    assert first["W_hh"]["radius"] == pytest.approx(1.0, abs=1e-6)
    assert first["W_hh"]["sigma_max"] == pytest.approx(1.0, abs=1e-6)
    re, im = first["W_hh"]["eigenvalues"]
    assert len(re) == 8 and np.allclose(re, 1.0, atol=1e-6) and np.allclose(im, 0.0, atol=1e-6)


@pytest.mark.parametrize("cell,blocks", [("lstm", {"input", "forget", "cell", "output"}),
                                         ("gru", {"reset", "update", "new"}), ("rnn_tanh", {"W_hh"})])
def test_spectral_radius_init_sets_every_gate_block(cell, blocks):
    p = preset("adding_lstm", "train.steps=1", "train.probe_every=1", "model.init.spectral_radius=0.7",
               model_layers=[{"cell": cell, "hidden_size": 12}])
    trainer = Trainer(p, probe_budget=None)
    first = next(r for r in trainer.run() if isinstance(r, Dynamics)).spectra["layers.0"]
    assert set(first) == blocks
    for stats in first.values():
        assert stats["radius"] == pytest.approx(0.7, abs=1e-5)
        assert stats["sigma_max"] >= stats["radius"] - 1e-6  # ||W||_2 >= rho(W) always
        re, im = stats["eigenvalues"]
        assert max(math.hypot(a, b) for a, b in zip(re, im)) == pytest.approx(0.7, abs=1e-5)


# a linear recurrence: h_t = W_hh h_{t-1} + W_ih x_t (a step cell registered for the test)
def _linear_ops():
    from workbench.cells.generic import StepOps

    def step(p, x_t, state):
        (h,) = state
        h = h @ p["weight_hh"].t() + x_t @ p["weight_ih"].t()
        return h, (h,), {}
    return StepOps(step)


LINEAR = Cell(name="linear_dyn_test", label="linear", short="lin", colour="#000000",
              params=lambda n_in, H: {"weight_ih": (H, n_in), "weight_hh": (H, H)}, ops=_linear_ops)


def test_linear_rnn_lyapunov_exponents_are_log_eigenvalue_moduli():
    torch.manual_seed(0)
    H = 6
    lams = torch.tensor([0.95, -0.8, 0.6, 0.5, 0.3, 0.1], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(H, H, dtype=torch.float64))
    w = q @ torch.diag(lams) @ q.t()  # symmetric: exponents are exactly log|lambda| in the limit
    with cells.registered(LINEAR):
        model, batch = small_model("many_to_many", [LayerSpec(cell=LINEAR.name, hidden_size=H)])
        with torch.no_grad():
            model.encoder.rnns[0].weight_hh_l0.copy_(w.to(DEVICE))
        # the model's batch is 7 steps: too short for the limit, so a long input of the same layer
        f = cells.ops(LINEAR.name).transition(cells.ops(LINEAR.name).directions(model.encoder.rnns[0])[0])
        u = torch.randn(3, 1500, 4, dtype=torch.float64, device=DEVICE)
        start = (torch.randn(3, H, dtype=torch.float64, device=DEVICE),)
        _, lyap = trajectory_and_lyapunov(lambda ut, s: f(ut, s), u, start, k=3,
                                          generator=torch.Generator().manual_seed(1))
        expected = np.log(np.abs(lams.numpy()))[:3]
        np.testing.assert_allclose(lyap.mean(dim=0).cpu().numpy(), expected, atol=3e-3)
        # and through the model's route (7 steps): finite, ordered as the exponents are
        got = _run(model, batch)["lyapunov"]["layers.0"]
        assert got.shape == (3,) and np.all(np.isfinite(got)) and got[0] > got[2]
        # a linear map's Jacobian is W at every step: its norm is W's largest |lambda|
        np.testing.assert_allclose(_run(model, batch)["jacobian_norms"]["layers.0"], 0.95, rtol=1e-6)


def test_lstm_gates_and_jacobian_on_hand_set_weights():
    """W_hh = W_ih = 0: i = sigmoid(b_i), f = sigmoid(b_f), g = tanh(b_g), o = sigmoid(b_o)
    at every step. With b_g = 0 the cell state stays 0, so per unit the Jacobian of
    (h, c) is [[0, o f], [0, f]], of norm f sqrt(1 + o^2)."""
    H = 8
    model, batch = small_model("many_to_one", [LayerSpec(cell="lstm", hidden_size=H)])
    rnn = model.encoder.rnns[0]
    b_o = torch.tensor([10.0] * 4 + [0.0] * 4, dtype=torch.float64)
    b_f = torch.linspace(-2.0, 1.0, H, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()
        rnn.weight_ih_l0.zero_()
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0.copy_(torch.cat([torch.full((H,), 10.0, dtype=torch.float64), b_f,
                                        torch.zeros(H, dtype=torch.float64), b_o]).to(DEVICE))
    got = _run(model, batch)
    gates = got["gates"]["layers.0"]
    sig = torch.sigmoid
    assert gates["input"]["mean"] == pytest.approx(float(sig(torch.tensor(10.0))), rel=1e-6)
    assert gates["input"]["saturation"] == 1.0
    assert gates["forget"]["mean"] == pytest.approx(float(sig(b_f).mean()), rel=1e-6)
    assert gates["forget"]["saturation"] == pytest.approx(float(((sig(b_f) < 0.05) | (sig(b_f) > 0.95)).double().mean()))
    assert gates["cell"] == {"mean": 0.0, "saturation": 0.0}
    assert gates["output"]["mean"] == pytest.approx(float(sig(b_o).mean()), rel=1e-6)
    assert gates["output"]["saturation"] == pytest.approx(0.5)  # the four units at sigmoid(10)
    norm = float((sig(b_f) * torch.sqrt(1 + sig(b_o) ** 2)).max())
    np.testing.assert_allclose(got["jacobian_norms"]["layers.0"], norm, rtol=1e-6)
    # over 7 steps the finite-time exponents are far from their limit (log f); each is
    # at most the log of the largest one-step norm, and they are ordered
    lyap = got["lyapunov"]["layers.0"]
    assert np.all(lyap <= math.log(norm) + 1e-9) and np.all(np.diff(lyap) <= 1e-9)


def test_trainer_emits_a_dynamics_record_after_each_probe_and_the_run_is_unchanged():
    p = preset("adding_lstm", "train.steps=4", "train.probe_every=2", "model.layers.0.dropout=0.3",
               model_layers=[{"cell": "gru", "hidden_size": 8, "bidirectional": True}, {"cell": "lstm", "hidden_size": 8}])
    on = Trainer(p, probe_budget=None)
    records = list(on.run())
    kinds = [r.kind for r in records]
    probes = [i for i, k in enumerate(kinds) if k == "probe"]
    assert len(probes) == 3 and all(kinds[i + 1] == "dynamics" for i in probes)
    for i in probes:
        dyn = records[i + 1]
        assert dyn.step == records[i].step
        assert set(dyn.jacobian_norms) == {"layers.0", "layers.0.reverse", "layers.1"}
        assert all(v.shape == (12,) and np.all(np.isfinite(v)) and np.all(v > 0) for v in dyn.jacobian_norms.values())
        assert set(dyn.gates["layers.0"]) == {"reset", "update", "new"}
        assert set(dyn.spectra["layers.1"]) == {"input", "forget", "cell", "output"}
        back = from_json(dyn.to_json())
        assert isinstance(back, Dynamics) and back.step == dyn.step
        np.testing.assert_allclose(back.jacobian_norms["layers.1"], dyn.jacobian_norms["layers.1"], rtol=1e-3)
        assert back.spectra["layers.1"]["forget"]["radius"] == pytest.approx(
            dyn.spectra["layers.1"]["forget"]["radius"], rel=1e-3)
        assert dyn.radius("layers.1") == max(b["radius"] for b in dyn.spectra["layers.1"].values())
    off = Trainer(p, probe_budget=None, dynamics=False)
    assert not any(isinstance(r, Dynamics) for r in off.run())
    for (name, a), (_, b) in zip(on.model.state_dict().items(), off.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_jacobian_log_product_is_the_suffix_sum_of_logs():
    d = Dynamics(jacobian_norms={"l": np.array([10.0, 0.1, 100.0, 5.0])})
    np.testing.assert_allclose(d.jacobian_log_product("l"), [1.0 + np.log10(5.0), 2 + np.log10(5.0), np.log10(5.0), 0.0])


def test_cli_summary_lines_name_the_radius_and_the_leading_exponent():
    from workbench.engine.gradstats import dynamics_lines

    d = Dynamics(jacobian_norms={"layers.0": np.array([0.5, 0.5])}, lyapunov={"layers.0": np.array([-0.5, -1.0])},
                 spectra={"layers.0": {"input": {"radius": 0.4}, "forget": {"radius": 0.9}}})
    (line,) = dynamics_lines(d)
    assert "spectral radius of W_hh 0.9;" in line and "exponent -0.5 (x0.607 per step: forgetting)" in line


@pytest.mark.parametrize("name", ["adding_rnn_tanh", "exploding_relu_noclip", "adding_lstm"])
def test_the_leading_exponent_predicts_the_probes_gradient_decay(name):
    """Independent routes to one number: exp(leading Lyapunov exponent) of the dynamics
    against the per-step decay fitted to the exact probe's ||dL/dh_t|| (autograd through
    the layer's kernel), on the same batch at initialisation (measured: within 0.012 in
    log; the test allows 0.03)."""
    from workbench.engine import gradstats
    from workbench.presets import BUILTIN_DIR
    from workbench.spec import load

    p = with_overrides(load(BUILTIN_DIR / f"{name}.json"), ["train.steps=1", "train.probe_every=1",
                                                            "train.device=cpu", "train.eval_every=0"])
    records = list(Trainer(p, probe_budget=None).run())
    probe = next(r for r in records if r.kind == "probe")
    dyn = next(r for r in records if isinstance(r, Dynamics))
    factor = gradstats.fit_decay(probe.hidden_grad_norms["layers.0"]).factor_per_step
    assert dyn.lyapunov["layers.0"][0] == pytest.approx(math.log(factor), abs=0.03)


def test_trajectory_is_the_pca_of_the_hidden_states():
    """Against numpy's own PCA (eigenvectors of the covariance) of the module's outputs,
    up to each component's sign."""
    model, batch = _tanh_model(hidden=8)
    got = _run(model, batch)["trajectories"]["layers.0"]
    rnn = model.encoder.rnns[0]
    h = rnn(model.encode_input(batch.x))[0].detach().cpu().numpy()  # [B, T, H]: h_1..h_T
    flat = h.reshape(-1, h.shape[-1])
    centred = flat - flat.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    top = vectors[:, ::-1][:, :3]
    expected = (centred @ top).reshape(h.shape[0], h.shape[1], 3)
    rows = np.asarray(got["rows"])  # [B, 3, T]: PC1..PC3 (the 3-D view; the 2-D one reads the first two)
    assert rows.shape == (h.shape[0], 3, h.shape[1])
    for c in range(3):
        sign = np.sign(np.sum(rows[:, c] * expected[..., c]))
        np.testing.assert_allclose(sign * rows[:, c], expected[..., c], atol=1e-8)
    np.testing.assert_allclose(got["explained"], values[::-1][:3] / values.sum(), rtol=1e-8)
    assert "labels" not in got  # a regression batch: no classes


def test_a_failing_instrument_does_not_end_the_run(monkeypatch):
    import workbench.engine.dynamics as dyn

    def broken(*args, **kwargs):
        raise RuntimeError("this cell's step has no double backward\nmore detail")

    monkeypatch.setattr(dyn, "model_dynamics", broken)
    records = list(Trainer(preset("adding_lstm", "train.steps=3", "train.probe_every=1"), probe_budget=None).run())
    assert not any(isinstance(r, Dynamics) for r in records)
    assert sum(r.kind == "probe" for r in records) == 4 and records[-1].status == "finished"
    assert records[-1].dynamics_off == "RuntimeError: this cell's step has no double backward"


def test_padded_rows_count_only_their_real_steps_in_both_directions():
    """A padded batch (lengths 7, 4, 5) against each row run alone, unpadded, through the
    module's own forward: per step, the mean over the rows where it is real of
    ||diag(1 - h_t^2) W_hh|| (the reverse direction from each row's last real step, not
    from the padding); padded steps are NaN in the trajectory and absent from the gates."""
    model, batch = _tanh_model(bidirectional=True)
    lengths = torch.tensor([7, 4, 5], device=DEVICE)
    with torch.no_grad():
        batch.x[1, 4:] = 5.0  # loud padding: were it read, the norms would differ
        batch.x[2, 5:] = -5.0
    got = model_dynamics(model, lambda: model(batch.x, None, lengths, unrolled=True), EXACT)
    rnn = model.encoder.rnns[0]
    x0 = model.encode_input(batch.x)
    for key, reverse in (("layers.0", False), ("layers.0.reverse", True)):
        per_row = np.full((3, 7), np.nan)
        for b, n in enumerate(lengths.tolist()):
            per_row[b, :n] = _direct_tanh_norms(rnn, x0[b:b + 1, :n], reverse)
        expected = np.nanmean(per_row, axis=0)
        np.testing.assert_allclose(got["jacobian_norms"][key], expected, rtol=1e-6)
        rows = np.asarray(got["trajectories"][key]["rows"][1])  # [3, T] row 1 (length 4), read order
        assert np.isfinite(rows[:, :4]).all() and np.isnan(rows[:, 4:]).all()
    # the trajectory (the module's own forward) against the step loop over each row read backwards
    from workbench.engine.dynamics import direction_trajectory
    from workbench.engine.model import RowAlignment

    ops = cells.ops("rnn_tanh")
    seq = RowAlignment.of(lengths, 7, x0.device).flip(x0.detach())
    start = (torch.zeros(3, 8, dtype=x0.dtype, device=DEVICE),)
    loop = direction_trajectory(ops, ops.directions(rnn)[1], seq, start, lengths)[0].transpose(1, 2).cpu().numpy()
    rows = np.asarray(got["trajectories"]["layers.0.reverse"]["rows"])  # [B, 3, T]
    assert np.array_equal(np.isnan(rows), np.isnan(loop))
    for c in range(3):
        sign = np.sign(np.nansum(rows[:, c] * loop[:, c]))
        np.testing.assert_allclose(sign * rows[:, c], loop[:, c], atol=1e-8)
    # without the lengths the padding is read: the reverse direction's norms then differ
    whole = _run(model, batch)["jacobian_norms"]["layers.0.reverse"]
    assert np.max(np.abs(whole - got["jacobian_norms"]["layers.0.reverse"])) > 1e-3


def test_padded_lyapunov_exponents_are_each_rows_own():
    """Row b's exponents from its own real steps: the same as the batch cut to that row's
    length (the same tangent vectors: the same shapes, the same generator seed)."""
    H = 6
    with cells.registered(LINEAR):
        model, batch = small_model("many_to_one", [LayerSpec(cell=LINEAR.name, hidden_size=H)])
        f = cells.ops(LINEAR.name).transition(cells.ops(LINEAR.name).directions(model.encoder.rnns[0])[0])
        u = torch.randn(2, 9, 4, dtype=torch.float64, device=DEVICE)
        start = (torch.randn(2, H, dtype=torch.float64, device=DEVICE),)
        padded = u.clone()
        padded[1, 5:] = 100.0
        _, lyap = trajectory_and_lyapunov(f, padded, start, k=3, generator=torch.Generator().manual_seed(1),
                                          lengths=torch.tensor([9, 5]))
        for b, n in ((0, 9), (1, 5)):
            _, cut = trajectory_and_lyapunov(f, u[:, :n], start, k=3, generator=torch.Generator().manual_seed(1))
            np.testing.assert_allclose(lyap[b].cpu().numpy(), cut[b].cpu().numpy(), rtol=1e-9, atol=1e-12)
        assert abs(lyap[1] - cut[1]).max() < 1e-9 and np.all(np.isfinite(lyap.cpu().numpy()))


def test_train_dynamics_false_turns_the_instruments_off():
    from workbench.spec import Preset, SpecError

    p = preset("adding_lstm", "train.steps=2", "train.probe_every=1", "train.dynamics=false")
    assert p.train.dynamics is False
    records = list(Trainer(p, probe_budget=None).run())
    assert any(r.kind == "probe" for r in records) and not any(isinstance(r, Dynamics) for r in records)
    raw = p.to_dict()
    raw["train"]["dynamics"] = "no"
    with pytest.raises(SpecError, match="train.dynamics"):
        Preset.from_dict(raw)


def test_classification_rows_keep_their_classes_with_the_trajectories():
    model, batch = _tanh_model(hidden=8)
    got = model_dynamics(model, lambda: model(batch.x, unrolled=True), EXACT,
                         labels=torch.tensor([2, 0, 1]))["trajectories"]["layers.0"]
    assert got["labels"] == [2, 0, 1] and len(got["rows"]) == 3
