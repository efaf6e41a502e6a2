"""The gradient-through-time instrumentation against an independent autograd route.

timestep_grad_norms (taps on each layer's input) and hidden_grad_norms (the exact probe:
each layer through its kernel with a zero probe input; the unrolled replica as a check)
must match what tests/engine/reference.py computes with nn.*Cell copies of the weights,
for every cell, uni- and bidirectional, stacked, in every topology."""
from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import DEVICE, fixed_loss, layers, small_model
from tests.engine.reference import reference_norms
from workbench.engine.probe import exact_hidden_grad_norms, param_grad_norms, tap_grad_norms

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
RTOL = 1e-5


@pytest.fixture(autouse=True)
def _no_tf32():
    """On a GPU (gpu.sh runs these there), TF32 would round float32 products to 10 bits."""
    if DEVICE.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_taps(model, batch, loss_fn):
    """The code under test for the taps: a tapped forward, retain_grad, backward."""
    model.zero_grad(set_to_none=True)
    model.tap_inputs = True
    out = model(batch.x, batch.y_in, batch.lengths)
    for tap in model.probe.taps:
        tap.retain_grad()
    loss_fn(out, batch).backward()
    taps = tap_grad_norms(model)
    model.tap_inputs = False
    return taps


def assert_profiles_match(actual: dict, expected: dict):
    assert list(actual) == list(expected)
    for name in expected:
        e = expected[name].detach().cpu().double()
        a = torch.as_tensor(actual[name]).double()
        assert a.shape == e.shape, name
        assert float(e.abs().max()) > 0, f"{name}: the reference gradient is all zero; the test proves nothing"
        torch.testing.assert_close(a, e, rtol=RTOL, atol=1e-12 * float(e.abs().max()), msg=lambda m: f"{name}: {m}")


def check(model, batch):
    loss_fn = fixed_loss()
    ref_taps, ref_hidden = reference_norms(
        model, lambda ref: loss_fn(ref(batch.x, batch.y_in, batch.lengths), batch))
    assert_profiles_match(run_taps(model, batch, loss_fn), ref_taps)
    assert_profiles_match(exact_hidden_grad_norms(model, loss_fn, batch), ref_hidden)


@pytest.mark.parametrize("cell", CELLS)
def test_many_to_one_bidirectional_under_unidirectional(cell):
    model, batch = small_model("many_to_one", layers((cell, True), (cell, False)))
    batch.lengths = torch.tensor([7, 4, 6], device=DEVICE)  # padded rows: the summary at the last real step
    check(model, batch)


@pytest.mark.parametrize("cell", CELLS)
def test_many_to_many_unidirectional_under_bidirectional(cell):
    model, batch = small_model("many_to_many", layers((cell, False), (cell, True), (cell, False)))
    check(model, batch)


def test_mixed_cells_stack():
    model, batch = small_model("many_to_many", layers(("gru", True), ("rnn_relu", False), ("lstm", True),
                                                      ("rnn_tanh", False)))
    check(model, batch)


@pytest.mark.parametrize("attention", [False, True])
def test_encoder_decoder(attention):
    model, batch = small_model("encoder_decoder", layers(("lstm", True), ("gru", False)),
                               decoder=layers(("gru", False), ("lstm", False)), attention=attention)
    check(model, batch)


def test_one_to_many():
    model, batch = small_model("one_to_many", layers(("lstm", False), ("rnn_tanh", False)))
    check(model, batch)


def test_float32_agrees_with_float64_reference():
    model, batch = small_model("many_to_many", layers(("lstm", False), ("gru", True)), dtype=torch.float32)
    loss_fn = fixed_loss()
    ref_taps, ref_hidden = reference_norms(
        model, lambda ref: loss_fn(ref(batch.x.double(), None, None), batch))
    # cuDNN's fp32 RNN kernels use TF32 by default (about 1e-3 relative on an H200):
    # this test is about the probe's arithmetic, so ask for true fp32 there.
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        results = ((run_taps(model, batch, loss_fn), ref_taps),
                   (exact_hidden_grad_norms(model, loss_fn, batch), ref_hidden))
    for actual, expected in results:
        for name in expected:
            torch.testing.assert_close(torch.as_tensor(actual[name]).double(), expected[name].cpu(),
                                       rtol=1e-4, atol=1e-7 * float(expected[name].abs().max()))


def test_many_to_one_top_layer_hidden_gradient_is_not_its_output_gradient():
    """The DESIGN point: in a many-to-one model the gradient of the top layer's OUTPUT
    sequence is zero before the last step (the recurrence is inside the fused kernel),
    while the exact dL/dh_t, recurrent path included, is not; the input-side tap is not
    either."""
    model, batch = small_model("many_to_one", layers(("lstm", False), ("lstm", False)))
    top = model.encoder.rnns[-1]
    captured = {}
    handle = top.register_forward_hook(lambda mod, inp, out: captured.__setitem__("out", out[0]))
    loss_fn = fixed_loss()
    out = model(batch.x)
    handle.remove()
    (g_out,) = torch.autograd.grad(loss_fn(out, batch), captured["out"])
    output_grad = g_out.norm(dim=-1).mean(0)  # [T]
    T = output_grad.shape[0]
    assert torch.all(output_grad[:-1] == 0) and output_grad[-1] > 0
    hidden = exact_hidden_grad_norms(model, loss_fn, batch)["layers.1"]
    assert hidden.shape == (T,)
    assert (hidden[:-1] > 1e-6 * hidden[-1]).all(), hidden
    taps = run_taps(model, batch, loss_fn)["layers.1"]
    assert (taps[:-1] > 0).all()


def test_probe_leaves_parameter_gradients_alone():
    model, batch = small_model("many_to_one", layers(("gru", False)))
    loss_fn = fixed_loss()
    run_taps(model, batch, loss_fn)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    exact_hidden_grad_norms(model, loss_fn, batch)
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, before[n]), n
    assert model.probe is None and not model.tap_inputs


def test_param_grad_norms_split_forward_recurrent_bias():
    model, batch = small_model("many_to_one", layers(("lstm", True), ("rnn_tanh", False)))
    run_taps(model, batch, fixed_loss())
    norms = param_grad_norms(model)
    assert set(norms) == {"layers.0", "layers.1"}
    rnn = model.encoder.rnns[0]
    expect = {
        "forward": torch.sqrt(rnn.weight_ih_l0.grad.pow(2).sum() + rnn.weight_ih_l0_reverse.grad.pow(2).sum()),
        "recurrent": torch.sqrt(rnn.weight_hh_l0.grad.pow(2).sum() + rnn.weight_hh_l0_reverse.grad.pow(2).sum()),
        "bias": torch.sqrt(sum(getattr(rnn, n).grad.pow(2).sum() for n in
                               ("bias_ih_l0", "bias_hh_l0", "bias_ih_l0_reverse", "bias_hh_l0_reverse"))),
    }
    for key, value in expect.items():
        assert norms["layers.0"][key] == pytest.approx(float(value), rel=1e-5)


def test_initial_and_final_states_continue_a_sequence():
    """model.forward(initial_states=..., return_states=True) (what truncated BPTT uses):
    running two halves with the state carried equals one run over the whole sequence;
    other topologies refuse it."""
    model, batch = small_model("many_to_many", layers(("lstm", False), ("gru", False), ("rnn_tanh", False)))
    whole = model(batch.x)
    first, states = model(batch.x[:, :3], return_states=True)
    second, _ = model(batch.x[:, 3:], initial_states=states, return_states=True)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    unrolled, _ = model(batch.x[:, 3:], initial_states=states, return_states=True, unrolled=True)
    torch.testing.assert_close(unrolled, second)
    enc_dec, enc_batch = small_model("encoder_decoder", layers(("gru", False)), decoder=layers(("gru", False)))
    with pytest.raises(ValueError, match="many_to_one and many_to_many"):
        enc_dec(enc_batch.x, enc_batch.y_in, return_states=True)


def test_the_probe_takes_a_state_carried_from_an_autocast_chunk():
    """TBPTT under bf16/fp16 autocast carries half-precision states into the probe, which
    runs in fp32 (seen on an H200: 'mat1 and mat2 must have the same dtype')."""
    from workbench.engine.model import kernel_probe_layer, unrolled_layer

    for cell, module in (("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn_tanh", torch.nn.RNN)):
        rnn = module(3, 4, batch_first=True)
        x = torch.randn(2, 5, 3)
        h = torch.randn(1, 2, 4).to(torch.bfloat16)
        state = (h, torch.randn(1, 2, 4).to(torch.bfloat16)) if cell == "lstm" else h
        expected, _ = rnn(x, tuple(s.float() for s in state) if cell == "lstm" else state.float())
        out, _final, states = unrolled_layer(rnn, cell, x, state)
        assert out.dtype == torch.float32 and len(states[0]) == 5
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        if cell != "gru":
            out, _final, _recorded = kernel_probe_layer(rnn, cell, x, state)
            assert out.dtype == torch.float32
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_the_probes_route_per_layer(cell):
    """By default every layer goes through its kernel, but a GRU on the CPU (where the
    replica is cheaper); True / False force the kernel route / the replica."""
    model, batch = small_model("many_to_one", layers((cell, True), (cell, False)))
    expect_kernel = cell != "gru" or DEVICE.type != "cpu"
    for route, through_kernel in ((None, expect_kernel), (True, True), (False, False)):
        model.encoder.kernel_probe = route
        model(batch.x, batch.y_in, batch.lengths, unrolled=True)
        recorded = model.probe.states
        assert len(recorded) == 2
        assert all((layer.states is None) is through_kernel for layer in recorded), route
        if not through_kernel:
            assert [len(layer.states) for layer in recorded] == [2, 1]  # directions


@pytest.mark.parametrize("topology, stack, decoder", [
    ("many_to_one", [("lstm", True), ("rnn_tanh", False)], None),
    ("many_to_one", [("gru", True), ("gru", False)], None),
    ("many_to_many", [("rnn_relu", True), ("lstm", True)], None),
    ("many_to_many", [("gru", False), ("gru", True)], None),
    ("encoder_decoder", [("lstm", True)], [("lstm", False), ("rnn_tanh", False)]),
    ("encoder_decoder", [("gru", True)], [("gru", False), ("gru", False)]),
    ("one_to_many", [("lstm", False), ("rnn_relu", False)], None),
    ("one_to_many", [("gru", False), ("gru", False)], None),
])
def test_the_kernel_probe_gives_what_the_unrolled_replica_gives(topology, stack, decoder):
    """The kernel route (dL/dout_t + dL/dz_t±1) against the step-by-step replica on the
    same model and batch, float64: equal to rounding, for every state including the
    first and the last of each direction."""
    model, batch = small_model(topology, layers(*stack), decoder=layers(*decoder) if decoder else None,
                               attention=topology == "encoder_decoder")
    if batch.lengths is None and topology == "many_to_one":
        batch.lengths = torch.tensor([7, 4, 6], device=DEVICE)
    loss_fn = fixed_loss()
    profiles = {}
    for through_kernel in (True, False):
        for _prefix, s in model.named_stacks():
            s.kernel_probe = through_kernel
        profiles[through_kernel] = exact_hidden_grad_norms(model, loss_fn, batch)
    assert list(profiles[True]) == list(profiles[False])
    for name, expected in profiles[False].items():
        assert expected.max() > 0
        torch.testing.assert_close(torch.as_tensor(profiles[True][name]), torch.as_tensor(expected),
                                   rtol=1e-10, atol=1e-14 * float(expected.max()))


@pytest.mark.parametrize("cell", ["rnn_tanh", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("with_state", [False, True])
def test_the_kernel_probe_counts_the_final_states_gradient(cell, bidirectional, with_state):
    """A loss that reads the layer's final state (h_n, and c_n for an LSTM) as well as its
    outputs: the kernel route's dL/dh_t equals the replica's at every step of each
    direction, its last state included."""
    from workbench.engine.model import kernel_probe_layer, unrolled_layer

    torch.manual_seed(3)
    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(cell, torch.nn.RNN)
    rnn = module(3, 4, batch_first=True, bidirectional=bidirectional).double()
    x = torch.randn(2, 6, 3, dtype=torch.float64)
    weights = torch.randn(6, 2 * 4 if bidirectional else 4, dtype=torch.float64)
    state = None
    if with_state:  # a carried or bridged initial state
        h = torch.randn(2 if bidirectional else 1, 2, 4, dtype=torch.float64)
        state = (h, torch.randn_like(h)) if cell == "lstm" else h

    def loss_of(out, final):
        hn, cn = final if cell == "lstm" else (final, None)
        loss = (out * weights).sum().sin() + hn.pow(3).sum()
        return loss + (cn.pow(2).sum() if cn is not None else 0)

    out, final, states = unrolled_layer(rnn, cell, x, state)
    flat = [h for direction in states for h in direction]
    expected = torch.autograd.grad(loss_of(out, final), flat)
    out, final, recorded = kernel_probe_layer(rnn, cell, x, state)
    grads = torch.autograd.grad(loss_of(out, final), recorded.targets(), allow_unused=True)
    got = recorded.hidden_grads(list(grads))
    assert len(got) == len(states)
    for d, direction in enumerate(got):
        for t in range(6):
            torch.testing.assert_close(direction[:, t], expected[d * 6 + t], rtol=1e-10, atol=1e-12)
