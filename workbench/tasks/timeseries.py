"""Time-series forecasting: the next value, or the next k values, of a numeric series.

Data: a CSV file (``data.path``; see workbench.io.series for the format, the time column
and the value columns), or, with the path empty, a built-in generated series (two
seasonal waves, a slow trend and autocorrelated noise, deterministic for the seed).

The split is chronological and never shuffled across: the first ``1 - val_fraction`` of
the rows train, the rest (20% by default) is held out. Normalisation statistics (mean
and standard deviation per column) come from the training part only, so nothing about
the held-out future leaks into training.

Windows: the model reads ``window`` consecutive values (all value columns: [W, F]) and
- many_to_one forecasts the next ``horizon`` = k values: output [B, k*F] (k-major);
- many_to_many forecasts at every position p the k values after it (one step ahead for
  k = 1): output [B, W, k*F]. Its layers must not be bidirectional (that would read the
  future it is asked to forecast).
Each held-out row is forecast from the ``window`` rows before it (which may reach back
into the training part: they are the known past). Validation always scores every
held-out window, so the metrics and ``baseline()`` are over the same targets.

With ``relative`` the model never sees a level, only changes: many_to_one reads the
window minus its last value and forecasts the next values minus that last value;
many_to_many reads the window minus its first value and forecasts at each position the
change from that position's value. Values are then scaled by the training part's
standard deviation of one-step changes. Series with a trend (airline passengers) need
this: their held-out levels lie above anything in the training part.

Metrics are in the file's units (the forecast de-normalised): MSE, MAE and MASE, the
MAE divided by the in-sample MAE of the seasonal-naive forecast on the training part
(Hyndman & Koehler 2006; season m = ``season``, 1 = the plain naive forecast). For
many_to_many they score each window's last position: the forecast from the full window,
directly comparable with many_to_one and with the baselines. ``baseline()`` gives the
seasonal-naive forecast (the value one season before) and the last-value forecast on
the same held-out targets; a network is worth something when its MAE beats both.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from workbench.io.errors import DataError
from workbench.io.paths import resolve_data_path
from workbench.io.series import GAP_MODES, read_series
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task


@dataclass
class ForecastOptions:
    time_column: str = ""  # "" = the first column; "-" = the file has no time column
    value_columns: list[str] = field(default_factory=list)  # empty = every other column
    gaps: str = "error"  # missing time steps: error / ignore / fill (interpolate)
    window: int = 30  # values the model reads
    horizon: int = 1  # values it forecasts (k)
    val_fraction: float = 0.2  # the last part of the series, held out
    season: int = 1  # seasonal-naive baseline and MASE: 12 monthly, 365 daily, 1 = naive
    normalise: bool = True  # standardise with the training part's mean and deviation
    # Read each window relative to a known value and forecast changes (see the module
    # docstring): for series with a trend, whose later levels training never saw.
    relative: bool = False
    # The built-in series (data.path empty):
    length: int = 2000
    period: int = 50
    noise: float = 0.3


def generated_series(length: int, period: int, noise: float, seed: int) -> np.ndarray:
    """[length, 1]: 10 + two seasonal waves + slow trend + AR(1) noise; fixed by ``seed``."""
    rng = np.random.default_rng(seed + 7_919)
    t = np.arange(length, dtype=np.float64)
    phase = rng.uniform(0, 2 * np.pi)
    wave = 3.0 * np.sin(2 * np.pi * t / period) + 1.2 * np.sin(4 * np.pi * t / period + phase)
    ar = np.zeros(length)
    shocks = rng.normal(0.0, noise, length)
    for i in range(1, length):
        ar[i] = 0.8 * ar[i - 1] + shocks[i]
    return (10.0 + wave + 0.5 * t / length + ar)[:, None]


class ForecastTask(Task):
    name = "forecast"
    title = "Time-series forecasting (CSV or generated)"
    topologies = ("many_to_one", "many_to_many")
    option_choices = {"gaps": tuple(GAP_MODES)}
    Options = ForecastOptions
    main_metric = "mae"
    lower_is_better = True

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        checks = [
            ("window", o.window, 1, 100_000), ("horizon", o.horizon, 1, 10_000), ("season", o.season, 1, 1_000_000),
            ("length", o.length, 20, 10_000_000), ("period", o.period, 2, 1_000_000),
        ]
        for name, value, lo, hi in checks:
            if not lo <= value <= hi:
                raise SpecError(f"data.options.{name}", f"must be between {lo} and {hi}, got {value}")
        if not 0.0 < o.val_fraction <= 0.9:
            raise SpecError("data.options.val_fraction", f"must be in (0, 0.9], got {o.val_fraction}")
        if o.gaps not in GAP_MODES:
            raise SpecError("data.options.gaps", f"{o.gaps!r} is not one of: {', '.join(GAP_MODES)}")
        if not 0.0 <= o.noise <= 1e6:
            raise SpecError("data.options.noise", f"must be a non-negative number, got {o.noise}")
        self.topology = "many_to_one"  # set by check_model from the preset
        self.relative = o.relative

    # -- life cycle ------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.path or "the built-in series"

    def prepare(self) -> None:
        o = self.options
        if self.path:
            series = read_series(resolve_data_path(self.path), o.time_column, o.value_columns, o.gaps)
            values, self.times, self.columns = series.values, series.times, series.names
            self.time_name = series.time_name
        else:
            values = generated_series(o.length, o.period, o.noise, self.seed)
            self.times, self.columns, self.time_name = [str(i) for i in range(len(values))], ["value"], "step"
        N, F = values.shape
        W, k, m = o.window, o.horizon, o.season
        n_train = int(round(N * (1.0 - o.val_fraction)))
        if n_train - W - k + 1 < 1:
            raise DataError(self.source, f"has {N} rows; its training part ({n_train} rows) is too short for a "
                                         f"window of {W} plus a horizon of {k}: lower data.options.window")
        if N - n_train < k:
            raise DataError(self.source, f"has {N} rows; its held-out part ({N - n_train} rows) is shorter than "
                                         f"the horizon {k}: raise data.options.val_fraction")
        if m >= n_train:
            raise SpecError("data.options.season", f"a season of {m} needs more history than the {n_train} "
                                                   f"training rows of {self.source}")
        self.values = values  # [N, F] file units
        self.n_train = n_train
        if o.relative:
            # Changes carry no level: scale by the training part's one-step changes.
            self.mean = np.zeros(F)
            std = np.diff(values[:n_train], axis=0).std(axis=0) if o.normalise else np.ones(F)
            self.std = np.where(std > 0, std, 1.0)
        elif o.normalise:
            self.mean = values[:n_train].mean(axis=0)
            std = values[:n_train].std(axis=0)
            self.std = np.where(std > 0, std, 1.0)
        else:
            self.mean, self.std = np.zeros(F), np.ones(F)
        self.z = torch.from_numpy(((values - self.mean) / self.std).astype(np.float32))  # [N, F]
        # Origins: index of the first forecast value; the window is [o - W, o).
        self.train_origins = torch.arange(W, n_train - k + 1)
        self.val_origins = torch.arange(max(n_train, W), N - k + 1)
        # MASE scale: in-sample seasonal-naive MAE per column (training part only).
        diffs = np.abs(values[m:n_train] - values[: n_train - m])
        self.mase_scale = diffs.mean(axis=0)
        self._baseline = self._baseline_scores()
        self.tail_values = values[-W:].tolist()
        self.tail_times = self.times[-W:]

    def _targets(self, origins: np.ndarray) -> np.ndarray:
        """[n, k, F] true values (file units) for forecast origins."""
        k = self.options.horizon
        idx = origins[:, None] + np.arange(k)[None, :]
        return self.values[idx]

    def seasonal_naive(self, origins: np.ndarray) -> np.ndarray:
        """[n, k, F]: for lead h = 1..k, the value one (or more) season(s) before the target,
        taken from what was known at the origin."""
        m, k = self.options.season, self.options.horizon
        lead = np.arange(1, k + 1)
        back = m * np.ceil(lead / m).astype(np.int64)
        idx = origins[:, None] - 1 + lead[None, :] - back[None, :]
        return self.values[idx]

    def last_value(self, origins: np.ndarray) -> np.ndarray:
        k = self.options.horizon
        return np.repeat(self.values[origins - 1][:, None, :], k, axis=1)

    def _scores(self, pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
        err = pred - true  # [n, k, F]
        return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err))),
                "mase": float(np.mean(np.abs(err) / self._scale()))}

    def _scale(self) -> np.ndarray:
        scale = np.asarray(self.mase_scale, dtype=np.float64)
        return np.where(scale > 0, scale, np.nan)  # a constant training part has no MASE

    def _baseline_scores(self) -> dict[str, float]:
        origins = self.val_origins.numpy()
        true = self._targets(origins)
        naive = self._scores(self.seasonal_naive(origins), true)
        last = self._scores(self.last_value(origins), true)
        out = {f"seasonal_naive_{k}": v for k, v in naive.items()}
        out.update({f"last_value_{k}": v for k, v in last.items()})
        # The plain keys: the better of the two, i.e. what a model has to beat.
        best = naive if naive["mae"] <= last["mae"] else last
        out.update(best)
        return out

    def artifacts(self) -> dict:
        o = self.options
        return {"task": self.name, "columns": list(self.columns), "time_column": self.time_name,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "window": o.window, "horizon": o.horizon, "season": o.season, "relative": o.relative,
                "mase_scale": [float(v) for v in self.mase_scale], "rows": int(self.values.shape[0]),
                "train_rows": int(self.n_train), "baseline": dict(self._baseline),
                "tail_values": self.tail_values, "tail_times": list(self.tail_times)}

    def restore(self, artifacts: dict) -> None:
        try:
            self.columns = list(artifacts["columns"])
            self.time_name = artifacts.get("time_column")
            self.mean = np.asarray(artifacts["mean"], dtype=np.float64)
            self.std = np.asarray(artifacts["std"], dtype=np.float64)
            self.mase_scale = np.asarray(artifacts["mase_scale"], dtype=np.float64)
            self._baseline = dict(artifacts.get("baseline", {}))
            self.tail_values = artifacts.get("tail_values", [])
            self.tail_times = artifacts.get("tail_times", [])
            self.n_train = int(artifacts.get("train_rows", 0))
            self.relative = bool(artifacts.get("relative", False))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("task.json", f"the forecast task's saved state is incomplete ({exc})") from None
        if len(self.mean) != len(self.columns) or len(self.std) != len(self.columns):
            raise DataError("task.json", "the forecast task's saved statistics do not match its columns")
        self.prepared = True

    # -- shapes --------------------------------------------------------------------------
    @property
    def features(self) -> int:
        return len(self.columns)

    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="features", feature_size=self.features,
                       output_size=self.options.horizon * self.features)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.input.kind != "linear":
            raise SpecError("model.input.kind", "a forecaster reads numbers: use the 'linear' input")
        if model.head.kind != "regression":
            raise SpecError("model.head.kind", "forecasting is a regression: use the 'regression' head")
        if model.topology == "many_to_many":
            for i, layer in enumerate(model.layers):
                if layer.bidirectional:
                    raise SpecError(f"model.layers.{i}.bidirectional",
                                    "a many-to-many forecaster predicts each next value from the values before "
                                    "it; a bidirectional layer would read the future: use many_to_one for a "
                                    "bidirectional forecaster")
        self.topology = model.topology

    # -- data ----------------------------------------------------------------------------
    def _batch(self, origins: torch.Tensor) -> Batch:
        W, k, F = self.options.window, self.options.horizon, self.features
        steps = origins[:, None] - W + torch.arange(W)[None, :]  # [B, W] indices of the inputs
        x = self.z[steps]  # [B, W, F]
        if self.topology == "many_to_many":
            idx = steps[:, :, None] + 1 + torch.arange(k)[None, None, :]  # [B, W, k]
            y = self.z[idx]  # [B, W, k, F]
            if self.relative:
                y = y - x[:, :, None, :]  # change from each position's own value
                x = x - x[:, :1]  # the window relative to its first value
            y = y.reshape(len(origins), W, k * F)  # [B, W, k*F]
        else:
            idx = origins[:, None] + torch.arange(k)[None, :]  # [B, k]
            y = self.z[idx]  # [B, k, F]
            if self.relative:
                y = y - x[:, -1:]  # change from the last known value
                x = x - x[:, -1:]  # the window relative to its last value
            y = y.reshape(len(origins), k * F)  # [B, k*F]
        return Batch(x=x, y=y)

    def epoch_size(self, batch_size: int) -> int | None:
        return math.ceil(len(self.train_origins) / batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One pass over the training windows in a random order (training part only)."""
        order = self.train_origins[torch.randperm(len(self.train_origins), generator=generator)]
        for start in range(0, len(order), batch_size):
            yield self._batch(order[start:start + batch_size])

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        """Every held-out window, in time order; batches grow past ``batch_size`` where
        ``max_batches`` would otherwise leave windows out."""
        n = len(self.val_origins)
        size = max(batch_size, math.ceil(n / max(max_batches, 1)))
        for start in range(0, n, size):
            yield self._batch(self.val_origins[start:start + size])

    # -- loss and metrics ----------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(output.float(), batch.y)

    def _to_units(self, z: torch.Tensor, last: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs [B, k*F] -> [B, k, F] in the file's units. ``last`` [B, F]: the
        last known value (file units), the base of a relative forecast."""
        F = self.features
        std = torch.as_tensor(self.std, dtype=torch.float64, device=z.device)
        z = z.double().reshape(z.shape[0], -1, F) * std
        if self.relative:
            return z + last.double().to(z.device)[:, None, :]
        return z + torch.as_tensor(self.mean, dtype=torch.float64, device=z.device)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        pred, true = output, batch.y
        if pred.dim() == 3:  # many_to_many: the forecast from the full window
            pred, true = pred[:, -1], true[:, -1]
        F = self.features
        std = torch.as_tensor(self.std, dtype=torch.float64, device=pred.device)
        # Offsets (mean, or the relative forecast's base) cancel in the error.
        err = (pred.detach().double() - true.double()).reshape(pred.shape[0], -1, F) * std  # [B, k, F]
        scale = torch.as_tensor(self._scale(), dtype=torch.float64, device=err.device)
        n = float(err.numel())
        return {"mse": (float(err.pow(2).sum()), n), "mae": (float(err.abs().sum()), n),
                "mase": (float((err.abs() / scale).sum()), n)}

    def baseline(self) -> dict[str, float]:
        """Seasonal-naive and last-value forecasts on the held-out targets ("seasonal_naive_mae",
        "last_value_mae", ... and mse/mase); the plain "mae"/"mse"/"mase" are the better
        of the two, the score to beat."""
        return dict(self._baseline)

    # -- inference (try-out) -------------------------------------------------------------
    @torch.no_grad()
    def forecast(self, model: torch.nn.Module, history) -> np.ndarray:
        """The next ``horizon`` values after ``history`` (file units, [T, F] or [T] for one
        column; the last ``window`` rows are used): returns [k, F] in file units. Works on
        a restored task (no data needed)."""
        h = np.asarray(history, dtype=np.float64)
        if h.ndim == 1:
            h = h[:, None]
        if h.ndim != 2 or h.shape[1] != self.features or h.shape[0] < 1:
            raise ValueError(f"history must be [T, {self.features}] values, got shape {h.shape}")
        h = h[-self.options.window:]
        device = next(model.parameters()).device
        x = torch.as_tensor((h - self.mean) / self.std, dtype=torch.float32, device=device)[None]  # [1, T, F]
        if self.relative:
            x = x - (x[:, :1] if self.topology == "many_to_many" else x[:, -1:])
        was_training = model.training
        model.eval()
        out = model(x)
        model.train(was_training)
        if out.dim() == 3:
            out = out[:, -1]
        last = torch.as_tensor(h[-1:], dtype=torch.float64)  # [1, F]
        return self._to_units(out, last)[0].cpu().numpy()  # [k, F]

    def forecast_next(self, model: torch.nn.Module) -> np.ndarray:
        """The forecast after the end of the series (uses the tail kept in the artifacts)."""
        return self.forecast(model, self.tail_values)

    @torch.no_grad()
    def validation_forecasts(self, model: torch.nn.Module, batch_size: int = 256) -> dict[str, np.ndarray]:
        """Every held-out forecast beside the truth and the two baselines (file units):
        {"times": [n] labels of each first forecast value, "actual", "predicted",
        "seasonal_naive", "last_value": [n, k, F]}. Needs the prepared data."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        preds = []
        for start in range(0, len(self.val_origins), batch_size):
            origins = self.val_origins[start:start + batch_size]
            batch = self._batch(origins).to(device)
            out = model(batch.x)
            if out.dim() == 3:
                out = out[:, -1]
            last = torch.as_tensor(self.values[origins.numpy() - 1])  # [B, F]
            preds.append(self._to_units(out, last).cpu().numpy())
        model.train(was_training)
        origins = self.val_origins.numpy()
        return {"times": np.asarray([self.times[o] for o in origins]), "actual": self._targets(origins),
                "predicted": np.concatenate(preds), "seasonal_naive": self.seasonal_naive(origins),
                "last_value": self.last_value(origins)}
