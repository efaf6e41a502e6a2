"""What the Sweep dialog shows of a study, without Qt: its trials as plain rows, the
parallel-coordinates geometry (one axis per swept field plus the metric, every value
placed in 0..1 on its axis) and the trials' runs in the window's runs model.

The widgets (workbench/gui/sweep_dialog.py) only draw what these return, so the
placing, the log axes, the colours' order and the following of trial folders are
tested without a window.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.gui.rundata import MetricsTail, RunData, folder_run
from workbench.gui.runs_model import RunEntry, RunsModel
from workbench.runs import trial_label
from workbench.sweep import Param, fmt_value

ENDED = ("complete", "pruned", "fail", "interrupted")
# The metric's axis is logarithmic when its values are positive and span this factor or
# more (a loss from 0.0005 to 0.17: on a linear axis the good trials would sit in a heap).
METRIC_LOG_RATIO = 10.0


@dataclass(frozen=True)
class TrialRow:
    """One trial as the dialog lists it. state: complete, pruned, fail, interrupted,
    running or waiting; value: its final metric (complete trials only); latest: its last
    reported (step, value)."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_dir: str = ""
    latest: tuple[int, float] | None = None

    def shown_value(self) -> str:
        if self.value is not None:
            return f"{self.value:.5g}"
        if self.latest is not None:
            return f"{self.latest[1]:.5g} @ {self.latest[0]}"
        return "-"


def read_trials(study) -> list[TrialRow]:
    """The study's trials in number order (an optuna.Study, any storage)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        state = "interrupted" if t.user_attrs.get("interrupted") else t.state.name.lower()
        steps = t.intermediate_values
        latest = (max(steps), float(steps[max(steps)])) if steps else None
        rows.append(TrialRow(t.number, state, None if t.value is None else float(t.value), dict(t.params),
                             str(t.user_attrs.get("run_dir", "")), latest))
    return sorted(rows, key=lambda r: r.number)


# ----------------------------------------------------------------------------- parallel coordinates


def _key(value: Any) -> str:
    # choices compare as JSON text: True and 1, or 1 and 1.0, are different choices
    return json.dumps(value)


@dataclass(frozen=True)
class Axis:
    """One vertical axis. scale: "linear", "log" (placed by log10) or "category" (the
    choices evenly spaced, in their given order). low/high: the values at 0 and 1."""

    name: str
    scale: str
    low: float = 0.0
    high: float = 1.0
    categories: tuple = ()
    whole: bool = False  # an int field: its ticks are whole numbers

    def position(self, value: Any) -> float | None:
        """Where ``value`` sits on the axis, 0..1 (outside when a resumed study holds
        values beyond today's range); None when it cannot be placed."""
        if self.scale == "category":
            keys = [_key(c) for c in self.categories]
            if _key(value) not in keys:
                return None
            return 0.5 if len(keys) == 1 else keys.index(_key(value)) / (len(keys) - 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        if self.scale == "log":
            if value <= 0:
                return None
            lo, hi, v = math.log10(self.low), math.log10(self.high), math.log10(value)
        else:
            lo, hi, v = float(self.low), float(self.high), float(value)
        return (v - lo) / (hi - lo)

    def ticks(self) -> list[tuple[float, str]]:
        """(position, label): every choice, or the two ends and the middle (the geometric
        middle on a log axis)."""
        if self.scale == "category":
            return [(self.position(c), fmt_value(c) if c is not None else "null") for c in self.categories]
        if self.scale == "log":
            mid = math.sqrt(self.low * self.high)
        else:
            mid = (self.low + self.high) / 2
        values = [self.low, mid, self.high]
        if self.whole:
            values = sorted({int(round(v)) for v in values})
        return [(self.position(v), fmt_value(v)) for v in values]


@dataclass(frozen=True)
class Line:
    """One complete trial across the axes: ``ys`` its position on each axis (0..1);
    ``shade`` 0 for the worst complete trial to 1 for the best; ``best`` the study's best."""

    number: int
    ys: tuple[float, ...]
    value: float
    shade: float
    best: bool = False


@dataclass
class Parallel:
    axes: list[Axis] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


def param_axis(p: Param) -> Axis:
    if p.kind == "choice":
        return Axis(p.field, "category", categories=tuple(p.choices))
    scale = "log" if p.kind in ("log", "int_log") else "linear"
    return Axis(p.field, scale, p.low, p.high, whole=p.kind in ("int", "int_log"))


def parallel(params: list[Param], metric: str, direction: str, rows: list[TrialRow]) -> Parallel:
    """The axes (each swept field, then the metric) and one line per complete trial.
    The metric's axis spans the complete trials' values (padded when they are all equal;
    log-scaled when they span METRIC_LOG_RATIO or more)."""
    done = [r for r in rows if r.state == "complete" and r.value is not None and math.isfinite(r.value)]
    axes = [param_axis(p) for p in params]
    if done:
        values = [r.value for r in done]
        lo, hi = min(values), max(values)
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            pad = max(abs(hi) * 0.05, 1e-6)
            lo, hi = lo - pad, hi + pad
    else:
        lo, hi = 0.0, 1.0
    scale = "log" if done and lo > 0 and hi / lo >= METRIC_LOG_RATIO else "linear"
    metric_axis = Axis(metric, scale, lo, hi)
    axes.append(metric_axis)
    if not done:
        return Parallel(axes, [])
    sign = -1.0 if direction == "minimize" else 1.0  # larger sign * value is better
    best = max(done, key=lambda r: (sign * r.value, -r.number))
    worst_v, best_v = min(sign * r.value for r in done), sign * best.value
    lines = []
    for r in done:
        ys = [a.position(r.params.get(a.name)) for a in axes[:-1]]
        if any(y is None for y in ys):
            continue  # a value no axis can place (a study resumed with other choices)
        ys.append(metric_axis.position(r.value))
        shade = 1.0 if best_v == worst_v else (sign * r.value - worst_v) / (best_v - worst_v)
        lines.append(Line(r.number, tuple(ys), r.value, shade, r is best))
    return Parallel(axes, lines)


# Optuna's default importance (PED-ANOVA) compares the best 10% of the trials with all of
# them; its documentation asks for 5 or more trials in that 10%.
STEADY_TRIALS = 50


def importance_items(found: dict[str, float] | str, complete: int = STEADY_TRIALS
                     ) -> tuple[list[tuple[str, float]], str]:
    """sweep.importances' answer as (name, share) bars, largest first, and the line under
    them: the shares (a warning while fewer than STEADY_TRIALS trials completed), or why
    there are none yet."""
    if isinstance(found, str):
        return [], f"No importances yet: {found}"
    bars = sorted(((k, float(v)) for k, v in found.items()), key=lambda kv: -kv[1])
    if not bars:
        return [], "No importances yet: no parameter varied"
    text = ", ".join(f"{k} {v:.2f}" for k, v in bars)
    if complete < STEADY_TRIALS:
        text += f" (from {complete} trials: rough until about {STEADY_TRIALS})"
    return bars, text


# ----------------------------------------------------------------------------- the trials' runs


@dataclass
class _Followed:
    entry: RunEntry
    tail: MetricsTail
    done: bool = False


class TrialRuns:
    """The trials' runs in the window's runs model, their curves read as they grow: a
    trial's folder, once it holds a metrics file, becomes a run named 'STUDY #N' in the
    Runs panel and the loss plot (the trial trains on the sweep's thread or in a worker
    process, so its records come from the file, not from a worker signal)."""

    def __init__(self, model: RunsModel, colour: Callable[[], str]):
        self.model, self.colour = model, colour
        self.followed: dict[str, _Followed] = {}  # run folder -> its entry and reader

    def update(self, study: str, rows: list[TrialRow]) -> list[RunEntry]:
        """Read what the trials' folders gained; returns the entries added this time."""
        added = []
        for row in rows:
            if not row.run_dir:
                continue
            metrics = Path(row.run_dir) / "metrics.jsonl"
            f = self.followed.get(row.run_dir)
            if f is None:
                if not metrics.is_file():
                    continue
                data: RunData = folder_run(row.run_dir, trial_label(study, row.number), self.colour())
                data.status = "running"
                f = self.followed[row.run_dir] = _Followed(self.model.add_run(data, session=True), MetricsTail(metrics))
                added.append(f.entry)
            if f.done:
                continue
            records = f.tail.read()
            if records:
                f.entry.data.add(records)
                self.model.changed(f.entry)
            if row.state in ENDED:
                f.done = True
                f.entry.data.add(f.tail.read())  # the last lines, written before the trial was told
                if f.entry.data.end is None:
                    f.entry.data.status = row.state
                self.model.refresh_row(f.entry)
        return added
