"""model.copy, the pointer-generator (See et al. 2017): the mixture is a distribution, with
p_gen = 0 it is the attention mass over the source's tokens, decode_step is the teacher-forced
forward step by step, a copy model learns "reply = message" over a large vocabulary within a
few dozen steps (a model without copy does not), the option is checked, and ONNX exports it."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workbench.engine.model import build_model
from workbench.spec import InputSpec, LayerSpec, ModelIO, ModelSpec, Preset, SpecError, validate_model

V = 200  # one vocabulary for source and target (ids 0-3: <pad> <bos> <eos> <unk>)


def _model(copy: bool = True, seed: int = 0, vocab: int = V, source_to_target=None):
    torch.manual_seed(seed)
    io = ModelIO(input_kind="tokens", vocab_size=vocab, output_size=vocab, output_vocab_size=vocab,
                 source_to_target=tuple(range(vocab)) if source_to_target is None else source_to_target)
    spec = ModelSpec(topology="encoder_decoder", input=InputSpec(embedding_dim=16),
                     layers=[LayerSpec("gru", 32, bidirectional=True)], decoder_layers=[LayerSpec("gru", 32)],
                     attention=True, copy=copy)
    validate_model(spec)
    return build_model(spec, io)


def _pairs(g: torch.Generator, n: int, vocab: int = V, length: int = 4):
    """Copy pairs: x [n, length] -> y_in (<bos> x), y (x <eos>), each [n, length + 1]."""
    x = torch.randint(4, vocab, (n, length), generator=g)
    return x, torch.cat([torch.full((n, 1), 1), x], 1), torch.cat([x, torch.full((n, 1), 2)], 1)


def test_the_mixture_is_a_distribution_and_decode_step_is_the_training_forward():
    model = _model().eval()
    x, y_in, _ = _pairs(torch.Generator().manual_seed(0), 3)
    lengths = torch.tensor([4, 3, 2])
    with torch.no_grad():
        out = model(x, y_in, lengths)  # [B, T, V + S] log-probabilities (S extended ids)
        assert torch.allclose(out.exp().sum(-1), torch.ones(3, 5), atol=1e-5)
        _, state, memory = model.decoding_start(x, lengths)
        steps = []
        for t in range(y_in.shape[1]):
            logits, state, weights = model.decode_step(y_in[:, t], state, memory, lengths)
            steps.append(logits)
            assert weights.shape == (3, 4)
    assert torch.allclose(torch.stack(steps, 1), out, atol=1e-5)


def test_with_p_gen_zero_the_output_is_the_attention_mass_over_the_source_tokens():
    # source id i -> target id i // 2 (two source words share one target word), <unk> for 9 and up
    vocab = 12
    mapping = tuple(i // 2 if i < 9 else 3 for i in range(vocab))
    model = _model(vocab=vocab, source_to_target=mapping).eval()
    with torch.no_grad():
        model.copy_gate.weight.zero_()
        model.copy_gate.bias.fill_(-200.0)  # p_gen = sigmoid(-200) = 0
        # 12 and 13: extended ids (a message's 1st and 2nd word the vocabulary lacks), copied as 12 + j
        x = torch.tensor([[4, 5, 12, 6], [7, 13, 12, 0]])
        lengths = torch.tensor([4, 3])
        out = model(x, torch.tensor([[1, 4], [1, 12]]), lengths)  # [2, 2, V + S]
        weights = model.last_attention  # [2, 2, S]
    want = torch.zeros(2, 2, vocab + 4)
    for b in range(2):
        for s in range(int(lengths[b])):
            i = int(x[b, s])
            want[b, :, mapping[i] if i < vocab else i] += weights[b, :, s]
    assert torch.allclose(out.exp(), want, atol=1e-6)
    assert float(out.exp()[1, :, 0].sum()) < 1e-6  # the padding copies nothing


@pytest.mark.parametrize("copy", [True, False])
def test_a_copy_model_learns_to_repeat_the_message_in_a_few_dozen_steps(copy):
    """Reply = message over 196 words: 40 steps of 32 pairs see each word ~25 times, which the
    pointer needs (attend to position t, copy) and the vocabulary softmax does not."""
    model = _model(copy)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    for _ in range(40):
        x, y_in, y = _pairs(g, 32)
        out = model(x, y_in)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    x, _, y = _pairs(g, 64)
    out, _ = model.eval().generate(x, 5)
    exact = float((out == y).all(1).float().mean())
    if copy:
        assert exact >= 0.95
    else:
        assert exact <= 0.2


def test_the_option_is_checked():
    base = dict(topology="encoder_decoder", layers=[LayerSpec("gru", 8)], decoder_layers=[LayerSpec("gru", 8)])
    with pytest.raises(SpecError, match="model.copy.*attention"):
        validate_model(ModelSpec(**base, attention=False, copy=True))
    with pytest.raises(SpecError, match="model.copy"):
        validate_model(ModelSpec(topology="many_to_many", copy=True))
    with pytest.raises(SpecError, match="model.copy.*'linear'"):
        validate_model(ModelSpec(**base, input=InputSpec(kind="linear"), attention=True, copy=True))
    io = ModelIO(input_kind="tokens", vocab_size=10, output_size=10, output_vocab_size=10)  # no source->target map
    with pytest.raises(ValueError, match="model.copy"):
        build_model(ModelSpec(**base, attention=True, copy=True), io)
    # a preset from before the option: copy off
    raw = Preset().to_dict()
    raw["model"].pop("copy", None)
    assert Preset.from_dict(raw).model.copy is False


def test_onnx_exports_a_copy_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from workbench.export import onnx as wx

    model = _model(vocab=30).eval()
    wx.export_model(model, tmp_path / "copy.onnx")
    paths = wx.graph_paths(tmp_path / "copy.onnx", "encoder_decoder")
    for length in (4, 7):  # the output's extended ids (V + S) follow the source's length S
        x, y_in, _ = _pairs(torch.Generator().manual_seed(2), 2, vocab=30, length=length)
        x[0, 1] = x[1, 0] = 30  # extended ids: words the vocabulary lacks
        y_in[0, 2] = 30  # the decoder reads an extended id it wrote as <unk>
        lengths = torch.tensor([length, length - 1])
        enc_s = ort.InferenceSession(str(paths["encoder"]))
        enc = dict(zip([o.name for o in enc_s.get_outputs()],
                       enc_s.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})))
        dec_s = ort.InferenceSession(str(paths["decoder"]))
        feeds = {"y_in": y_in.numpy(), "memory": enc["memory"], "lengths": lengths.numpy(),
                 **{k: v for k, v in enc.items() if k.startswith("state_")}}
        logits = dec_s.run(["logits"], feeds)[0]
        with torch.no_grad():
            want = model(x, y_in, lengths)
        assert want.shape[-1] == 30 + length
        assert torch.allclose(torch.from_numpy(logits), want, atol=1e-4)
