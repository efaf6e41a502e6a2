"""minGRU, minLSTM and the LRU as layers of the workbench (workbench/cells, built on
workbench.engine.scan): the taps and the exact dL/dh_t probe (both routes: the scan with
its probe input, and the step-by-step replica) against the independent float64
reference (tests/engine/reference.py), in every topology, stacked with each other and
with the cells of 1997; states carried between chunks; the spec's rules for them."""
from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import DEVICE, fixed_loss, layers, small_model
from tests.engine.reference import reference_norms
from tests.engine.test_probe import check, run_taps
from workbench.engine.probe import exact_hidden_grad_norms
from workbench.spec import InitSpec, LayerSpec, ModelSpec, SpecError, validate_model

MODERN = ("mingru", "minlstm", "lru")


def routes(model, through_kernel: bool) -> None:
    for _prefix, stack in model.named_stacks():
        stack.kernel_probe = through_kernel


@pytest.mark.parametrize("cell", MODERN)
@pytest.mark.parametrize("through_kernel", [True, False])
def test_many_to_one_bidirectional_padded(cell, through_kernel):
    model, batch = small_model("many_to_one", layers((cell, True), (cell, False)))
    batch.lengths = torch.tensor([7, 4, 6], device=DEVICE)
    routes(model, through_kernel)
    check(model, batch)


@pytest.mark.parametrize("cell", MODERN)
def test_many_to_many_stacked_with_the_old_cells(cell):
    model, batch = small_model("many_to_many", layers((cell, False), ("lstm", True), (cell, True), ("gru", False)))
    check(model, batch)


def test_the_three_stacked():
    model, batch = small_model("many_to_many", layers(("lru", True), ("mingru", False), ("minlstm", True)))
    check(model, batch)


@pytest.mark.parametrize("cell", MODERN)
def test_encoder_decoder_with_attention(cell):
    """The decoder starts from the bridge's tanh state, of either sign (the log-space scan
    must not take its log)."""
    model, batch = small_model("encoder_decoder", layers((cell, True)), decoder=layers((cell, False), ("gru", False)),
                               attention=True)
    check(model, batch)


@pytest.mark.parametrize("cell", MODERN)
def test_one_to_many(cell):
    model, batch = small_model("one_to_many", layers((cell, False), (cell, False)))
    check(model, batch)


@pytest.mark.parametrize("cell", MODERN)
def test_probe_routes_agree_and_default_is_the_scan(cell):
    model, batch = small_model("many_to_many", layers((cell, True), (cell, False)))
    model(batch.x, unrolled=True)
    assert all(type(layer).__name__ == "ScanProbe" for layer in model.probe.states)  # the default route
    model.probe = None
    loss_fn = fixed_loss()
    profiles = {}
    for through_kernel in (True, False):
        routes(model, through_kernel)
        profiles[through_kernel] = exact_hidden_grad_norms(model, loss_fn, batch)
    for name, expected in profiles[False].items():
        assert expected.max() > 0
        torch.testing.assert_close(torch.as_tensor(profiles[True][name]), torch.as_tensor(expected),
                                   rtol=1e-9, atol=1e-14 * float(expected.max()))


@pytest.mark.parametrize("cell", MODERN)
def test_float32_against_the_float64_reference(cell):
    model, batch = small_model("many_to_many", layers((cell, False), (cell, True)), dtype=torch.float32)
    loss_fn = fixed_loss()
    ref_taps, ref_hidden = reference_norms(model, lambda ref: loss_fn(ref(batch.x.double(), None, None), batch))
    for actual, expected in ((run_taps(model, batch, loss_fn), ref_taps),
                             (exact_hidden_grad_norms(model, loss_fn, batch), ref_hidden)):
        for name in expected:
            torch.testing.assert_close(torch.as_tensor(actual[name]).double(), expected[name].cpu(),
                                       rtol=1e-4, atol=1e-7 * float(expected[name].abs().max()))


@pytest.mark.parametrize("cell", MODERN)
def test_states_carried_between_chunks(cell):
    """What truncated BPTT and streaming use: two halves with the state carried equal the
    whole; one step at a time (the sequential form) too."""
    model, batch = small_model("many_to_many", layers((cell, False), (cell, False)))
    whole = model(batch.x)
    first, states = model(batch.x[:, :3], return_states=True)
    second, _ = model(batch.x[:, 3:], initial_states=states, return_states=True)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole)
    outs, states = [], None
    for t in range(batch.x.shape[1]):
        out, states = model(batch.x[:, t:t + 1], initial_states=states, return_states=True)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=1), whole)


def test_generation_runs_the_sequential_form():
    model, batch = small_model("encoder_decoder", layers(("lru", True)), decoder=layers(("mingru", False),
                                                                                      ("minlstm", False)))
    tokens, _ = model.generate(batch.x, max_len=5, lengths=batch.lengths)
    assert tokens.shape[0] == 3 and 1 <= tokens.shape[1] <= 5
    # greedy decoding = the argmax of the teacher-forced run over its own tokens
    bos = torch.full((3, 1), model.io.bos_id, dtype=torch.long)
    y_in = torch.cat([bos, tokens[:, :-1]], dim=1)
    logits = model(batch.x, y_in, batch.lengths)
    live = tokens != model.io.pad_id
    assert torch.equal(logits.argmax(-1)[live], tokens[live])


def test_lru_ring_from_the_spec():
    model, _ = small_model("many_to_one", [LayerSpec(cell="lru", hidden_size=64)])
    spec = model.spec
    spec.init.lru_r_min, spec.init.lru_r_max = 0.9, 0.95
    from workbench.engine.model import build_model
    model = build_model(spec, model.io)
    rnn = model.encoder.rnns[0]
    modulus = torch.exp(-torch.exp(rnn.weight_hh_nu_l0.detach()))
    assert float(modulus.min()) >= 0.9 - 1e-6 and float(modulus.max()) <= 0.95 + 1e-6
    torch.testing.assert_close(torch.exp(rnn.gamma_log_l0.detach()), torch.sqrt(1 - modulus ** 2))


@pytest.mark.parametrize("cell", MODERN)
def test_spec_refuses_recurrent_matrix_inits(cell):
    for init, field in ((InitSpec(recurrent="orthogonal"), "model.init.recurrent"),
                        (InitSpec(spectral_radius=1.1), "model.init.spectral_radius")):
        spec = ModelSpec(layers=[LayerSpec(cell="lstm"), LayerSpec(cell=cell)], init=init)
        with pytest.raises(SpecError, match=f"^{field}: .*no recurrent matrix"):
            validate_model(spec)
    validate_model(ModelSpec(layers=[LayerSpec(cell=cell)]))
    with pytest.raises(SpecError, match="^model.init.lru_r_min: must not exceed"):
        validate_model(ModelSpec(layers=[LayerSpec(cell=cell)], init=InitSpec(lru_r_min=0.9, lru_r_max=0.5)))


@pytest.mark.parametrize("cell", MODERN)
def test_autocast_bf16_keeps_the_scan_in_float32(cell):
    """Under bf16 autocast (train.precision) the projections are bf16; the scan itself
    runs in float32 (the LRU has no complex bf16), and carried states may come in bf16."""
    model, batch = small_model("many_to_many", layers((cell, True), (cell, False)), dtype=torch.float32)
    want = model(batch.x)
    with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
        out, states = model(batch.x, return_states=True)
        half = [tuple(s.to(torch.bfloat16) for s in st) if isinstance(st, tuple) else st.to(torch.bfloat16)
                for st in states]
        more, _ = model(batch.x, initial_states=half, return_states=True)
    out.float().pow(2).sum().backward()
    assert torch.isfinite(more.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(out.float(), want, rtol=0.05, atol=0.05)
