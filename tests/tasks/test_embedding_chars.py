"""The 'embedding_chars' input: word embedding + char-CNN per word. Its parameter
count is the spec's, padding characters never matter, padded words get finite zeros."""
from __future__ import annotations

import pytest
import torch

from workbench.engine.model import build_model
from workbench.spec import InputSpec, LayerSpec, ModelIO, ModelSpec, SpecError, parameter_report, validate_model


def _spec(topology: str = "many_to_many") -> ModelSpec:
    decoder = [LayerSpec(cell="gru", hidden_size=5)] if topology == "encoder_decoder" else []
    return ModelSpec(topology=topology, input=InputSpec(kind="embedding_chars", embedding_dim=6, projection_size=4,
                                                        char_embedding_dim=3),
                     layers=[LayerSpec(cell="lstm", hidden_size=7, bidirectional=True)], decoder_layers=decoder,
                     attention=topology == "encoder_decoder")


IO = ModelIO(input_kind="tokens", vocab_size=11, char_vocab_size=9, output_size=5, output_vocab_size=5)


@pytest.mark.parametrize("topology", ["many_to_one", "many_to_many", "encoder_decoder"])
def test_parameter_count_matches_the_spec(topology):
    spec = _spec(topology)
    model = build_model(spec, IO)
    assert parameter_report(spec, IO).total == sum(p.numel() for p in model.parameters())
    side = model.input_side
    assert parameter_report(spec, IO).input_side - (5 * 6 if topology == "encoder_decoder" else 0) == \
        sum(p.numel() for p in side.parameters())


def _words(chars_width: int) -> torch.Tensor:
    x = torch.zeros(2, 3, 1 + chars_width, dtype=torch.long)
    x[0, :, 0] = torch.tensor([4, 5, 6])
    x[0, 0, 1:4] = torch.tensor([2, 3, 4])  # a 3-letter word
    x[0, 1, 1:2] = torch.tensor([7])
    x[0, 2, 1:5] = torch.tensor([8, 8, 2, 1])
    x[1, 0, 0] = 9
    x[1, 0, 1:3] = torch.tensor([5, 6])  # row 1 is one word long, then padding
    return x


def test_padding_characters_and_padded_words_do_not_matter():
    torch.manual_seed(0)
    model = build_model(_spec(), IO).eval()
    narrow, wide = _words(4), _words(9)
    assert torch.equal(wide[..., :5], narrow)
    with torch.no_grad():
        a, b = model.input_side(narrow), model.input_side(wide)
    assert a.shape == (2, 3, 10) and torch.allclose(a, b)
    assert torch.equal(a[1, 1:, 6:], torch.zeros(2, 4))  # padded words: zero char features
    # a word's characters change only that word's vector
    changed = narrow.clone()
    changed[0, 1, 1] = 3
    with torch.no_grad():
        c = model.input_side(changed)
    assert not torch.allclose(c[0, 1], a[0, 1]) and torch.allclose(c[0, [0, 2]], a[0, [0, 2]])


def test_gradients_are_finite_with_padded_words():
    model = build_model(_spec(), IO)
    out = model(_words(4), lengths=torch.tensor([3, 1]))
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.input_side.conv.weight.grad.abs().sum() > 0


def test_one_to_many_refuses_word_inputs():
    spec = ModelSpec(topology="one_to_many", input=InputSpec(kind="embedding_chars"))
    with pytest.raises(SpecError) as info:
        validate_model(spec)
    assert info.value.field == "model.input.kind"
