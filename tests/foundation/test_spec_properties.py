"""Property-based: every valid spec builds and trains a step; every invalid one is
refused with SpecError (never another exception)."""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.engine.model import build_model
from workbench.spec import CELLS, INPUT_KINDS, TOPOLOGIES, ModelIO, Preset, SpecError, parameter_report

layer = st.fixed_dictionaries({
    "cell": st.sampled_from(CELLS),
    "hidden_size": st.integers(1, 12),
    "bidirectional": st.booleans(),
    "dropout": st.sampled_from([0.0, 0.2]),
})
model = st.fixed_dictionaries({
    "topology": st.sampled_from(TOPOLOGIES),
    "input": st.fixed_dictionaries({"kind": st.sampled_from(INPUT_KINDS), "embedding_dim": st.integers(1, 6),
                                    "projection_size": st.integers(1, 6),
                                    "conv_channels": st.lists(st.integers(1, 3), min_size=1, max_size=2)}),
    "layers": st.lists(layer, min_size=1, max_size=3),
    "decoder_layers": st.lists(layer.map(lambda d: {**d, "bidirectional": False}), min_size=0, max_size=2),
    "attention": st.booleans(),
    "head": st.fixed_dictionaries({"kind": st.sampled_from(["classification", "regression"]),
                                   "hidden_size": st.sampled_from([0, 5])}),
    "init": st.fixed_dictionaries({"recurrent": st.sampled_from(["default", "orthogonal", "identity"]),
                                   "forget_bias": st.sampled_from([0.0, 1.0]),
                                   "spectral_radius": st.sampled_from([None, 0.5, 1.3])}),
})

# Values that are wrong in type or range, for any field.
junk = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                 st.text(max_size=5), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _io(m: dict) -> ModelIO:
    kind = {"embedding": "tokens", "embedding_chars": "tokens", "linear": "features"}.get(m["input"]["kind"], "frames")
    if m["topology"] == "one_to_many":
        kind = {"tokens": "class", "features": "vector", "frames": "image"}[kind]
    return ModelIO(input_kind=kind, vocab_size=7, char_vocab_size=5, feature_size=3, frame_shape=(1, 4, 4),
                   output_size=5, output_vocab_size=6)


def _inputs(m: dict):
    k, topo = m["input"]["kind"], m["topology"]
    lead = (2,) if topo == "one_to_many" else (2, 4)
    if k == "embedding":
        x = torch.randint(0, 7, lead)
    elif k == "embedding_chars":  # word id, then 3 char ids (0 = padding)
        x = torch.cat([torch.randint(0, 7, (*lead, 1)), torch.randint(0, 5, (*lead, 3))], dim=-1)
    elif k == "linear":
        x = torch.randn(*lead, 3)
    else:
        x = torch.randn(*lead, 1, 4, 4)
    y_in = torch.randint(0, 6, (2, 3)) if topo in ("encoder_decoder", "one_to_many") else None
    return x, y_in


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model)
def test_valid_specs_build_and_train_a_step_invalid_ones_are_refused(m):
    raw = Preset().to_dict()
    raw["model"] = m
    try:
        preset = Preset.from_dict(raw)
    except SpecError:
        return  # refused with our own error: fine (e.g. bidirectional generator, IRNN on LSTM)
    io = _io(m)
    net = build_model(preset.model, io)
    assert parameter_report(preset.model, io).total == sum(p.numel() for p in net.parameters())
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y_in = _inputs(m)
    out = net(x, y_in)
    out.float().pow(2).mean().backward()
    opt.step()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["model.layers.0.hidden_size", "model.layers.0.cell", "model.layers.0.dropout",
                        "model.topology", "model.input.kind", "model.head", "model.init.spectral_radius",
                        "train.lr", "train.steps", "train.batch_size", "train.clip", "train.device", "name",
                        "data.options", "data", "model.layers", "schema_version", "train.precision"]), junk)
def test_junk_anywhere_raises_only_spec_error(path, value):
    raw = Preset().to_dict()
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    node[parts[-1]] = value
    try:
        Preset.from_dict(raw)
    except SpecError as exc:
        assert exc.field.startswith(path.split(".")[0])
