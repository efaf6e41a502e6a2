"""The preset: architecture, task and training settings as plain, validated dataclasses.

This module imports neither torch nor Qt: the GUI, the CLI and the engine all read the
same spec, and validating it must be cheap enough to run on every keystroke.

A preset is one JSON file:

    {"schema_version": 1, "name": "...", "description": "...",
     "data":  {"task": "adding", "path": "", "options": {...}},
     "model": {"topology": ..., "input": {...}, "layers": [...], "decoder_layers": [...],
               "attention": false, "head": {...}, "init": {...}},
     "train": {...}}

Every error names the field by its dotted path (``model.layers.0.hidden_size``), the
same path that ``workbench train --set`` takes.

Left-out fields take their defaults (the dataclasses below): a hand-written preset may
give only what differs, and a file from an earlier release of the same schema version
still loads. That is safe because nothing else is lenient: a misspelt or unknown field
is refused by name (so a left-out field is never a typo), a wrong type or range is
refused by name, and every run folder's preset.json is the resolved preset with every
value the run used. ``schema_version`` alone is required: without it the file is not a
preset.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench import cells as _cells
from workbench.cells import conv as _conv
from workbench.errors import UserError

SCHEMA_VERSION = 1

# The recurrent cells are described in the cell registry (workbench.cells, torch-free);
# CELLS names the built-in ones (a cell registered at run time validates too).
CELLS = _cells.BUILTIN_ORDER

TOPOLOGIES = ("many_to_one", "many_to_many", "encoder_decoder", "one_to_many")
TOPOLOGY_LABELS = {
    "many_to_one": "Many-to-one",
    "many_to_many": "Many-to-many",
    "encoder_decoder": "Encoder-decoder",
    "one_to_many": "One-to-many",
}
# embedding_chars: a word embedding concatenated with a char-CNN summary of the word's
# characters (x [B, T, 1 + C] long: column 0 the word id, columns 1.. its char ids, 0 = pad).
INPUT_KINDS = ("embedding", "linear", "frames_linear", "frames_conv", "embedding_chars", "frames_grid")
CHAR_CONV_WIDTH = 3  # embedding_chars: the char-CNN's kernel width (characters)
HEAD_KINDS = ("classification", "regression")
RECURRENT_INITS = ("default", "orthogonal", "identity")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "cosine", "step")
CLIP_MODES = ("none", "norm", "value")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
NON_FINITE_ACTIONS = ("skip", "stop")

# Sizes beyond these are refused outright: they are typos, not experiments, and would
# try to allocate more memory than any single machine has.
MAX_HIDDEN = 16384
MAX_LAYERS = 32
MAX_EMBEDDING = 16384
MAX_BATCH = 65536
MAX_STEPS = 10**9


class SpecError(UserError, ValueError):
    """A preset field is missing, unknown, of the wrong type or out of range.

    ``field`` is the dotted path of the offending field ("" for the whole file)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


# ----------------------------------------------------------------------------- dataclasses


@dataclass
class LayerSpec:
    """One recurrent layer: a_t = f(W_f a_t^(l-1) + W_r a_(t-1) + b)."""

    cell: str = "lstm"
    hidden_size: int = 128
    bidirectional: bool = False
    dropout: float = 0.0  # applied to this layer's output sequence while training


@dataclass
class InputSpec:
    """How raw inputs become the vectors the first recurrent layer reads."""

    kind: str = "embedding"
    embedding_dim: int = 64  # embedding: size of each token vector
    projection_size: int = 64  # linear / frames_linear: output size of the projection
    conv_channels: list[int] = field(default_factory=lambda: [16, 32])  # frames_conv
    # embedding_chars: size of each character vector; the char-CNN has projection_size
    # filters, so the word's vector is embedding_dim + projection_size wide.
    char_embedding_dim: int = 16


@dataclass
class HeadSpec:
    kind: str = "classification"
    # A hidden layer between the recurrent stack and the output (0 = none).
    hidden_size: int = 0
    # Frames in, frames out (next-frame prediction): the head predicts the change from the
    # frame just read, output_t = x_t + s * head(h_t), with the head's last layer initialised
    # to zero, so an untrained model copies the last frame exactly and learns the motion;
    # s is the training frames' typical change (ModelIO.delta_scale), so the head's output
    # is in units of the footage's own motion.
    residual: bool = False
    # With the residual head: add a learned linear extrapolation of the last motion,
    # output_t = x_t + alpha * (x_t - x_{t-1}) + s * head(h_t), alpha one learned number per
    # colour channel starting at 0 (so an untrained model still copies the last frame); for
    # the first frame of a sequence x_{t-1} is unknown and the term is 0. The network then
    # learns what a constant-velocity guess misses (engine/model.py: RecurrentModel.extrapolation).
    # Without model.head.residual it does nothing (there is no copy of the frame to extrapolate).
    extrapolate: bool = False


@dataclass
class InitSpec:
    recurrent: str = "default"
    # LSTM forget-gate bias (Gers et al. 2000; Jozefowicz et al. 2015). Set on both
    # bias vectors' forget block so that their sum is this value.
    forget_bias: float = 1.0
    # If set, recurrent matrices are rescaled to this spectral radius after init
    # (>1 makes gradients explode through time, <1 makes them vanish).
    spectral_radius: float | None = None
    # LRU layers: their eigenvalues' moduli start uniformly (in area) on the ring
    # lru_r_min <= |lambda| <= lru_r_max (Orvieto et al. 2023; near 1 for long memory)
    lru_r_min: float = 0.0
    lru_r_max: float = 1.0


@dataclass
class ModelSpec:
    topology: str = "many_to_one"
    input: InputSpec = field(default_factory=InputSpec)
    layers: list[LayerSpec] = field(default_factory=lambda: [LayerSpec()])
    # encoder_decoder only: the decoder stack (layers above is the encoder).
    decoder_layers: list[LayerSpec] = field(default_factory=list)
    # encoder_decoder only: Luong (dot-product) attention over the encoder states.
    attention: bool = False
    # encoder_decoder with attention over token ids only: a copy mechanism (pointer-generator,
    # See et al. 2017): the output mixes the vocabulary distribution with the attention over
    # the source's tokens, p(w) = p_gen p_vocab(w) + (1 - p_gen) sum_i a_i [src_i = w], so a
    # reply can repeat a word of the message (engine/model.py, RecurrentModel.predict).
    # Off by default: a run folder from before this field loads unchanged.
    copy: bool = False
    # one_to_many / encoder_decoder: layer-normalise the vector that sets the generator's
    # initial states (tanh(W v) of a vector far from unit scale saturates; see
    # StateBridge). Off by default: a run folder from before this field keeps its bridge.
    bridge_norm: bool = False
    # convolutional cells (conv_lstm, conv_gru) and the head over them: the side of every
    # convolution's kernel (odd, 'same' padding). Small kernels learn motion pixel by pixel
    # and generalise from a short clip; large ones see further but fit a short clip's
    # particulars (BENCHMARKS.md, next-frame prediction).
    conv_kernel: int = _conv.KERNEL
    head: HeadSpec = field(default_factory=HeadSpec)
    init: InitSpec = field(default_factory=InitSpec)


@dataclass
class DataSpec:
    task: str = "adding"
    # Empty: the task's built-in generated data (or default corpus). Else a user's file.
    path: str = ""
    # Task-specific settings, validated by the task itself (see workbench.tasks).
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainSpec:
    steps: int = 1000  # optimizer steps (the budget); epochs, if set, caps it
    epochs: int = 0  # 0: run for `steps`; >0: stop after this many passes over the data (endless generated data: no cap)
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # sgd momentum / rmsprop momentum
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    step_size: int = 1000  # schedule "step": decay every this many steps
    gamma: float = 0.5  # schedule "step": multiply the lr by this
    clip: str = "norm"
    clip_value: float = 1.0
    tbptt: int = 0  # truncated BPTT chunk length for long streams (0 = full sequence)
    eval_every: int = 100
    eval_batches: int = 10
    probe_every: int = 50  # exact dL/dh_t probe rate in steps (0 = off)
    dynamics: bool = True  # after each probe, the Dynamics record (Jacobians, spectra, gates; engine/dynamics.py)
    log_every: int = 1
    checkpoint_every: int = 0  # 0 = only at the end
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    on_non_finite: str = "skip"
    num_threads: int = 0  # torch CPU threads; 0 = automatic


@dataclass
class Preset:
    name: str = "untitled"
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    schema_version: int = SCHEMA_VERSION

    # -- conversions ---------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, raw: Any) -> Preset:
        if not isinstance(raw, dict):
            raise SpecError("", f"a preset must be a JSON object, not {_type_name(raw)}")
        version = raw.get("schema_version", None)
        if version is None:
            raise SpecError("schema_version", "missing (this file is not a workbench preset)")
        if version != SCHEMA_VERSION:
            raise SpecError(
                "schema_version",
                f"version {version!r} is not supported (this workbench reads version {SCHEMA_VERSION})",
            )
        preset = _from_raw(cls, raw, "")
        validate(preset)
        return preset

    def copy(self) -> Preset:
        return copy.deepcopy(self)


# ----------------------------------------------------------------------------- parsing


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _from_raw(tp, value, path)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is list:
        if not isinstance(value, list):
            raise SpecError(path, f"expected a list, got {_type_name(value)}")
        return [_coerce(args[0], v, f"{path}.{i}") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpecError(path, f"expected an object, got {_type_name(value)}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(path, f"expected true or false, got {_type_name(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SpecError(path, f"expected a whole number, got {_type_name(value)} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, f"expected a number, got {_type_name(value)} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise SpecError(path, f"must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise SpecError(path, f"expected text, got {_type_name(value)}")
        return value
    raise TypeError(f"unsupported annotation {tp!r} at {path}")  # a bug in this module


def _from_raw(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise SpecError(prefix, f"expected an object, got {_type_name(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise SpecError(_join(prefix, unknown[0]), f"unknown field (known fields here: {known})")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, _join(prefix, name))
    return cls(**kwargs)


# ----------------------------------------------------------------------------- validation


def _choice(path: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(path, f"{value!r} is not one of: {', '.join(choices)}")


def _int_range(path: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise SpecError(path, f"must be between {lo} and {hi}, got {value}")


def _float_range(path: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
    if value < lo or value > hi or (lo_open and value == lo):
        bracket = "(" if lo_open else "["
        raise SpecError(path, f"must be in {bracket}{lo}, {hi}], got {value}")


def max_hidden_size(cell: str) -> int:
    """The largest hidden_size a layer of ``cell`` accepts: a vector cell's width, or a
    convolutional cell's whole state (maps x frame height x width: 8 maps of 64x64 frames
    are 32,768). A typo guard only; whether a size fits is the memory estimate's to say
    (memory_estimate, engine/resources.py)."""
    return _conv.MAX_STATE if _conv.is_spatial(cell) else MAX_HIDDEN


def _validate_layers(layers: list[LayerSpec], prefix: str, allow_bidirectional: bool, why_not: str) -> None:
    if not layers:
        raise SpecError(prefix, "needs at least one recurrent layer")
    _int_range(prefix, len(layers), 1, MAX_LAYERS)
    for i, layer in enumerate(layers):
        p = f"{prefix}.{i}"
        _choice(f"{p}.cell", layer.cell, _cells.names())
        _int_range(f"{p}.hidden_size", layer.hidden_size, 1, max_hidden_size(layer.cell))
        _float_range(f"{p}.dropout", layer.dropout, 0.0, 0.95)
        if layer.bidirectional and not allow_bidirectional:
            raise SpecError(f"{p}.bidirectional", why_not)


def _validate_spatial(model: ModelSpec) -> None:
    """Convolutional cells (workbench.cells.conv) read feature maps: frames as they are
    ('frames_grid') or the layer below's maps; they sit at the bottom of the stack."""
    for i, layer in enumerate(model.layers):
        if not _conv.is_spatial(layer.cell):
            continue
        if i == 0 and model.input.kind != "frames_grid":
            raise SpecError("model.layers.0.cell", f"the {layer.cell!r} cell convolves frames: it needs "
                            f"model.input.kind 'frames_grid' (the frames as they are), not {model.input.kind!r}")
        if i > 0 and not _conv.is_spatial(model.layers[i - 1].cell):
            raise SpecError(f"model.layers.{i}.cell", f"the {layer.cell!r} cell convolves feature maps: the layer "
                            f"below it must be convolutional too (conv_lstm or conv_gru)")
    for i, layer in enumerate(model.decoder_layers):
        if _conv.is_spatial(layer.cell):
            raise SpecError(f"model.decoder_layers.{i}.cell", f"the {layer.cell!r} cell reads frames: a decoder "
                            f"reads tokens")
    k = model.conv_kernel
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= _conv.MAX_KERNEL or k % 2 == 0:
        raise SpecError("model.conv_kernel", f"must be an odd whole number from 1 to {_conv.MAX_KERNEL} (the "
                        f"convolutions pad by half of it to keep the frame's size), got {k!r}")


def validate_model(model: ModelSpec) -> None:
    _choice("model.topology", model.topology, TOPOLOGIES)
    inp = model.input
    _choice("model.input.kind", inp.kind, INPUT_KINDS)
    _int_range("model.input.embedding_dim", inp.embedding_dim, 1, MAX_EMBEDDING)
    _int_range("model.input.projection_size", inp.projection_size, 1, MAX_EMBEDDING)
    _int_range("model.input.char_embedding_dim", inp.char_embedding_dim, 1, MAX_EMBEDDING)
    if inp.kind == "embedding_chars" and model.topology == "one_to_many":
        raise SpecError("model.input.kind", "a one-to-many model reads one item per row, not a sequence of "
                        "words: 'embedding_chars' needs a sequence input")
    if inp.kind == "frames_conv":
        if not 1 <= len(inp.conv_channels) <= 6:
            raise SpecError("model.input.conv_channels", "needs between 1 and 6 conv layers")
        for i, c in enumerate(inp.conv_channels):
            _int_range(f"model.input.conv_channels.{i}", c, 1, 1024)
    _validate_spatial(model)
    generator = model.topology == "one_to_many"
    _validate_layers(
        model.layers, "model.layers", allow_bidirectional=not generator,
        why_not="a one-to-many generator produces its sequence step by step, so it cannot "
                "read the future: bidirectional layers are not possible here",
    )
    if model.topology == "encoder_decoder":
        _validate_layers(
            model.decoder_layers, "model.decoder_layers", allow_bidirectional=False,
            why_not="the decoder generates its output step by step, so it cannot read the "
                    "future: use bidirectional layers in the encoder (model.layers) instead",
        )
    elif model.decoder_layers:
        raise SpecError("model.decoder_layers", "only an encoder-decoder has decoder layers; "
                        f"a {TOPOLOGY_LABELS[model.topology].lower()} model uses model.layers only")
    if model.attention and model.topology != "encoder_decoder":
        raise SpecError("model.attention", "attention over encoder states needs the encoder-decoder topology")
    if model.copy and not (model.topology == "encoder_decoder" and model.attention):
        raise SpecError("model.copy", "copying source words needs an encoder-decoder with attention "
                                      "(model.attention): the copy distribution is the attention")
    if model.copy and inp.kind != "embedding":
        raise SpecError("model.copy", "copying source words needs token ids in (model.input.kind 'embedding'), "
                                      f"not {inp.kind!r}")
    _choice("model.head.kind", model.head.kind, HEAD_KINDS)
    _int_range("model.head.hidden_size", model.head.hidden_size, 0, MAX_HIDDEN)
    if model.head.residual:
        if model.head.kind != "regression" or model.topology != "many_to_many" or \
                not inp.kind.startswith("frames"):
            raise SpecError("model.head.residual", "the residual head adds each input frame to the output for the "
                            "same step: it needs frames in (frames_linear/frames_conv), the many-to-many topology "
                            "and the 'regression' head")
    _choice("model.init.recurrent", model.init.recurrent, RECURRENT_INITS)
    _float_range("model.init.forget_bias", model.init.forget_bias, -20.0, 20.0)
    if model.init.spectral_radius is not None:
        _float_range("model.init.spectral_radius", model.init.spectral_radius, 0.0, 100.0, lo_open=True)
    _float_range("model.init.lru_r_min", model.init.lru_r_min, 0.0, 1.0)
    _float_range("model.init.lru_r_max", model.init.lru_r_max, 0.0, 1.0)
    if model.init.lru_r_min > model.init.lru_r_max:
        raise SpecError("model.init.lru_r_min", f"must not exceed model.init.lru_r_max ({model.init.lru_r_max}), "
                        f"got {model.init.lru_r_min}")
    without = [l.cell for l in model.layers + model.decoder_layers if not _has_recurrent_matrix(l.cell)]
    if without and (model.init.recurrent != "default" or model.init.spectral_radius is not None):
        field = "model.init.recurrent" if model.init.recurrent != "default" else "model.init.spectral_radius"
        if _conv.is_spatial(without[0]):
            raise SpecError(field, f"{_cells.get(without[0]).label} layers' recurrent weights are convolution "
                            "kernels, not a matrix: nothing to make orthogonal, the identity or of a spectral "
                            "radius; use 'default'")
        raise SpecError(field, f"{_cells.get(without[0]).label} layers have no recurrent matrix (their "
                        "recurrence is elementwise and linear), so there is nothing to make orthogonal, "
                        "the identity or of a spectral radius; use 'default' (the LRU's ring: "
                        "model.init.lru_r_min, lru_r_max)")
    if model.init.recurrent == "identity":
        if not all(_cells.get(l.cell).identity_init for l in model.layers + model.decoder_layers):
            raise SpecError("model.init.recurrent", "identity recurrent weights (IRNN) are defined for "
                            "vanilla RNN layers only; use 'orthogonal' for LSTM or GRU")


def _has_recurrent_matrix(cell: str) -> bool:
    """Whether the cell has an [G*H, H] W_hh (what model.init.recurrent and spectral_radius act on)."""
    if _conv.is_spatial(cell):  # convolution kernels [G*C, C, k, k]
        return False
    c = _cells.get(cell)
    return c.param_shapes(2, 3).get("weight_hh") == (c.gates * 3, 3)


def validate_train(train: TrainSpec) -> None:
    _int_range("train.steps", train.steps, 1, MAX_STEPS)
    _int_range("train.epochs", train.epochs, 0, 1_000_000)
    _int_range("train.batch_size", train.batch_size, 1, MAX_BATCH)
    _choice("train.optimizer", train.optimizer, OPTIMIZERS)
    _float_range("train.lr", train.lr, 0.0, 100.0, lo_open=True)
    _float_range("train.momentum", train.momentum, 0.0, 0.9999)
    _float_range("train.weight_decay", train.weight_decay, 0.0, 10.0)
    _choice("train.schedule", train.schedule, SCHEDULES)
    _int_range("train.warmup_steps", train.warmup_steps, 0, MAX_STEPS)
    _int_range("train.step_size", train.step_size, 1, MAX_STEPS)
    _float_range("train.gamma", train.gamma, 0.0, 1.0, lo_open=True)
    _choice("train.clip", train.clip, CLIP_MODES)
    _float_range("train.clip_value", train.clip_value, 0.0, 1e9, lo_open=True)
    _int_range("train.tbptt", train.tbptt, 0, 1_000_000)
    _int_range("train.eval_every", train.eval_every, 0, MAX_STEPS)
    _int_range("train.eval_batches", train.eval_batches, 1, 100_000)
    _int_range("train.probe_every", train.probe_every, 0, MAX_STEPS)
    if not isinstance(train.dynamics, bool):
        raise SpecError("train.dynamics", f"expected true or false, got {_type_name(train.dynamics)}")
    _int_range("train.log_every", train.log_every, 1, MAX_STEPS)
    _int_range("train.checkpoint_every", train.checkpoint_every, 0, MAX_STEPS)
    _int_range("train.seed", train.seed, 0, 2**63 - 1)
    _choice("train.device", train.device, DEVICES)
    _choice("train.precision", train.precision, PRECISIONS)
    _choice("train.on_non_finite", train.on_non_finite, NON_FINITE_ACTIONS)
    _int_range("train.num_threads", train.num_threads, 0, 1024)


def validate(preset: Preset) -> None:
    """Raise SpecError naming the first bad field. Task options are checked by the task."""
    if not preset.name.strip():
        raise SpecError("name", "must not be empty")
    if not preset.data.task.strip():
        raise SpecError("data.task", "must name a task")
    validate_model(preset.model)
    validate_train(preset.train)


# ----------------------------------------------------------------------------- files


def loads(text: str, source: str = "preset") -> Preset:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError("", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    return Preset.from_dict(raw)


def load(path: str | Path) -> Preset:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("", f"preset file {path} does not exist") from None
    except IsADirectoryError:
        raise SpecError("", f"{path} is a folder, not a preset file") from None
    except OSError as exc:
        raise SpecError("", f"cannot read preset {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("", f"{path} is not a UTF-8 text file (is it a preset?)") from None
    try:
        return loads(text, source=str(path))
    except SpecError as exc:
        if exc.field:
            raise SpecError(exc.field, f"{exc.message} (in {path})") from None
        if str(path) not in exc.message:
            raise SpecError("", f"{path}: {exc.message}") from None
        raise


def save(preset: Preset, path: str | Path) -> None:
    """Write atomically: a failed write leaves any previous file as it was."""
    from workbench.fileio import atomic_write_text

    validate(preset)
    atomic_write_text(Path(path), preset.to_json())


# ----------------------------------------------------------------------------- overrides


def parse_override_value(text: str) -> Any:
    """`--set key=value`: JSON where it parses (numbers, true, null, lists), else text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(raw: dict, dotted: str, value: Any) -> None:
    """Set ``raw[a][b][0][c] = value`` for ``dotted = "a.b.0.c"`` on a preset dict.

    Keys under ``data.options`` may be new (they are task settings); anywhere else an
    unknown key is refused here, naming it."""
    if not dotted or any(not part for part in dotted.split(".")):
        raise SpecError(dotted, "is not a valid field path (expected e.g. model.layers.0.hidden_size)")
    parts = dotted.split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit():
                raise SpecError(here, f"expected a list index, got {part!r}")
            index = int(part)
            if index >= len(node):
                raise SpecError(here, f"index {index} is out of range (the list has {len(node)} entries)")
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            free_keys = parts[:depth] == ["data", "options"]
            if part not in node and not free_keys:
                raise SpecError(here, "unknown field")
            if last:
                node[part] = value
            else:
                node = node[part]
        else:
            raise SpecError(here, "cannot set a field inside a plain value")


def with_overrides(preset: Preset, overrides: list[str]) -> Preset:
    """Apply ``key=value`` strings (as given to --set) and re-validate."""
    raw = preset.to_dict()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SpecError(item, "an override must look like key=value")
        apply_override(raw, key.strip(), parse_override_value(value))
    return Preset.from_dict(raw)


# ----------------------------------------------------------------------------- sizes


@dataclass
class ModelIO:
    """What the task tells the model builder about its data (no torch here either).

    input_kind: "tokens" (ids [B,T]), "features" ([B,T,F]), "frames" ([B,T,C,H,W]),
    and for one-to-many the single input: "vector" ([B,F]), "class" ([B]), "image" ([B,C,H,W]).
    With the 'embedding_chars' input, "tokens" come as [B,T,1+C]: word id, then its
    characters' ids (char_vocab_size of them, 0 = padding).
    """

    input_kind: str = "features"
    vocab_size: int = 0  # tokens / class
    char_vocab_size: int = 0  # tokens with characters (the 'embedding_chars' input)
    feature_size: int = 0  # features / vector
    frame_shape: tuple[int, int, int] = (0, 0, 0)  # frames / image: (C, H, W)
    output_size: int = 1  # classes, tokens, or regression targets per step
    output_vocab_size: int = 0  # encoder_decoder / one_to_many: decoder input tokens
    # frames in, frames out: the RMS of a frame-to-frame change in the training data; the
    # residual head predicts changes in these units (model.head.residual)
    delta_scale: float = 1.0
    # token-to-token tasks: per source-vocabulary id, the target-vocabulary id of the same
    # token (the target's <unk> where the target vocabulary lacks it); what model.copy
    # copies. Empty where the task has no such map.
    source_to_target: tuple[int, ...] = ()
    unk_id: int = 1  # the source vocabulary's <unk> (a copy model reads extended ids, >= vocab_size, as it)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2


@dataclass
class LayerParams:
    name: str  # "layers.0" / "decoder_layers.1"
    cell: str
    input_size: int
    hidden_size: int
    directions: int
    forward: int  # W_f: weight_ih
    recurrent: int  # W_r: weight_hh
    bias: int

    @property
    def total(self) -> int:
        return self.forward + self.recurrent + self.bias

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.directions


@dataclass
class ParamReport:
    input_side: int
    layers: list[LayerParams]
    bridge: int  # encoder -> decoder initial state, attention
    head: int

    @property
    def recurrent_total(self) -> int:
        return sum(l.total for l in self.layers)

    @property
    def total(self) -> int:
        return self.input_side + self.recurrent_total + self.bridge + self.head


def conv_output_shape(frame_shape: tuple[int, int, int], channels: list[int]) -> tuple[int, int, int]:
    """Shape after the frames_conv stack: each block is a 3x3 conv (padding 1) then 2x2 max-pool."""
    _c, h, w = frame_shape
    for _ in channels:
        h, w = max(h // 2, 1), max(w // 2, 1)
    return (channels[-1], h, w)


def _input_side(model: ModelSpec, io: ModelIO) -> tuple[int, int]:
    """(parameters, width fed to the first recurrent layer)."""
    inp = model.input
    if inp.kind == "embedding":
        vocab = io.vocab_size
        return vocab * inp.embedding_dim, inp.embedding_dim
    if inp.kind == "embedding_chars":
        # word embedding + char embedding + char-CNN (kernel CHAR_CONV_WIDTH, with bias)
        conv = inp.char_embedding_dim * CHAR_CONV_WIDTH * inp.projection_size + inp.projection_size
        params = io.vocab_size * inp.embedding_dim + io.char_vocab_size * inp.char_embedding_dim + conv
        return params, inp.embedding_dim + inp.projection_size
    if inp.kind == "linear":
        f = io.feature_size
        return f * inp.projection_size + inp.projection_size, inp.projection_size
    c, h, w = io.frame_shape
    if inp.kind == "frames_grid":  # the frames as they are, flattened
        return 0, c * h * w
    if inp.kind == "frames_linear":
        n = c * h * w
        return n * inp.projection_size + inp.projection_size, inp.projection_size
    # frames_conv: conv blocks, then flatten + linear to projection_size
    params, prev = 0, c
    for ch in inp.conv_channels:
        params += prev * ch * 9 + ch
        prev = ch
    oc, oh, ow = conv_output_shape(io.frame_shape, inp.conv_channels)
    flat = oc * oh * ow
    return params + flat * inp.projection_size + inp.projection_size, inp.projection_size


def _stack_params(layers: list[LayerSpec], input_size: int, prefix: str) -> list[LayerParams]:
    out = []
    for i, layer in enumerate(layers):
        h = layer.hidden_size
        d = 2 if layer.bidirectional else 1
        try:
            forward, recurrent, bias = _cells.get(layer.cell).param_counts(input_size, h)
        except ValueError as exc:  # a convolutional cell whose sizes do not fit the frames
            raise SpecError(f"model.{prefix}.{i}.hidden_size", str(exc)) from None
        out.append(LayerParams(
            name=f"{prefix}.{i}", cell=layer.cell, input_size=input_size, hidden_size=h, directions=d,
            forward=d * forward, recurrent=d * recurrent, bias=d * bias,
        ))
        input_size = h * d
    return out


def _state_count(cell: str) -> int:
    return _cells.get(cell).state_count


def parameter_report(model: ModelSpec, io: ModelIO) -> ParamReport:
    """Parameter counts, computed from the spec alone; equal to the built module's."""
    with _conv.frame_grid(io.frame_shape, model.conv_kernel):
        return _parameter_report(model, io)


def spatial_head(model: ModelSpec, io: ModelIO) -> tuple[int, int, int] | None:
    """(state channels, head hidden channels, output channels) when the head convolves the
    top layer's feature maps (ConvHead: a many-to-many model over a convolutional cell),
    else None."""
    top = model.layers[-1]
    if model.topology != "many_to_many" or not _conv.is_spatial(top.cell) or not io.frame_shape[1]:
        return None
    _c, h, w = io.frame_shape
    n = h * w
    if io.output_size % n:
        return None  # not frames out (a label per step): the ordinary head reads the flattened maps
    return top.hidden_size * (2 if top.bidirectional else 1) // n, model.head.hidden_size, io.output_size // n


def _parameter_report(model: ModelSpec, io: ModelIO) -> ParamReport:
    input_params, width = _input_side(model, io)
    layers = _stack_params(model.layers, width, "layers")
    top = layers[-1].output_size
    bridge = 0
    if model.topology == "encoder_decoder":
        # The decoder reads an embedding of the previous output token.
        input_params += io.output_vocab_size * model.input.embedding_dim
        dec = _stack_params(model.decoder_layers, model.input.embedding_dim, "decoder_layers")
        enc_final = sum(l.hidden_size * l.directions for l in layers[-1:])
        # bridge: the encoder's top final state -> each decoder layer's initial state(s)
        for dl in dec:
            bridge += _state_count(dl.cell) * (enc_final * dl.hidden_size + dl.hidden_size)
        layers += dec
        top = dec[-1].output_size
        if model.attention:
            # score = h_dec . (W_a h_enc); combine [h_dec; context] -> top via linear + tanh
            bridge += top * enc_final  # W_a (no bias)
            bridge += (top + enc_final) * top + top
            if model.copy:  # p_gen = sigmoid(w . [context; decoder output; input embedding] + b)
                bridge += enc_final + top + model.input.embedding_dim + 1
    elif model.topology == "one_to_many":
        # The single input is encoded once (the input side, width `width`) into each
        # layer's initial state; the generator reads embeddings of its previous token.
        input_params += io.output_vocab_size * model.input.embedding_dim
        layers = _stack_params(model.layers, model.input.embedding_dim, "layers")
        for l in layers:
            bridge += _state_count(l.cell) * (width * l.hidden_size + l.hidden_size)
        top = layers[-1].output_size
    # the extrapolating head's alpha, one per colour channel (engine/model.py: RecurrentModel.extrapolation)
    head = io.frame_shape[0] if model.head.extrapolate and model.head.residual and io.frame_shape else 0
    conv_head = spatial_head(model, io)
    if conv_head is not None:  # conv_kernel x conv_kernel convolutions, channels to channels
        k2 = model.conv_kernel ** 2
        c, hidden, out = conv_head
        if hidden:
            head += c * hidden * k2 + hidden
            c = hidden
        head += c * out * k2 + out
        return ParamReport(input_side=input_params, layers=layers, bridge=bridge, head=head)
    if model.head.hidden_size:
        head += top * model.head.hidden_size + model.head.hidden_size
        top = model.head.hidden_size
    head += top * io.output_size + io.output_size
    return ParamReport(input_side=input_params, layers=layers, bridge=bridge, head=head)


def memory_estimate(model: ModelSpec, io: ModelIO, batch_size: int, seq_len: int,
                    out_len: int | None = None, bytes_per_value: int = 4) -> dict[str, int]:
    """Rough training memory in bytes: weights + gradients + Adam state, and the
    activations autograd keeps for backpropagation through time.

    Per recurrent layer and time step the kernels keep the gate pre-activations
    (gates*H) and the states (H, plus the cell for LSTM) per direction; the input side
    keeps its outputs (and, for frames, the raw frames).

    A lower bound, not a forecast: on an H200 the real peak (torch.cuda.max_memory_allocated
    over three steps) was 1.5 to 12 times this for the built-in presets, the gap being
    cuDNN's workspaces and reserve, cuBLAS workspaces, the trainer's copy of the weights
    and its instrumentation. The trainer refuses a preset whose estimate exceeds the free
    memory (workbench.engine.resources), so it never refuses one that would fit."""
    report = parameter_report(model, io)
    weights = report.total * bytes_per_value
    optimizer = 3 * weights  # gradients + two Adam moments
    out_len = out_len or seq_len
    acts = 0
    for l in report.layers:
        t = out_len if l.name.startswith("decoder") or model.topology == "one_to_many" else seq_len
        per_step = l.directions * (_cells.get(l.cell).gates * l.hidden_size + _state_count(l.cell) * l.hidden_size)
        if _conv.is_spatial(l.cell):  # convolutions keep their inputs and the gates' products too
            per_step = l.directions * _conv.SAVED_PER_STEP * l.hidden_size
        acts += batch_size * t * (per_step + l.input_size)
    if io.input_kind in ("frames", "image"):
        c, h, w = io.frame_shape
        frames = seq_len if io.input_kind == "frames" else 1
        acts += batch_size * frames * c * h * w * (3 if model.input.kind == "frames_conv" else 1)
        if model.input.kind == "frames_conv":
            hh, ww = h, w
            for ch in model.input.conv_channels:
                acts += batch_size * frames * ch * hh * ww * 2  # conv out + relu
                hh, ww = max(hh // 2, 1), max(ww // 2, 1)
    acts += batch_size * out_len * io.output_size * 2  # logits and their softmax
    activations = acts * bytes_per_value
    return {"weights": weights, "optimizer": optimizer, "activations": activations,
            "total": weights + optimizer + activations}


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
