"""Tiny models built straight from ModelSpec + ModelIO (no task, no training)."""
from __future__ import annotations

import torch

from workbench import cells
from workbench.cells import conv
from workbench.engine.model import build_model
from workbench.spec import InputSpec, LayerSpec, ModelIO, ModelSpec, validate_model

SEQUENCE_KINDS = ("embedding", "linear", "frames_linear", "frames_conv", "embedding_chars")
SINGLE_KINDS = ("embedding", "linear", "frames_linear", "frames_conv")
TOPOLOGIES = ("many_to_one", "many_to_many", "encoder_decoder", "encoder_decoder_attention", "one_to_many")


def io_for(kind: str, topology: str) -> ModelIO:
    io = ModelIO(output_size=6, output_vocab_size=9, pad_id=0, bos_id=1, eos_id=2)
    single = topology == "one_to_many"
    if kind in ("embedding", "embedding_chars"):
        io.input_kind = "class" if single else "tokens"
        io.vocab_size = 11
        if kind == "embedding_chars":
            io.char_vocab_size = 7
    elif kind == "linear":
        io.input_kind = "vector" if single else "features"
        io.feature_size = 3
    else:
        io.input_kind = "image" if single else "frames"
        io.frame_shape = (2, 6, 5)
    return io


def tiny(cell: str, topology: str, kind: str, seed: int = 0, head_hidden: int = 0):
    """A small model of this cell and topology (bidirectional layers where allowed)."""
    attention = topology == "encoder_decoder_attention"
    topo = "encoder_decoder" if attention else topology
    inp = InputSpec(kind=kind, embedding_dim=5, projection_size=4, conv_channels=[3])
    if kind == "embedding_chars" and hasattr(inp, "char_embedding_dim"):
        inp.char_embedding_dim = 3
    if topo == "many_to_one":
        layers = [LayerSpec(cell, 6, bidirectional=True), LayerSpec(cell, 5, bidirectional=True)]
    elif topo == "many_to_many":
        layers = [LayerSpec(cell, 6, bidirectional=True), LayerSpec(cell, 5)]
    elif topo == "encoder_decoder":
        layers = [LayerSpec(cell, 6, bidirectional=True)]
    else:
        layers = [LayerSpec(cell, 6), LayerSpec(cell, 5)]
    decoder = [LayerSpec(cell, 7), LayerSpec(cell, 6)] if topo == "encoder_decoder" else []
    # the bridge's layer norm where there is a bridge, except the plain encoder-decoder (both kinds exported)
    spec = ModelSpec(topology=topo, input=inp, layers=layers, decoder_layers=decoder, attention=attention,
                     bridge_norm=topology in ("one_to_many", "encoder_decoder_attention"))
    spec.head.hidden_size = head_hidden
    spec.head.kind = "classification"
    validate_model(spec)
    torch.manual_seed(seed)
    return build_model(spec, io_for(kind, topo)).eval()


def cases():
    """(cell, topology, input kind): every cell x topology, the input kinds rotated so
    each kind appears under every topology that takes it."""
    out = []
    for t_index, topology in enumerate(TOPOLOGIES):
        kinds = SINGLE_KINDS if topology == "one_to_many" else SEQUENCE_KINDS
        # the built-ins and the scan cells; the frames-only conv cells: tests/engine/test_conv_cells.py
        for c_index, cell in enumerate(n for n in cells.names() if not conv.is_spatial(n)):
            out.append((cell, topology, kinds[(c_index + t_index) % len(kinds)]))
    return out
