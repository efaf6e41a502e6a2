"""Learning quality on real data: each benchmark trains a built-in preset on a real file
from ../shared/data and prints one table against the baselines measured in the same run.

    .venv/bin/python bench/quality.py                   # every benchmark
    .venv/bin/python bench/quality.py --only timeseries # one (comma-separate several)

Benchmarks are entries of BENCHMARKS: name -> function(args) -> (title, rows), where rows
are dicts with the same keys (the table's columns). They run on the CPU with
``--threads`` torch threads unless ``--device`` says otherwise.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- helpers


def train_preset(preset, device: str = "cpu", seed: int = 0):
    """Train ``preset`` to its step budget; return (task, model, seconds)."""
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides
    from workbench.tasks import make_task

    preset = with_overrides(preset, [f"train.device={device}", f"train.seed={seed}", "train.checkpoint_every=0",
                                     "train.probe_every=0"])
    task = make_task(preset)
    trainer = Trainer(preset, task=task)
    started = time.perf_counter()
    end = {}
    for record in trainer.run():
        if record["kind"] == "end":
            end = record
    if end.get("status") != "finished":
        raise RuntimeError(f"{preset.name}: training ended {end.get('status')}: {end.get('message')}")
    return task, trainer.model, time.perf_counter() - started


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        print("  (no rows)")
        return
    cols = list(rows[0])
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


# ----------------------------------------------------------------------------- time series

# (preset, what the data is) — the presets read ../shared/data/timeseries/...
TIMESERIES_CASES = [
    ("forecast_temperature_lstm", "daily-min-temperatures.csv, next day"),
    ("forecast_airline_gru", "airline-passengers.csv, next 12 months"),
    ("forecast_sunspots_gru", "monthly-sunspots.csv, next month"),
]


def bench_timeseries(args) -> tuple[str, list[dict]]:
    """Each forecaster preset trained on its file (last 20% held out), scored on every
    held-out value in the file's units, against the seasonal-naive and last-value
    forecasts of the same values."""
    from workbench import presets

    rows = []
    for name, what in TIMESERIES_CASES:
        preset = presets.load_builtin(name)
        if not (SHARED / "timeseries").is_dir():
            raise SystemExit(f"the shared data folder {SHARED / 'timeseries'} is missing")
        maes, mses, mases, secs = [], [], [], []
        for seed in range(args.seeds):
            task, model, seconds = train_preset(preset, args.device, seed)
            res = task.validation_forecasts(model)
            err = res["predicted"] - res["actual"]
            scale = task.mase_scale
            maes.append(float(np.abs(err).mean()))
            mses.append(float((err ** 2).mean()))
            mases.append(float((np.abs(err) / scale).mean()))
            secs.append(seconds)
        base = task.baseline()
        cell = preset.model.layers[0].cell.upper()
        label = f"{cell} {preset.model.layers[0].hidden_size}"
        spread = f" (+-{np.std(maes):.3g}, {args.seeds} seeds)" if args.seeds > 1 else ""
        rows.append({"data": what, "forecaster": f"{label}, {preset.train.steps} steps",
                     "MAE": f"{np.mean(maes):.4g}{spread}", "MSE": float(np.mean(mses)), "MASE": float(np.mean(mases)),
                     "MAE / best baseline": float(np.mean(maes)) / base["mae"],
                     "train s": float(np.mean(secs))})
        season = preset.data.options.get("season", 1)
        rows.append({"data": "", "forecaster": f"seasonal naive (season {season})",
                     "MAE": f"{base['seasonal_naive_mae']:.4g}", "MSE": base["seasonal_naive_mse"],
                     "MASE": base["seasonal_naive_mase"],
                     "MAE / best baseline": base["seasonal_naive_mae"] / base["mae"], "train s": None})
        rows.append({"data": "", "forecaster": "last value",
                     "MAE": f"{base['last_value_mae']:.4g}", "MSE": base["last_value_mse"],
                     "MASE": base["last_value_mase"],
                     "MAE / best baseline": base["last_value_mae"] / base["mae"], "train s": None})
        print(f"  {name}: model MAE {np.mean(maes):.4g}, seasonal naive {base['seasonal_naive_mae']:.4g}, "
              f"last value {base['last_value_mae']:.4g}", flush=True)
    return "Time series: held-out MAE in the file's units (last 20% of each file)", rows


# ----------------------------------------------------------------------------- the table

BENCHMARKS: dict[str, Callable[[argparse.Namespace], tuple[str, list[dict]]]] = {
    "timeseries": bench_timeseries,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names: " + ", ".join(BENCHMARKS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per case (mean reported)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    for name in names:
        print(f"[{name}] running ...", flush=True)
        title, rows = BENCHMARKS[name](args)
        print_table(title, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
