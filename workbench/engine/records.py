"""The records the trainer yields: one declared type per kind, and their JSON form.

This module is the contract between the engine and every consumer (the run session
that writes metrics.jsonl and the history row, the CLI's printer, the window's plots and
status bar, a loaded run's overlays). Consumers read fields (``record.loss``) and sort
by type (``isinstance(record, Step)``), never by a "kind" string; only the JSON form
carries the kind, as its "kind" key.

Kinds:
  Start       the run is set up: device, precision, parameters, total_steps, step (where
              it starts: > 0 when continued), resumed_from, layers, ...
  Step        one optimizer step: loss, lr, time_s, units_per_s, grad norms; every
              ``train.log_every`` steps also timestep_grad_norms {layer: [T]} (||dL/dx_t||
              at each layer's input) and param_grad_norms {layer: {forward, recurrent,
              bias}}
  Probe       the exact ||dL/dh_t||, hidden_grad_norms {layer: [T]}
  Dynamics    after each Probe, on its batch: the one-step Jacobian norms {layer: [T]},
              leading Lyapunov exponents, W_hh gate blocks' spectra, gate statistics,
              hidden-state trajectories in their three leading principal components
  Eval        validation metrics {name: value} (val_loss and the task's own)
  NonFinite   a NaN/Inf loss or gradient: what, action (skipped / stopped), restored
  Checkpoint  a checkpoint was written: path, final
  End         the run's outcome: status (finished / stopped / failed), time_s (training
              time of this segment, pauses excluded), last_loss, final metrics (over the
              whole validation set) and eval_examples, how the steps ran

JSON form: one object per line, {"kind": ..., fields...}; an Eval's metrics are flat
keys beside "step" (as metrics.jsonl always had them). JSON has no NaN/Inf: they are
written as the strings "nan"/"inf"/"-inf" and read back as floats. Per-timestep profiles
(drawn on a log scale) and timings are written with 4 significant digits; every other
number keeps full precision. Reading is tolerant: missing fields take their defaults,
unknown ones are kept in ``extra``, and a line that is not a record (a torn last line of
a killed run) is skipped.

For scripts and notebooks a record also reads like its JSON object (``record["loss"]``,
``record.get("kind")``); the workbench itself uses the fields.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

# Significant digits of per-timestep profiles in the JSON form: a log10 heatmap and a
# decay fit need ~3; 4 keep the file small (a float32 written in full takes ~20 bytes).
PROFILE_DIGITS = 4


@dataclass(eq=False)
class Record(Mapping):
    """Fields every record has: the optimizer step it belongs to."""

    kind: ClassVar[str] = ""
    # fields left out of the JSON form while they hold their default (rare keys)
    _optional: ClassVar[tuple[str, ...]] = ()
    # fields holding per-timestep profiles ({layer: [T]}, written with PROFILE_DIGITS)
    _profiles: ClassVar[tuple[str, ...]] = ()
    # timings, written with PROFILE_DIGITS too (their noise is far above that)
    _timings: ClassVar[tuple[str, ...]] = ()

    step: int = 0
    extra: dict = field(default_factory=dict)  # keys this version does not know (read from a newer file)

    # -- JSON form --------------------------------------------------------------------
    def as_dict(self, profiles: bool = True) -> dict:
        """The JSON object (numbers still numbers); ``profiles=False`` leaves out the
        per-timestep profiles (the run session writes them only every few steps)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if f.name in self._optional and (value is None or value is False or value == {}):
                continue
            if f.name in self._profiles and (not profiles or value is None):
                continue
            out[f.name] = value
        out.update(self.extra)
        return out

    def to_json(self, profiles: bool = True) -> str:
        """One line of metrics.jsonl (no newline)."""
        data = self.as_dict(profiles)
        rounded = self._profiles + self._timings
        plain = {k: _plain(v, PROFILE_DIGITS if k in rounded else None) for k, v in data.items()}
        return json.dumps(plain, separators=(",", ":"))

    @classmethod
    def _from_fields(cls, data: dict) -> Record:
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "extra"}
        values, extra = {}, {}
        for key, value in data.items():
            if key == "kind":
                continue
            if key in known:
                values[key] = _read_value(value, known[key].type, key in cls._profiles)
            else:
                extra[key] = _unplain(value)
        return cls(**values, extra=extra)

    # -- read like the JSON object (scripts, notebooks) ------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return _same(self.as_dict(), other.as_dict())

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class Start(Record):
    kind: ClassVar[str] = "start"
    device: str = ""
    precision: str = "fp32"
    parameters: int = 0
    total_steps: int = 0
    resumed_from: str | None = None
    torch_threads: int = 0
    cpu_policy: dict = field(default_factory=dict)  # what engine/cpu_policy applied (allocator, threads)
    layers: list = field(default_factory=list)
    tbptt: int = 0
    log_every: int = 1
    probe_every: int = 0
    probe_budget: float | None = None


@dataclass(eq=False)
class Step(Record):
    kind: ClassVar[str] = "step"
    _optional: ClassVar[tuple[str, ...]] = ("scaler_skipped",)
    _profiles: ClassVar[tuple[str, ...]] = ("timestep_grad_norms", "param_grad_norms")
    _timings: ClassVar[tuple[str, ...]] = ("time_s", "units_per_s")
    loss: float = math.nan
    lr: float = 0.0
    time_s: float = 0.0
    units_per_s: float = 0.0
    grad_norm: float = math.nan
    grad_norm_clipped: float = math.nan
    clipped: bool = False
    epoch: int = 0
    scaler_skipped: bool = False  # fp16: the grad scaler skipped this update
    timestep_grad_norms: dict | None = None  # {layer: [T]} on log_every steps
    param_grad_norms: dict | None = None  # {layer: {forward, recurrent, bias}} on log_every steps


@dataclass(eq=False)
class Probe(Record):
    kind: ClassVar[str] = "probe"
    _profiles: ClassVar[tuple[str, ...]] = ("hidden_grad_norms",)
    _timings: ClassVar[tuple[str, ...]] = ("time_s",)
    hidden_grad_norms: dict = field(default_factory=dict)  # {layer: [T]}
    time_s: float = 0.0


@dataclass(eq=False)
class Dynamics(Record):
    """The recurrence's dynamics on the probe batch (workbench/engine/dynamics.py), right
    after each Probe. Keys: layer names, a bidirectional layer's reverse direction as
    "NAME.reverse"."""

    kind: ClassVar[str] = "dynamics"
    _profiles: ClassVar[tuple[str, ...]] = ("jacobian_norms", "lyapunov", "spectra", "gates", "trajectories")
    _timings: ClassVar[tuple[str, ...]] = ("time_s",)
    jacobian_norms: dict = field(default_factory=dict)  # {layer: [T]} mean_b ||ds_t/ds_{t-1}||_2
    lyapunov: dict = field(default_factory=dict)  # {layer: [k]} leading finite-time exponents, per step
    # {layer: {block: {"radius", "sigma_max", "eigenvalues": [[re...], [im...]]}}} of W_hh's gate blocks
    spectra: dict = field(default_factory=dict)
    gates: dict = field(default_factory=dict)  # {layer: {gate: {"mean", "saturation"}}} (gated cells)
    # {layer: {"rows": per row [[pc1 over t], [pc2 over t], [pc3 over t]], "explained": [share per PC],
    #  "labels": per row its class (classification batches only)}} (older records: two PCs)
    trajectories: dict = field(default_factory=dict)
    time_s: float = 0.0

    def jacobian_log_product(self, layer: str) -> np.ndarray:
        """[T] log10 of prod_{s>t} ||ds_s/ds_{s-1}||: the bound on how far ||ds_T/ds_t||
        (so dL/dh_t from a loss at the last step) can have grown or shrunk by step t."""
        return jacobian_log_product(self.jacobian_norms.get(layer, ()))

    def radius(self, layer: str) -> float:
        """The largest spectral radius over the layer's W_hh blocks (NaN without any)."""
        values = [b.get("radius", math.nan) for b in self.spectra.get(layer, {}).values()]
        return max(values) if values else math.nan


def jacobian_log_product(norms) -> np.ndarray:
    """[T] one-step Jacobian norms -> [T] log10 of the product of those after each step."""
    logs = np.log10(np.clip(np.asarray(norms, dtype=np.float64), 1e-300, None))
    logs = np.where(np.isnan(logs), 0.0, logs)  # a step no row reached (padding): no factor
    out = np.zeros_like(logs)
    if logs.size > 1:
        out[:-1] = np.cumsum(logs[::-1])[::-1][1:]
    return out


@dataclass(eq=False)
class Eval(Record):
    kind: ClassVar[str] = "eval"
    metrics: dict = field(default_factory=dict)  # {"val_loss": ..., task metrics}

    @property
    def val_loss(self) -> float:
        return _num(self.metrics.get("val_loss"))

    def as_dict(self, profiles: bool = True) -> dict:
        return {"kind": self.kind, "step": self.step, **self.metrics, **self.extra}

    @classmethod
    def _from_fields(cls, data: dict) -> Eval:
        metrics = {k: _unplain(v) for k, v in data.items() if k not in ("kind", "step")}
        return cls(step=data.get("step", 0), metrics=metrics)


@dataclass(eq=False)
class NonFinite(Record):
    kind: ClassVar[str] = "non_finite"
    what: str = ""  # "loss" / "gradients"
    action: str = ""  # "skipped" / "stopped"
    restored: bool = False  # the weights were rolled back
    message: str = ""


@dataclass(eq=False)
class Checkpoint(Record):
    kind: ClassVar[str] = "checkpoint"
    path: str = ""
    final: bool = False


@dataclass(eq=False)
class End(Record):
    kind: ClassVar[str] = "end"
    _optional: ClassVar[tuple[str, ...]] = ("graphs", "graphs_off", "probe_unrolled", "dynamics_off")
    status: str = "finished"  # finished / stopped / failed
    message: str = ""
    time_s: float = 0.0  # training time of this segment, pauses excluded
    last_loss: float = math.nan
    epoch: int = 0
    metrics: dict = field(default_factory=dict)  # the final evaluation's, over the whole validation set
    eval_examples: int = 0  # how many validation examples those metrics average
    fused_stacks: bool | None = None
    untapped_graphs: bool | None = None
    graph_replays: int = 0
    graphs: int | None = None
    graphs_off: str | None = None
    probe_unrolled: str | None = None
    dynamics_off: str | None = None  # why the Dynamics records stopped (engine/dynamics.py failed)


KINDS: dict[str, type[Record]] = {cls.kind: cls for cls in (Start, Step, Probe, Dynamics, Eval, NonFinite,
                                                               Checkpoint, End)}


def from_json(data: dict | str) -> Record | None:
    """A JSON object (or line) -> its record; None when it is not a record (no known
    "kind", or a "step" that is not a whole number)."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError:
            return None
    if not isinstance(data, dict):
        return None
    cls = KINDS.get(data.get("kind")) if isinstance(data.get("kind"), str) else None
    step = data.get("step", 0)
    if cls is None or isinstance(step, bool) or not isinstance(step, int) or (cls is Step and "step" not in data):
        return None
    try:
        return cls._from_fields(data)
    except (TypeError, ValueError):
        return None


def record_to_json(record: Record) -> str:
    return record.to_json()


def read_metrics(path) -> list[Record]:
    """metrics.jsonl -> records. A torn last line (killed process) and lines that are not
    records are skipped; a file that is not UTF-8 text is not a metrics file and is
    refused, naming it."""
    from workbench.io.errors import DataError

    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"is not a metrics file: not UTF-8 text (byte 0x{data[exc.start]:02x})",
                        data.count(b"\n", 0, exc.start) + 1) from None
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            record = from_json(line)
            if record is not None:
                records.append(record)
    return records


# ----------------------------------------------------------------------------- values


def _plain(value: Any, digits: int | None = None) -> Any:
    """A value as JSON data: arrays to lists, NaN/Inf to strings, floats rounded to
    ``digits`` significant digits when given."""
    if isinstance(value, np.ndarray):
        return [_plain(v, digits) for v in value.tolist()]
    if isinstance(value, dict):
        return {str(k): _plain(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, digits) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if not math.isfinite(value):
            return str(value)  # JSON has no NaN/Inf; keep them readable and loadable
        return float(f"{value:.{digits}g}") if digits else value
    if isinstance(value, np.integer):
        return int(value)
    return value


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _unplain(value: Any) -> Any:
    """JSON data back to values: "nan"/"inf"/"-inf" strings to floats."""
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _unplain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unplain(v) for v in value]
    return value


def _read_value(value: Any, annotation: str, profile: bool) -> Any:
    if profile and isinstance(value, dict):  # {layer: [T]} -> arrays (or nested {name: norm})
        return {k: (np.asarray(_unplain(v), dtype=np.float64) if isinstance(v, list) else _unplain(v))
                for k, v in value.items()}
    if str(annotation).startswith("str"):
        return value
    if str(annotation).startswith("float") and isinstance(value, str):
        return _num(value)
    return _unplain(value)


def _num(value: Any) -> float:
    """A record's number as a float; NaN when missing or not a number."""
    if value is None or isinstance(value, bool):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN and compares arrays by value."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, np.ndarray)) or isinstance(b, (list, tuple, np.ndarray)):
        x, y = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
        return x.shape == y.shape and all(_same(p, q) for p, q in zip(x.ravel().tolist(), y.ravel().tolist()))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
