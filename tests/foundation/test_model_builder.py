"""Every cell x topology x depth x direction builds, runs forward and backward, and the
spec's parameter report equals the built module's parameters."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

from workbench import cells
from workbench.cells import conv
from workbench.engine.model import build_model
from workbench.spec import TOPOLOGIES, HeadSpec, InitSpec, InputSpec, LayerSpec, ModelIO, ModelSpec, parameter_report

B, T, S = 3, 5, 4  # batch, output/target length, source length
VOCAB, OUT_VOCAB, FEATS = 11, 9, 3


def _io(topology: str, input_kind: str) -> ModelIO:
    kinds = {"embedding": "tokens", "linear": "features", "frames_linear": "frames", "frames_conv": "frames"}
    io_kind = kinds[input_kind]
    if topology == "one_to_many":
        io_kind = {"tokens": "class", "features": "vector", "frames": "image"}[io_kind]
    generating = topology in ("encoder_decoder", "one_to_many")
    return ModelIO(input_kind=io_kind, vocab_size=VOCAB, feature_size=FEATS, frame_shape=(2, 6, 5),
                   output_size=OUT_VOCAB if generating else 4, output_vocab_size=OUT_VOCAB if generating else 0)


def _inputs(topology: str, input_kind: str):
    g = torch.Generator().manual_seed(0)
    seq = S if topology == "encoder_decoder" else T
    lead = (B,) if topology == "one_to_many" else (B, seq)
    if input_kind == "embedding":
        x = torch.randint(0, VOCAB, lead, generator=g)
    elif input_kind == "linear":
        x = torch.randn(*lead, FEATS, generator=g)
    else:
        x = torch.randn(*lead, 2, 6, 5, generator=g)
    y_in = torch.randint(0, OUT_VOCAB, (B, T), generator=g) if topology in ("encoder_decoder", "one_to_many") else None
    return x, y_in


def _spec(topology: str, cell: str, depth: int, bidirectional: bool, input_kind: str = "embedding",
          attention: bool = False) -> ModelSpec:
    layers = [LayerSpec(cell=cell, hidden_size=6 + i, bidirectional=bidirectional, dropout=0.1 if i < depth - 1 else 0.0)
              for i in range(depth)]
    decoder = [LayerSpec(cell=cell, hidden_size=7 + i) for i in range(depth)] if topology == "encoder_decoder" else []
    return ModelSpec(topology=topology, input=InputSpec(kind=input_kind, embedding_dim=5, projection_size=4,
                                                        conv_channels=[3, 4]),
                     layers=layers, decoder_layers=decoder, attention=attention)


def _combos():
    # every registered cell: the four of 1997-2014 and the scan cells (minGRU, minLSTM, LRU)
    for topology, cell, depth, bidir in itertools.product(TOPOLOGIES, cells.names(), (1, 3), (False, True)):
        if bidir and topology == "one_to_many":
            continue  # a generator cannot read the future
        if conv.is_spatial(cell):
            continue  # frames only: tests/engine/test_conv_cells.py
        yield topology, cell, depth, bidir


@pytest.mark.parametrize("topology,cell,depth,bidir", list(_combos()))
def test_every_combination_builds_trains_and_counts(topology, cell, depth, bidir):
    spec = _spec(topology, cell, depth, bidir, attention=topology == "encoder_decoder" and depth == 3)
    io = _io(topology, "embedding")
    model = build_model(spec, io)
    x, y_in = _inputs(topology, "embedding")
    out = model(x, y_in)
    expected = {"many_to_one": (B, io.output_size), "many_to_many": (B, T, io.output_size),
                "encoder_decoder": (B, T, io.output_size), "one_to_many": (B, T, io.output_size)}[topology]
    assert tuple(out.shape) == expected
    out.float().pow(2).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"parameters without a gradient: {no_grad}"
    # the embedding rows actually used get gradient; every other parameter is nonzero somewhere
    zero = [n for n, p in model.named_parameters() if "embedding" not in n and float(p.grad.abs().sum()) == 0.0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"
    assert parameter_report(spec, io).total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("input_kind", ["embedding", "linear", "frames_linear", "frames_conv"])
@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_input_side_fits_every_topology(topology, input_kind):
    spec = _spec(topology, "gru", 2, False, input_kind=input_kind)
    io = _io(topology, input_kind)
    model = build_model(spec, io)
    x, y_in = _inputs(topology, input_kind)
    out = model(x, y_in)
    assert out.shape[0] == B
    out.sum().backward()
    assert parameter_report(spec, io).total == sum(p.numel() for p in model.parameters())


def test_parameter_report_splits_forward_recurrent_bias():
    spec = ModelSpec(topology="many_to_one", input=InputSpec(kind="linear", projection_size=10),
                     layers=[LayerSpec(cell="lstm", hidden_size=20), LayerSpec(cell="gru", hidden_size=8, bidirectional=True)])
    io = ModelIO(input_kind="features", feature_size=3, output_size=1)
    model = build_model(spec, io)
    report = parameter_report(spec, io)
    for (name, _layer, rnn), counted in zip(model.recurrent_layers(), report.layers):
        assert name == counted.name
        f = sum(p.numel() for n, p in rnn.named_parameters() if n.startswith("weight_ih"))
        r = sum(p.numel() for n, p in rnn.named_parameters() if n.startswith("weight_hh"))
        b = sum(p.numel() for n, p in rnn.named_parameters() if n.startswith("bias"))
        assert (counted.forward, counted.recurrent, counted.bias) == (f, r, b)
    assert report.layers[0].forward == 4 * 20 * 10  # W_f: 4 gates x H x input
    assert report.layers[1].recurrent == 2 * 3 * 8 * 8  # W_r: 2 directions x 3 gates x H x H


def test_each_recurrent_layer_is_its_own_cudnn_module():
    spec = _spec("many_to_many", "lstm", 3, True)
    model = build_model(spec, _io("many_to_many", "embedding"))
    rnns = [m for m in model.modules() if isinstance(m, torch.nn.RNNBase)]
    assert len(rnns) == 3 and all(m.num_layers == 1 for m in rnns)


def test_initialisations():
    io = ModelIO(input_kind="features", feature_size=3, output_size=1)
    lstm = build_model(ModelSpec(input=InputSpec(kind="linear"), layers=[LayerSpec(cell="lstm", hidden_size=8)],
                                 head=HeadSpec(kind="regression")), io)
    rnn = lstm.encoder.rnns[0]
    assert torch.allclose(rnn.bias_ih_l0[8:16] + rnn.bias_hh_l0[8:16], torch.ones(8))  # forget bias 1
    irnn = build_model(ModelSpec(input=InputSpec(kind="linear"), layers=[LayerSpec(cell="rnn_relu", hidden_size=8)],
                                 init=InitSpec(recurrent="identity")), io).encoder.rnns[0]
    assert torch.equal(irnn.weight_hh_l0, torch.eye(8))
    assert float(irnn.bias_hh_l0.detach().abs().sum()) == 0.0
    ortho = build_model(ModelSpec(input=InputSpec(kind="linear"), layers=[LayerSpec(cell="gru", hidden_size=8)],
                                  init=InitSpec(recurrent="orthogonal")), io).encoder.rnns[0]
    for block in ortho.weight_hh_l0.detach().view(3, 8, 8):
        assert torch.allclose(block @ block.T, torch.eye(8), atol=1e-5)
    scaled = build_model(ModelSpec(input=InputSpec(kind="linear"), layers=[LayerSpec(cell="rnn_relu", hidden_size=8)],
                                   init=InitSpec(recurrent="orthogonal", spectral_radius=1.5)), io).encoder.rnns[0]
    radius = torch.linalg.eigvals(scaled.weight_hh_l0.detach().double()).abs().max().item()
    assert abs(radius - 1.5) < 1e-4


def test_generate_stops_at_length_and_eos():
    spec = _spec("encoder_decoder", "lstm", 1, True, attention=True)
    io = _io("encoder_decoder", "embedding")
    model = build_model(spec, io).eval()
    x, _ = _inputs("encoder_decoder", "embedding")
    tokens, attention = model.generate(x, max_len=7)
    assert tokens.shape[0] == B and tokens.shape[1] <= 7
    assert attention is not None and attention.shape == (B, tokens.shape[1], S)
    sampled, _ = model.generate(x, max_len=7, temperature=1.0, top_k=3, generator=torch.Generator().manual_seed(1))
    assert sampled.shape[0] == B


def test_many_to_one_uses_the_last_real_step_of_padded_sequences():
    spec = ModelSpec(topology="many_to_one", input=InputSpec(kind="embedding", embedding_dim=4),
                     layers=[LayerSpec(cell="gru", hidden_size=5)])
    model = build_model(spec, ModelIO(input_kind="tokens", vocab_size=7, output_size=2)).eval()
    x = torch.tensor([[1, 2, 3, 0, 0]])
    padded = model(x, lengths=torch.tensor([3]))
    short = model(x[:, :3])
    assert torch.allclose(padded, short, atol=1e-6)


@pytest.mark.parametrize("topology", ["one_to_many", "encoder_decoder"])
def test_the_bridge_norm_makes_the_initial_states_blind_to_the_scale_of_what_sets_them(topology):
    from workbench.spec import Preset

    layers = [LayerSpec("lstm", 6), LayerSpec("gru", 5)]
    states = {}
    for norm in (False, True):
        spec = ModelSpec(topology=topology, input=InputSpec(kind="linear", projection_size=4, embedding_dim=4),
                         layers=layers, decoder_layers=list(layers) if topology == "encoder_decoder" else [],
                         bridge_norm=norm)
        torch.manual_seed(0)
        model = build_model(spec, _io(topology, "linear"))
        v = torch.randn(B, model.bridge.source_size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            states[norm] = [torch.cat([s[0] if isinstance(s, tuple) else s for s in model.bridge(k * v)], dim=-1)
                            for k in (1.0, 30.0)]
        assert sum(p.numel() for p in model.parameters()) == parameter_report(spec, _io(topology, "linear")).total
    small, large = states[False]
    assert float((large - small).abs().max()) > 0.1  # without: the input's scale moves the states (to saturation)
    assert float(large.abs().gt(0.99).float().mean()) > float(small.abs().gt(0.99).float().mean())
    small, large = states[True]
    torch.testing.assert_close(large, small, rtol=1e-3, atol=1e-3)  # with: it does not (up to the norm's eps)
    # a preset written before the field existed keeps the bridge it was trained with
    raw = json.loads(Preset().to_json())
    del raw["model"]["bridge_norm"]
    assert Preset.from_dict(raw).model.bridge_norm is False
