"""Padded rows: a row in a padded batch gives what the same row gives alone.

Bidirectional layers are where padding could leak in: the reverse direction reads a
row backwards, and must start at its last real step, not at the padding after it. The
check here is independent of how the model does that: every output, every layer-input
gradient (the taps) and every exact dL/dh_t (both probe routes) of each row at its real
steps must equal those of the row run alone, unpadded, and nothing may depend on what
the padding holds."""
from __future__ import annotations

import pytest
import torch

from tests.engine.helpers import DEVICE, layers, small_model
from workbench.engine.model import RowAlignment

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru", "mingru", "minlstm", "lru")  # the built-ins and the scan cells
LENGTHS = (7, 4, 6)  # T = 7


def _weights(shape, seed=11):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(DEVICE)


def _run(model, x, lengths, y_in=None, kernel_probe=None, rows=None):
    """Output, per layer input dL/dx [B, T, In] and per layer dL/dh [B, T, D*H], for the
    loss sum_b sum_{t < len_b} w[b, t] . out[b, t] (many_to_many / encoder_decoder) or
    sum_b w[b] . out[b] (many_to_one): each row's part of it depends on that row alone.
    ``rows``: which rows of the full batch x holds (their w)."""
    rows = list(range(x.shape[0])) if rows is None else rows
    for _prefix, stack in model.named_stacks():
        stack.kernel_probe = kernel_probe
    model.tap_inputs = True
    out = model(x, y_in, lengths, unrolled=True)
    probe = model.probe
    model.tap_inputs = False
    if out.dim() == 3:
        real = (torch.arange(out.shape[1], device=DEVICE)[None, :] < lengths[:, None]).unsqueeze(-1)
        w = _weights((len(LENGTHS), 7) + out.shape[2:])[rows, :out.shape[1]]
        if y_in is not None:  # encoder-decoder: the target side is not padded here
            real = torch.ones_like(real)
        loss = (out * w * real).sum()
    else:
        loss = (out * _weights((len(LENGTHS),) + out.shape[1:])[rows]).sum()
    targets = [t for layer in probe.states for t in layer.targets()]
    grads = torch.autograd.grad(loss, list(probe.taps) + targets, allow_unused=True)
    taps = [g if g is not None else torch.zeros_like(t) for g, t in zip(grads, probe.taps)]
    hidden, k = [], len(probe.taps)
    for layer in probe.states:
        n = len(layer.targets())
        hidden.append(torch.cat(layer.hidden_grads(list(grads[k:k + n])), dim=-1))
        k += n
    return out.detach(), taps, hidden


def _rows_alone(model, x, y_in, kernel_probe):
    """Each row of x run alone at its own length."""
    results = []
    for b, n in enumerate(LENGTHS):
        row_y = y_in[b:b + 1] if y_in is not None else None
        results.append(_run(model, x[b:b + 1, :n], torch.tensor([n], device=DEVICE), row_y, kernel_probe, [b]))
    return results


def _assert_rows_match(batched, alone, seq_output: bool):
    out, taps, hidden = batched
    for b, (n, (row_out, row_taps, row_hidden)) in enumerate(zip(LENGTHS, alone)):
        if seq_output:
            torch.testing.assert_close(out[b, :n], row_out[0, :n], rtol=1e-9, atol=1e-12)
        else:
            torch.testing.assert_close(out[b], row_out[0], rtol=1e-9, atol=1e-12)
        for layer, (tap, row_tap) in enumerate(zip(taps, row_taps)):
            m = row_tap.shape[1]  # the row's length (an encoder layer) or the whole target side
            torch.testing.assert_close(tap[b, :m], row_tap[0], rtol=1e-9, atol=1e-12,
                                       msg=lambda m: f"row {b}, layer {layer} input gradient: {m}")
        for layer, (h, row_h) in enumerate(zip(hidden, row_hidden)):
            T_row = row_h.shape[1]
            torch.testing.assert_close(h[b, :T_row], row_h[0], rtol=1e-9, atol=1e-12,
                                       msg=lambda m: f"row {b}, layer {layer} dL/dh: {m}")


def _padded_input(model, batch, junk_seed):
    """batch.x with the padding of each row overwritten by junk drawn from junk_seed."""
    x = batch.x.clone()
    g = torch.Generator().manual_seed(junk_seed)
    for b, n in enumerate(LENGTHS):
        if x.is_floating_point():
            x[b, n:] = torch.randn(x[b, n:].shape, generator=g, dtype=torch.float64).to(DEVICE) * 5
        else:
            x[b, n:] = torch.randint(3, int(x.max()) + 1, x[b, n:].shape, generator=g).to(DEVICE)
    return x


@pytest.mark.parametrize("kernel_probe", [True, False], ids=["kernel", "replica"])
@pytest.mark.parametrize("cell", CELLS)
def test_a_padded_row_of_a_bidirectional_stack_is_the_row_alone(cell, kernel_probe):
    model, batch = small_model("many_to_many", layers((cell, True), (cell, False), (cell, True)))
    lengths = torch.tensor(LENGTHS, device=DEVICE)
    x = _padded_input(model, batch, junk_seed=1)
    batched = _run(model, x, lengths, kernel_probe=kernel_probe)
    _assert_rows_match(batched, _rows_alone(model, x, None, kernel_probe), seq_output=True)
    # the reverse direction holds no state on a padded step
    for h in batched[2]:
        for b, n in enumerate(LENGTHS):
            assert int(torch.count_nonzero(h[b, n:, 5:])) == 0
    # and what the padding holds changes nothing on the real steps
    again = _run(model, _padded_input(model, batch, junk_seed=2), lengths, kernel_probe=kernel_probe)
    for b, n in enumerate(LENGTHS):
        torch.testing.assert_close(again[0][b, :n], batched[0][b, :n], rtol=0, atol=0)


@pytest.mark.parametrize("cell", ("lstm", "gru"))
def test_a_padded_row_summarised_by_a_bidirectional_layer_is_the_row_alone(cell):
    model, batch = small_model("many_to_one", layers((cell, True), (cell, True)))
    lengths = torch.tensor(LENGTHS, device=DEVICE)
    x = _padded_input(model, batch, junk_seed=3)
    _assert_rows_match(_run(model, x, lengths), _rows_alone(model, x, None, None), seq_output=False)


def test_an_encoder_reads_a_padded_source_as_the_source_alone():
    model, batch = small_model("encoder_decoder", layers(("lstm", True), ("gru", True)),
                               decoder=layers(("gru", False),), attention=True)
    global LENGTHS
    saved, LENGTHS = LENGTHS, (6, 4, 5)  # S = 6
    try:
        lengths = torch.tensor(LENGTHS, device=DEVICE)
        x = _padded_input(model, batch, junk_seed=4)
        batched = _run(model, x, lengths, batch.y_in)
        _assert_rows_match(batched, _rows_alone(model, x, batch.y_in, None), seq_output=False)
        # decoding reads the padded source as the training forward does
        tokens, _ = model.generate(x, max_len=5, lengths=lengths)
        for b, n in enumerate(LENGTHS):
            alone, _ = model.generate(x[b:b + 1, :n], max_len=5, lengths=lengths[b:b + 1])
            assert tokens[b, :alone.shape[1]].tolist() == alone[0].tolist()
    finally:
        LENGTHS = saved


def test_the_alignment_reverses_each_row_within_its_length():
    align = RowAlignment.of(torch.tensor([3, 1, 0, 4]), 4, torch.device("cpu"))
    seq = torch.arange(4.0)[None, :, None].repeat(4, 1, 1)  # [4, 4, 1]: step numbers
    assert align.flip(seq)[..., 0].tolist() == [[2, 1, 0, 3], [0, 1, 2, 3], [0, 1, 2, 3], [3, 2, 1, 0]]
    assert align.unflip(align.flip(seq))[..., 0].tolist() == [[0, 1, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0],
                                                               [0, 1, 2, 3]]
