"""What the plots draw from: one run's records turned into numpy buffers (Qt-free).

The worker thread sends records (workbench/engine/records.py); the window appends them here, and the
plot timer reads ``view()``s at <= 30 Hz. Appending is amortised O(1) per value, so a
run of 10^6 steps costs a few tens of MB and nothing per frame but the drawing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.engine import gradstats
from workbench.engine.records import Dynamics, End, Eval, NonFinite, Probe, Record, Start, Step, from_json

# Scalar series keep up to this many points (oldest dropped after that).
SERIES_CAPACITY = 1_100_000
# Heatmap rows (training steps) kept per layer; the heatmap scrolls past this.
HEATMAP_ROWS = 400

SOURCES = ("inputs", "exact")
SOURCE_LABELS = {
    "inputs": "||dL/dx_t|| at each layer's input (every logged step)",
    "exact": "exact ||dL/dh_t|| (probe, every probe_every steps)",
}


class Series:
    """A growable float64 buffer holding the newest ``capacity`` values.

    Storage doubles as needed up to 2 x capacity (small runs stay small); past that the
    newest values are copied back to the front once every ~capacity appends, so an
    append is amortised O(1) and ``view()`` is always a zero-copy contiguous slice in
    order, which is what pyqtgraph's setData wants."""

    def __init__(self, capacity: int = SERIES_CAPACITY, initial: int = 1024):
        self.capacity = max(2, capacity)
        self._buf = np.empty(max(2, min(initial, 2 * self.capacity)), dtype=np.float64)
        self._start = 0  # index of the oldest value in _buf
        self._len = 0
        self.dropped = 0  # values dropped from the front so far (view()[i] is value number dropped + i)

    def append(self, value: float) -> None:
        end = self._start + self._len
        if end >= self._buf.size:
            if self._buf.size < 2 * self.capacity:
                grown = np.empty(min(self._buf.size * 2, 2 * self.capacity), dtype=np.float64)
                grown[: self._len] = self._buf[self._start:end]
                self._buf = grown
            else:
                self._buf[: self._len] = self._buf[self._start:end]
            self._start = 0
            end = self._len
        self._buf[end] = value
        self._len += 1
        if self._len > self.capacity:  # drop the oldest
            self._start += 1
            self._len -= 1
            self.dropped += 1

    def __len__(self) -> int:
        return self._len

    def extend(self, values) -> None:
        for v in values:
            self.append(v)

    def view(self) -> np.ndarray:
        return self._buf[self._start:self._start + self._len]

    def last(self, default: float = math.nan) -> float:
        return float(self._buf[self._start + self._len - 1]) if self._len else default


class Curve:
    """(step, value) pairs of one quantity sampled at the probes, kept in two Series."""

    def __init__(self, capacity: int = 200_000):
        self.x = Series(capacity=capacity)
        self.y = Series(capacity=capacity)

    def append(self, step: float, value: float) -> None:
        self.x.append(step)
        self.y.append(value)


class DynamicsBuffers:
    """What the Dynamics panel draws of one run (Dynamics records, one per probe):
    per layer a heatmap ring of log10 one-step Jacobian norms, and curves over training
    steps keyed by (layer, ...): spectral radius and largest singular value per W_hh
    block, Lyapunov exponents by index, gate means and saturations; plus the newest
    record (its eigenvalues and Jacobian profile)."""

    def __init__(self):
        self.jacobian: dict[str, HeatmapRing] = {}
        self.radius: dict[tuple[str, str], Curve] = {}
        self.sigma_max: dict[tuple[str, str], Curve] = {}
        self.lyapunov: dict[tuple[str, int], Curve] = {}
        self.gate_mean: dict[tuple[str, str], Curve] = {}
        self.gate_saturation: dict[tuple[str, str], Curve] = {}
        self.latest: Dynamics | None = None
        self.count = 0

    @property
    def layers(self) -> list[str]:
        seen = list(self.jacobian)
        seen += [k[0] for k in self.radius if k[0] not in seen]
        return list(dict.fromkeys(seen))

    def add(self, r: Dynamics) -> None:
        step = float(r.step)
        for layer, norms in r.jacobian_norms.items():
            self.jacobian.setdefault(layer, HeatmapRing()).append(r.step, np.asarray(norms, dtype=np.float64))
        for layer, blocks in r.spectra.items():
            for block, stats in blocks.items():
                self.radius.setdefault((layer, block), Curve()).append(step, _num(stats.get("radius")))
                self.sigma_max.setdefault((layer, block), Curve()).append(step, _num(stats.get("sigma_max")))
        for layer, values in r.lyapunov.items():
            for i, v in enumerate(np.asarray(values, dtype=np.float64).ravel()):
                self.lyapunov.setdefault((layer, i), Curve()).append(step, float(v))
        for layer, gates in r.gates.items():
            for gate, stats in gates.items():
                self.gate_mean.setdefault((layer, gate), Curve()).append(step, _num(stats.get("mean")))
                self.gate_saturation.setdefault((layer, gate), Curve()).append(step, _num(stats.get("saturation")))
        self.latest = r
        self.count += 1


class HeatmapRing:
    """Rows of log10 gradient norms over t for one layer: [rows, T], newest last.

    T may change between batches (padded text of varying length): columns grow and
    shorter rows are NaN-padded, so every row stays aligned on t = 1, 2, ..."""

    def __init__(self, rows: int = HEATMAP_ROWS):
        self.rows = rows
        self._data: np.ndarray | None = None  # [rows, T]
        self._steps = np.zeros(rows, dtype=np.float64)
        self._next = 0  # ring position
        self._count = 0
        # The whole run, downsampled: row i holds the mean of ``_bucket`` consecutive rows
        # (finite log10 values only); when all rows are used, neighbours merge pairwise and
        # the bucket doubles, so the first steps (where an LSTM's gradient path opens) stay.
        self._sum: np.ndarray | None = None  # [rows, T] sums of finite log10 norms
        self._n: np.ndarray | None = None  # [rows, T] how many were summed
        self._z: np.ndarray | None = None  # [rows, T] how many were exact zeros (-inf: underflow)
        self._all_steps = np.zeros(rows, dtype=np.float64)  # first step of each row
        self._filled = np.zeros(rows, dtype=np.int64)  # appended rows in each row's bucket
        self._bucket = 1
        self._all_count = 0
        self.appended = 0

    def append(self, step: int, norms: np.ndarray) -> None:
        values = np.asarray(norms, dtype=np.float64).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            # [T]; an exact zero (the gradient underflowed) is -inf, a non-finite norm NaN
            logs = np.where(values > 0, np.log10(np.where(values > 0, values, 1.0)),
                            np.where(values == 0, -np.inf, np.nan))
        if self._data is None or values.size > self._data.shape[1]:
            grown = np.full((self.rows, values.size), np.nan)
            if self._data is not None:
                grown[:, : self._data.shape[1]] = self._data
            self._data = grown
        row = np.full(self._data.shape[1], np.nan)
        row[: logs.size] = logs
        self._data[self._next] = row
        self._steps[self._next] = step
        self._next = (self._next + 1) % self.rows
        self._count = min(self._count + 1, self.rows)
        self._add_overview(step, row)

    def _add_overview(self, step: int, row: np.ndarray) -> None:
        """Fold one row [T] into the whole-run image (amortised O(T))."""
        self.appended += 1
        T = row.size
        if self._sum is None or T > self._sum.shape[1]:
            grown = [np.zeros((self.rows, T)) for _ in range(3)]
            if self._sum is not None:
                for new, old in zip(grown, (self._sum, self._n, self._z)):
                    new[:, : old.shape[1]] = old
            self._sum, self._n, self._z = grown
        i = self._all_count - 1
        if i < 0 or self._filled[i] >= self._bucket:
            if self._all_count == self.rows:  # full: merge neighbours, the bucket doubles
                half = self.rows // 2
                self._sum[:half] = self._sum[0::2][:half] + self._sum[1::2][:half]
                self._n[:half] = self._n[0::2][:half] + self._n[1::2][:half]
                self._z[:half] = self._z[0::2][:half] + self._z[1::2][:half]
                self._all_steps[:half] = self._all_steps[0::2][:half]
                self._filled[:half] = self._filled[0::2][:half] + self._filled[1::2][:half]
                self._sum[half:], self._n[half:], self._z[half:], self._filled[half:] = 0.0, 0.0, 0.0, 0
                self._all_count = half
                self._bucket *= 2
            i = self._all_count
            self._all_count += 1
            self._all_steps[i] = step
            self._filled[i] = 0
        finite = np.isfinite(row)
        self._sum[i, : T][finite] += row[finite]
        self._n[i, : T][finite] += 1
        self._z[i, : T][np.isneginf(row)] += 1
        self._filled[i] += 1

    def __len__(self) -> int:
        return self._count

    def image(self, whole: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(log10 norms [rows, T] oldest first, steps [rows]): the newest ``rows`` logged
        steps, or with ``whole`` the whole run downsampled to at most ``rows`` rows (each
        the mean of its bucket of steps; steps: the first of each bucket)."""
        if whole:
            if self._sum is None or not self._all_count:
                return np.zeros((0, 0)), np.zeros(0)
            k = self._all_count
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(self._n[:k] > 0, self._sum[:k] / np.maximum(self._n[:k], 1),
                                np.where(self._z[:k] > 0, -np.inf, np.nan))
            return mean, self._all_steps[:k].copy()
        if self._data is None or not self._count:
            return np.zeros((0, 0)), np.zeros(0)
        if self._count < self.rows:
            return self._data[: self._count], self._steps[: self._count]
        order = np.r_[self._next:self.rows, 0:self._next]
        return self._data[order], self._steps[order]


@dataclass
class RunData:
    """All that the plots show of one run (live or loaded from a run folder)."""

    name: str
    colour: str = "#1f77b4"
    live: bool = False
    run_dir: str = ""
    visible: bool = True
    status: str = ""  # "", running, finished, stopped, failed
    start: Start | None = None
    end: End | None = None
    clip: str = "none"
    clip_value: float = 1.0
    total_steps: int = 0
    task: str = ""  # data.task: the loss panel gives each task its own axis

    def __post_init__(self):
        self.steps = Series()
        self.loss = Series()
        self.lr = Series()
        self.grad_norm = Series()
        self.grad_norm_clipped = Series()
        self.units_per_s = Series()
        self.clip_steps = Series()  # steps where clipping changed the gradient
        self.clip_norms = Series()
        self.val_steps = Series(capacity=200_000)
        self.val_loss = Series(capacity=200_000)
        self.val_metrics: dict[str, list[float]] = {}
        self.non_finite: list[NonFinite] = []
        self.heatmaps: dict[str, dict[str, HeatmapRing]] = {s: {} for s in SOURCES}
        self.profiles: dict[str, dict[str, np.ndarray]] = {s: {} for s in SOURCES}  # latest [T] per layer
        self.profile_steps: dict[str, int] = {s: 0 for s in SOURCES}
        self.layers: list[str] = []
        self.dynamics = DynamicsBuffers()
        self.version = 0  # bumped on every add(); plots redraw only what changed
        self.ema = math.nan  # smoothed train loss, kept incrementally (see smoothed())
        self._smooth = Series()
        self._smooth_alpha = -1.0

    # ------------------------------------------------------------------ records in
    def add(self, records: list) -> None:
        """Append records (or their JSON objects, as read from a file or written by a test)."""
        for r in records:
            if not isinstance(r, Record):
                r = from_json(r)
            if isinstance(r, Step):
                self._add_step(r)
            elif isinstance(r, Probe):
                self._add_profiles("exact", r.step, r.hidden_grad_norms)
            elif isinstance(r, Dynamics):
                self.dynamics.add(r)
            elif isinstance(r, Eval):
                self.val_steps.append(float(r.step))
                self.val_loss.append(r.val_loss)
                for k, value in r.metrics.items():
                    if k != "val_loss" and isinstance(value, (int, float, str)):
                        self.val_metrics.setdefault(k, []).append(_num(value))
            elif isinstance(r, NonFinite):
                self.non_finite.append(r)
            elif isinstance(r, Start):
                self.start = r
                self.total_steps = r.total_steps
                self.layers = list(r.layers or self.layers)
                if self.live:
                    self.status = "running"
            elif isinstance(r, End):
                self.end = r
                self.status = r.status
        self.version += 1

    def _add_step(self, r: Step) -> None:
        step = float(r.step)
        self.steps.append(step)
        self.loss.append(_num(r.loss))
        self.lr.append(_num(r.lr))
        g = _num(r.grad_norm)
        self.grad_norm.append(g)
        gc = _num(r.grad_norm_clipped)
        self.grad_norm_clipped.append(g if math.isnan(gc) else gc)  # (a record without it: not clipped)
        self.units_per_s.append(_num(r.units_per_s))
        if r.clipped:
            self.clip_steps.append(step)
            self.clip_norms.append(g)
        if r.timestep_grad_norms:
            self._add_profiles("inputs", r.step, r.timestep_grad_norms)
        if self._smooth_alpha >= 0:
            self._push_smooth(self.loss.last())

    def _add_profiles(self, source: str, step: int, profiles: dict) -> None:
        rings = self.heatmaps[source]
        for layer, norms in profiles.items():
            arr = np.asarray(norms, dtype=np.float64)
            if layer not in rings:
                rings[layer] = HeatmapRing()
                if layer not in self.layers:
                    self.layers.append(layer)
            rings[layer].append(step, arr)
            self.profiles[source][layer] = arr
        self.profile_steps[source] = step

    # ------------------------------------------------------------------ derived
    def smoothed(self, alpha: float) -> np.ndarray:
        """Debiased exponential moving average of the train loss (TensorBoard's
        smoothing); kept incrementally, recomputed in whole only when alpha changes."""
        if alpha != self._smooth_alpha:
            self._smooth_alpha = alpha
            out, self._ema_raw, self._ema_weight = _ema(self.loss.view(), alpha)
            self._smooth = Series(initial=max(1024, out.size))
            self._smooth._buf[: out.size] = out  # the whole EMA at once, not value by value
            self._smooth._len = out.size
        return self._smooth.view()

    def _push_smooth(self, value: float) -> None:
        a = self._smooth_alpha
        if math.isfinite(value):
            self._ema_raw = a * self._ema_raw + (1 - a) * value
            self._ema_weight = a * self._ema_weight + (1 - a)
        self._smooth.append(self._ema_raw / self._ema_weight if self._ema_weight > 0 else math.nan)

    def decay(self, source: str) -> dict[str, gradstats.Decay]:
        return {layer: gradstats.fit_decay(p) for layer, p in self.profiles[source].items()}

    @property
    def last_step(self) -> int:
        return int(self.steps.last(0.0)) if len(self.steps) else 0

    # ------------------------------------------------------------------ CSV out
    def scalar_csv(self, columns: tuple[str, ...] = ("loss", "smoothed", "lr", "grad_norm", "grad_norm_clipped"),
                   alpha: float = 0.0) -> str:
        data = {"loss": self.loss.view(), "lr": self.lr.view(), "grad_norm": self.grad_norm.view(),
                "grad_norm_clipped": self.grad_norm_clipped.view(), "units_per_s": self.units_per_s.view()}
        if "smoothed" in columns:
            data["smoothed"] = self.smoothed(alpha)
        steps = self.steps.view()
        lines = ["step," + ",".join(columns)]
        cols = [data[c] for c in columns]
        for i in range(steps.size):
            lines.append(f"{int(steps[i])}," + ",".join(_fmt(c[i]) for c in cols))
        return "\n".join(lines) + "\n"

    def val_csv(self) -> str:
        names = sorted(self.val_metrics)
        lines = ["step,val_loss" + "".join("," + n for n in names)]
        for i, (s, v) in enumerate(zip(self.val_steps.view(), self.val_loss.view())):
            extra = "".join("," + _fmt(self.val_metrics[n][i]) if i < len(self.val_metrics[n]) else "," for n in names)
            lines.append(f"{int(s)},{_fmt(v)}{extra}")
        return "\n".join(lines) + "\n"

    def heatmap_csv(self, source: str, layer: str) -> str:
        ring = self.heatmaps[source].get(layer)
        if ring is None or not len(ring):
            return "step\n"
        image, steps = ring.image()
        header = "step," + ",".join(f"t{t + 1}" for t in range(image.shape[1]))
        lines = [header]
        for s, row in zip(steps, image):
            lines.append(f"{int(s)}," + ",".join(_fmt(10.0 ** v) if np.isfinite(v) else ("0" if v < 0 else "")
                                                 for v in row))
        return "\n".join(lines) + "\n"


def _num(value) -> float:
    """Record numbers; "nan"/"inf" strings from metrics.jsonl become floats."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.8g}"


def _ema(values: np.ndarray, alpha: float) -> tuple[np.ndarray, float, float]:
    """Debiased EMA of ``values`` (NaNs skipped), vectorised in blocks: inside a block of
    b values, y_k = a^(k+1) y_prev + (1-a) a^k cumsum(v_j a^-j), with b small enough
    that a^-b stays far from overflow. Returns (smoothed, raw state, debias weight) so
    later values can continue it one at a time."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n == 0 or alpha <= 0:
        # No smoothing: the values themselves, a NaN step holding the last finite value
        # (what the recurrence does with a = 0).
        finite = np.isfinite(values)
        idx = np.maximum.accumulate(np.where(finite, np.arange(n), -1)) if n else np.zeros(0, dtype=int)
        out = np.where(idx >= 0, values[np.maximum(idx, 0)], np.nan) if n else values.copy()
        last = values[finite]
        return out, (float(last[-1]) if last.size else 0.0), (1.0 if last.size else 0.0)
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0)
    w = finite.astype(np.float64)  # the debias weight skips NaN steps too
    block = int(max(1, min(4096, 200 * math.log(10) / -math.log(alpha))))
    raw_out = np.empty(n)
    wt_out = np.empty(n)
    raw_prev, wt_prev = 0.0, 0.0
    k = np.arange(block, dtype=np.float64)
    pos = alpha ** k  # a^k
    neg = alpha ** -k  # a^-k
    for s in range(0, n, block):
        e = min(s + block, n)
        m = e - s
        # Skipped (NaN) steps must not decay the average: a NaN step keeps the state.
        if not finite[s:e].all():
            for i in range(s, e):
                if finite[i]:
                    raw_prev = alpha * raw_prev + (1 - alpha) * v[i]
                    wt_prev = alpha * wt_prev + (1 - alpha)
                raw_out[i], wt_out[i] = raw_prev, wt_prev
            continue
        raw_block = alpha * pos[:m] * raw_prev + (1 - alpha) * pos[:m] * np.cumsum(v[s:e] * neg[:m])
        wt_block = alpha * pos[:m] * wt_prev + (1 - alpha) * pos[:m] * np.cumsum(w[s:e] * neg[:m])
        raw_out[s:e], wt_out[s:e] = raw_block, wt_block
        raw_prev, wt_prev = raw_block[-1], wt_block[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(wt_out > 0, raw_out / wt_out, np.nan), float(raw_prev), float(wt_prev)


def load_run_folder(path: str | Path, colour: str = "#ff7f0e") -> RunData:
    """A finished (or interrupted) run folder's metrics.jsonl as a RunData for overlay.

    Raises FileNotFoundError naming the file when the folder holds no metrics."""
    from workbench.engine.records import read_metrics

    folder = Path(path)
    metrics = folder / "metrics.jsonl" if folder.is_dir() else folder
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist: is {folder} a run folder?")
    run_name = (metrics.parent.name if metrics.name == "metrics.jsonl" else metrics.stem)
    run = folder_run(metrics.parent, run_name, colour)
    run.add(read_metrics(metrics))
    if not run.status:
        run.status = "interrupted"
    return run


def folder_run(folder: str | Path, name: str, colour: str) -> RunData:
    """An empty RunData for a run folder, with what its preset.json tells the plots (the
    clip threshold, the task)."""
    run = RunData(name=name, colour=colour, run_dir=str(folder))
    preset_file = Path(folder) / "preset.json"
    if preset_file.is_file():
        try:
            from workbench import spec

            p = spec.load(preset_file)
            run.clip, run.clip_value = p.train.clip, p.train.clip_value
            run.task = p.data.task
        except Exception:  # noqa: BLE001 - an unreadable preset only loses the threshold line
            pass
    return run


class MetricsTail:
    """A metrics.jsonl that another thread or process is still writing, read a whole
    line at a time: each ``read()`` returns the records of the lines completed since the
    last one (a line still being written waits for the next read)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0  # bytes read so far, always at a line's start

    def read(self) -> list[Record]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:  # not written yet
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        lines = data[:end + 1].decode("utf-8", errors="replace").splitlines()
        return [r for r in (from_json(line) for line in lines if line.strip()) if r is not None]
