"""ONNX export of a trained RecurrentModel, for onnxruntime and every other ONNX tool.

One graph where the topology reads its whole input at once; two where it generates:

  many_to_one      FILE                    x [B, T, ...], lengths [B] -> output [B, O]
  many_to_many     FILE                    x [B, T, ...] [, lengths [B]] -> output [B, T, O]
                                           (lengths when a layer is bidirectional)
  encoder_decoder  STEM.encoder.onnx       x [B, S, ...], lengths [B] -> [memory [B, S, He],] state_*
                   STEM.decoder.onnx       y_in [B, L], state_* [, memory, lengths]
                                           -> logits [B, L, O], next_state_* [, attention [B, L, S]]
                                           (a copy model, model.copy: memory [B, S, He + 1], its last
                                           channel the source's output ids; logits [B, L, O + S] are
                                           the copy mixture's log-probabilities, ids O + j the
                                           source's j-th word outside the vocabulary: x may hold
                                           extended ids, vocab_size + j, which the encoder reads
                                           as <unk> and the copy writes as O + j; y_in ids >= O
                                           are read as <unk>; the caller maps O + j back to the word)
  one_to_many      STEM.init.onnx          x (one item: [B] class, [B, F] vector, [B, C, H, W] image) -> state_*
                   STEM.step.onnx          y_in [B, L], state_* -> logits [B, L, O], next_state_*

A many-to-many model over convolutional cells (workbench.cells.conv: a Python loop of
convolutions per step, which no fused ONNX op carries) is exported as a one-frame step
graph instead: FILE  x [B, 1, C, H, W], state_* -> output [B, 1, O], next_state_*; run it
frame by frame, feeding next_state_* back (zeros to start), as next-frame rollouts do;
with model.head.extrapolate it also takes previous_frame [B, C, H, W] (the first frame
itself to start) and returns next_previous_frame (x's frame) to feed back.

B, T, S and L are dynamic. The decoder/step graph takes any L: the whole teacher-forced
target at once, or L = 1 per step of a greedy/sampled decoding loop that feeds
next_state_* back as state_* (start from bos_id; stop at eos_id). state_* are the
initial states of each recurrent layer, [1, B, H] each, one per state its cell carries
(workbench.cells: Cell.states): state_{i}_h, and for an LSTM layer also state_{i}_c. A
cell without an ONNX rule (a step cell's Python loop) is refused by name. A JSON
manifest (FILE + ".json") lists the graphs, their inputs and outputs, the token ids and
the preset; each graph also carries the preset in its metadata (``rnn_workbench.preset``).

Why two graphs rather than one with the decoding loop: the traced step graph runs the
same fused ONNX RNN/LSTM/GRU ops as the sequence graphs and is checked against PyTorch
step for step; a scripted loop would tie the decoding policy (greedy, sampling, beam,
max length) into the file. The exporter is torch.onnx's TorchScript one (dynamo=False):
it maps each nn.RNN/LSTM/GRU to the ONNX op of the same name with dynamic batch and time.
"""
from __future__ import annotations

import dataclasses
import io
import json
import warnings
from pathlib import Path

import torch
from torch import nn

from workbench import cells
from workbench.cells import conv as conv_cells
from workbench.engine.model import RecurrentModel, summarise
from workbench.fileio import atomic_write_bytes, atomic_write_text

OPSET = 17
GRAPH_SUFFIXES = {"encoder_decoder": ("encoder", "decoder"), "one_to_many": ("init", "step")}


class ExportError(ValueError):
    """The model cannot be exported as asked; the message says why."""


# ----------------------------------------------------------------------------- states


def _states(cell: str) -> tuple[str, ...]:
    return cells.get(cell).states  # ("h",) or ("h", "c")


def state_names(layer_cells: list[str], prefix: str = "state") -> list[str]:
    return [f"{prefix}_{i}_{s}" for i, cell in enumerate(layer_cells) for s in _states(cell)]


def _flatten(states: list, layer_cells: list[str]) -> list[torch.Tensor]:
    flat = []
    for state, cell in zip(states, layer_cells):
        flat.extend(state if len(_states(cell)) > 1 else (state,))
    return flat


def _unflatten(flat, layer_cells: list[str]) -> list:
    states, i = [], 0
    for cell in layer_cells:
        k = len(_states(cell))
        states.append(tuple(flat[i:i + k]) if k > 1 else flat[i])
        i += k
    return states


def frame_steps(model: RecurrentModel) -> bool:
    """Whether the model exports as a one-frame step graph (convolutional cells)."""
    return any(conv_cells.is_spatial(layer.cell) for _name, layer, _rnn in model.recurrent_layers())


def check_exportable(model: RecurrentModel) -> None:
    """ExportError naming the first layer whose cell has no ONNX rule (workbench.cells)."""
    spatial = frame_steps(model)
    for name, layer, _rnn in model.recurrent_layers():
        if spatial and conv_cells.is_spatial(layer.cell):
            if model.topology != "many_to_many" or layer.bidirectional:
                raise ExportError(f"model.{name}.cell: the {layer.cell!r} cell is exported as a one-frame step "
                                  f"graph, which needs a unidirectional many-to-many model")
            continue
        rule = cells.get(layer.cell).onnx
        if not (rule.native or rule.loop):
            raise ExportError(f"model.{name}.cell: the {layer.cell!r} cell is not exported to ONNX ({rule.reason})")


# ----------------------------------------------------------------------------- graph modules


class SequenceGraph(nn.Module):
    """many_to_one / many_to_many: the model's own forward."""

    def __init__(self, model: RecurrentModel):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(x, None, lengths)


class EncoderGraph(nn.Module):
    """encoder_decoder, part 1: the source -> (memory for attention,) decoder initial states."""

    def __init__(self, model: RecurrentModel):
        super().__init__()
        self.model = model
        self.cells = [l.cell for l in model.spec.decoder_layers]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        m = self.model
        feats = m.encode_input(x)
        enc, _ = m.encoder(feats, align=m.encoder.alignment(feats, lengths))  # [B, S, He]
        states = m.bridge(summarise(enc, m.spec.layers[-1].bidirectional, lengths))
        flat = _flatten(states, self.cells)
        memory = m.memory(enc, x)  # a copy model's carries the source's output ids: [B, S, He + 1]
        return (memory, *flat) if m.attention_in is not None else tuple(flat)


class StepGraph(nn.Module):
    """The generator, from given states: y_in [B, L] -> logits [B, L, O] and the states
    after the last step (encoder_decoder's decoder, or one_to_many's stack)."""

    def __init__(self, model: RecurrentModel):
        super().__init__()
        self.model = model
        self.stack = model.decoder if model.topology == "encoder_decoder" else model.encoder
        self.cells = [l.cell for l in self.stack.specs]
        self.attention = model.attention_in is not None
        self.n_states = len(state_names(self.cells))

    def forward(self, y_in: torch.Tensor, *rest: torch.Tensor):
        m = self.model
        initial = _unflatten(rest[: self.n_states], self.cells)
        emb = m.embed_target(y_in)  # [B, L, E]
        out, finals = self.stack(emb, initial)  # [B, L, H]
        if self.attention:
            memory, lengths = rest[self.n_states], rest[self.n_states + 1]
            logits, weights = m.predict(out, emb, memory, lengths)  # a copy model's: log-probabilities
            return (logits, *_flatten(finals, self.cells), weights)
        return (m.head(out), *_flatten(finals, self.cells))


class FrameStepGraph(nn.Module):
    """many_to_many over convolutional cells: one frame and the states -> the output and
    the states after it (see the module docstring)."""

    def __init__(self, model: RecurrentModel):
        super().__init__()
        self.model = model
        self.cells = [l.cell for l in model.spec.layers]

    def forward(self, x: torch.Tensor, *states: torch.Tensor):
        if self.model.extrapolate:  # the last input is the frame before x (model.head.extrapolate)
            states, previous = states[:-1], states[-1]
            out, finals = self.model(x, initial_states=_unflatten(states, self.cells), return_states=True,
                                     previous_frame=previous)
            return (out, *_flatten(finals, self.cells), x[:, -1])
        out, finals = self.model(x, initial_states=_unflatten(states, self.cells), return_states=True)
        return (out, *_flatten(finals, self.cells))


class InitGraph(nn.Module):
    """one_to_many, part 1: the single input item -> the generator's initial states."""

    def __init__(self, model: RecurrentModel):
        super().__init__()
        self.model = model
        self.cells = [l.cell for l in model.spec.layers]

    def forward(self, x: torch.Tensor):
        return tuple(_flatten(self.model.bridge(self.model.encode_input(x)), self.cells))


# ----------------------------------------------------------------------------- example inputs


def example_input(model: RecurrentModel, batch: int = 2, steps: int = 5, generator: torch.Generator | None = None):
    """A random input of the model's input kind: (x, x's dynamic axes, description)."""
    io_, spec = model.io, model.spec
    g = generator or torch.Generator().manual_seed(0)
    kind = spec.input.kind
    single = model.topology == "one_to_many"
    lead = (batch,) if single else (batch, steps)
    axes = {0: "batch"} if single else {0: "batch", 1: "time"}
    if kind == "embedding":
        x = torch.randint(0, max(io_.vocab_size, 1), lead, generator=g)
        return x, axes, "int64 token ids" if not single else "int64 class ids"
    if kind == "embedding_chars":
        chars = 4
        words = torch.randint(0, max(io_.vocab_size, 1), (*lead, 1), generator=g)
        ids = torch.randint(0, max(io_.char_vocab_size, 1), (*lead, chars), generator=g)
        axes = {**axes, len(lead): "chars"}
        return torch.cat([words, ids], dim=-1), axes, "int64 [word id, char ids...] per step (0 = padding)"
    if kind == "linear":
        return torch.randn(*lead, io_.feature_size, generator=g), axes, "float32 features"
    c, h, w = io_.frame_shape
    return torch.rand(*lead, c, h, w, generator=g), axes, "float32 frames (C, H, W)"


def _x_shape_text(model: RecurrentModel, axes: dict) -> list:
    x, _, _ = example_input(model, 1, 1)
    shape: list = list(x.shape)
    for dim, name in axes.items():
        shape[dim] = name
    return shape


# ----------------------------------------------------------------------------- export


@dataclasses.dataclass
class GraphSpec:
    role: str  # "model", "encoder", "decoder", "init", "step"
    module: nn.Module
    args: tuple
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]


def graph_specs(model: RecurrentModel) -> list[GraphSpec]:
    """The graphs this model's topology exports into, with example inputs."""
    check_exportable(model)
    model.eval()
    topo = model.topology
    B, T, L = 2, 5, 3  # distinct sizes, so no dimension can pass for another while tracing
    x, x_axes, _ = example_input(model, B, T)
    lengths = torch.tensor([T, T - 2], dtype=torch.long)
    if frame_steps(model):
        step = FrameStepGraph(model)
        names = state_names(step.cells)
        x1 = x[:, :1]
        with torch.no_grad():
            _, finals = model(x1, return_states=True)
        states = tuple(torch.rand_like(s) * 0.5 for s in _flatten(finals, step.cells))  # [1, B, H] each
        next_names = ["next_" + n for n in names]
        axes = {"x": {0: "batch"}, "output": {0: "batch"}, **{n: {1: "batch"} for n in names},
                **{n: {1: "batch"} for n in next_names}}
        if model.extrapolate:  # the frame before x [B, C, H, W] in, x's frame out
            states = (*states, torch.rand_like(x1[:, 0]))
            names, next_names = [*names, "previous_frame"], [*next_names, "next_previous_frame"]
            axes.update({"previous_frame": {0: "batch"}, "next_previous_frame": {0: "batch"}})
        return [GraphSpec("model", step, (x1, *states), ["x", *names], ["output", *next_names], axes)]
    if topo == "many_to_one":
        return [GraphSpec("model", SequenceGraph(model), (x, lengths), ["x", "lengths"], ["output"],
                          {"x": x_axes, "lengths": {0: "batch"}, "output": {0: "batch"}})]
    if topo == "many_to_many":
        if model.encoder.bidirectional:  # the reverse direction must know where each row ends
            return [GraphSpec("model", SequenceGraph(model), (x, lengths), ["x", "lengths"], ["output"],
                              {"x": x_axes, "lengths": {0: "batch"}, "output": {0: "batch", 1: "time"}})]
        return [GraphSpec("model", SequenceGraph(model), (x,), ["x"], ["output"],
                          {"x": x_axes, "output": {0: "batch", 1: "time"}})]
    y_in = torch.randint(0, max(model.io.output_vocab_size, 1), (B, L))
    step = StepGraph(model)
    names = state_names(step.cells)
    batch_axes = {n: {1: "batch"} for n in names}
    next_names = ["next_" + n for n in names]
    with torch.no_grad():
        if topo == "encoder_decoder":
            enc = EncoderGraph(model)
            enc_out = enc(x, lengths)
            attention = model.attention_in is not None
            enc_names = (["memory"] if attention else []) + names
            specs = [GraphSpec("encoder", enc, (x, lengths), ["x", "lengths"], enc_names,
                               {"x": x_axes, "lengths": {0: "batch"}, "memory": {0: "batch", 1: "source_time"},
                                **batch_axes})]
            states = tuple(enc_out[1:]) if attention else tuple(enc_out)
            args = (y_in, *states) + ((enc_out[0], lengths) if attention else ())
            inputs = ["y_in", *names] + (["memory", "lengths"] if attention else [])
            outputs = ["logits", *next_names] + (["attention"] if attention else [])
            axes = {"y_in": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}, **batch_axes,
                    **{n: {1: "batch"} for n in next_names}}
            if attention:
                axes.update({"memory": {0: "batch", 1: "source_time"}, "lengths": {0: "batch"},
                             "attention": {0: "batch", 1: "time", 2: "source_time"}})
            specs.append(GraphSpec("decoder", step, args, inputs, outputs, axes))
            return specs
        # one_to_many
        init = InitGraph(model)
        states = init(x)
        return [GraphSpec("init", init, (x,), ["x"], names, {"x": x_axes, **batch_axes}),
                GraphSpec("step", step, (y_in, *states), ["y_in", *names], ["logits", *next_names],
                          {"y_in": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}, **batch_axes,
                           **{n: {1: "batch"} for n in next_names}})]


def graph_paths(path: str | Path, topology: str) -> dict[str, Path]:
    """role -> file: FILE itself for one graph, STEM.<role>.onnx for two."""
    path = Path(path)
    if topology not in GRAPH_SUFFIXES:
        return {"model": path}
    stem = path.with_suffix("") if path.suffix == ".onnx" else path
    return {role: stem.with_name(f"{stem.name}.{role}.onnx") for role in GRAPH_SUFFIXES[topology]}


def graph_bytes(g: GraphSpec, opset: int = OPSET, metadata: dict[str, str] | None = None) -> bytes:
    """Trace one graph to ONNX bytes (fp32, eval mode) with its metadata."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns about itself and about traced shape arithmetic
        # that the dynamic axes cover; the tests check the graphs at other shapes.
        warnings.simplefilter("ignore")
        torch.onnx.export(g.module, g.args, buffer, dynamo=False, input_names=g.input_names,
                          output_names=g.output_names, dynamic_axes=g.dynamic_axes, opset_version=opset,
                          do_constant_folding=True)
    data = buffer.getvalue()
    if metadata:
        try:
            import onnx
        except ImportError:
            return data
        proto = onnx.load_from_string(data)
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        data = proto.SerializeToString()
    return data


def export_model(model: RecurrentModel, path: str | Path, preset=None, opset: int = OPSET) -> list[Path]:
    """Write the model's graph(s) and FILE.json; returns the files written."""
    model = model.float().eval()
    if any(p.device.type != "cpu" for p in model.parameters()):
        model = model.cpu()
    topo = model.topology
    paths = graph_paths(path, topo)
    io_meta = json.dumps(dataclasses.asdict(model.io))
    written: list[Path] = []
    graphs = []
    for g in graph_specs(model):
        meta = {"rnn_workbench.graph": g.role, "rnn_workbench.topology": topo, "rnn_workbench.io": io_meta}
        if preset is not None:
            meta["rnn_workbench.preset"] = preset.to_json()
        data = graph_bytes(g, opset, meta)
        atomic_write_bytes(paths[g.role], data)
        written.append(paths[g.role])
        graphs.append({"role": g.role, "file": paths[g.role].name, "inputs": g.input_names,
                       "outputs": g.output_names})
    _, x_axes, x_text = example_input(model, 1, 1)
    manifest = {
        "format": "rnn-workbench-onnx", "opset": opset, "topology": topo, "graphs": graphs,
        "x": {"shape": _x_shape_text(model, x_axes), "meaning": x_text},
        "state_shape": [1, "batch", "hidden_size"],
        "io": dataclasses.asdict(model.io),
        "decoding": ({"bos_id": model.io.bos_id, "eos_id": model.io.eos_id, "pad_id": model.io.pad_id,
                      "how": "run the first graph once; then feed y_in [B, 1] (start: bos_id) and the states "
                             "to the second graph, take argmax (or sample) of logits[:, -1], and feed "
                             "next_state_* back as state_*, until eos_id"}
                     if topo in GRAPH_SUFFIXES else None),
        "frame_steps": ({"how": "one frame at a time: x [B, 1, C, H, W] and state_* (zeros for the first "
                                "frame) -> output [B, 1, O] and next_state_*, fed back as state_* for the next "
                                "frame" + ("; previous_frame [B, C, H, W] is the frame before x (the first "
                                           "frame itself to start: no motion), fed from "
                                           "next_previous_frame" if model.extrapolate else "")}
                       if frame_steps(model) else None),
        "preset": json.loads(preset.to_json()) if preset is not None else None,
    }
    manifest_path = Path(str(Path(path)) + ".json") if Path(path).suffix == ".onnx" else Path(path).with_suffix(".json")
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    written.append(manifest_path)
    return written


def export_run(run_dir: str | Path, path: str | Path, opset: int = OPSET) -> list[Path]:
    """`workbench export RUN_DIR --onnx FILE`: the run's trained model as ONNX."""
    from workbench.export.runfolder import load_run

    run = load_run(run_dir)
    return export_model(run.model, path, preset=run.preset, opset=opset)
