"""What drawing the Dynamics panel costs the interface thread, beside the way its hidden-state
trajectory used to be drawn (the baseline, measured in the same run).

Trains PRESET for two steps with a Dynamics record at each (probe_every 1), then times, by
the interface thread's CPU (time.thread_time: fair on a shared machine), N forced redraws
of the panel (every tab's items, as one record's arrival makes) and, the baseline, the
trajectory drawn as before: one scatter item per row with a brush made per dot, so that
pyqtgraph renders a symbol for every dot of every row. Printed: ms per panel redraw, ms per
baseline trajectory draw, and the ratio.

    PYTHONPATH=$PWD .venv/bin/python bench/dynamics_draw.py charlm_lstm [--repeats 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tinyshakespeare" / "input.txt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", nargs="?", default="charlm_lstm")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)

    from workbench.engine import cpu_policy

    cpu_policy.apply("bench")
    import numpy as np
    import pyqtgraph as pg

    from workbench import presets
    from workbench.engine.trainer import Trainer
    from workbench.gui.app import create_app
    from workbench.gui.plots import DynamicsPanel
    from workbench.gui.rundata import RunData
    from workbench.spec import with_overrides

    sets = ["train.steps=2", "train.probe_every=1", "train.device=cpu", "train.num_threads=1"]
    preset = presets.load_builtin(args.preset)
    if preset.data.task == "charlm":
        sets.append(f"data.path={DATA.resolve()}")
    preset = with_overrides(preset, sets)
    records = list(Trainer(preset, probe_budget=None).run())
    app = create_app()
    run = RunData(args.preset, colour="#1f77b4", task=preset.data.task)
    run.add(records)
    panel = DynamicsPanel()
    panel.resize(1000, 560)
    panel.show()
    app.processEvents()
    layer = panel.layer_box.currentText() or run.dynamics.layers[0]
    found = run.dynamics.latest.trajectories[layer]
    rows = [np.asarray(r, dtype=np.float64)[:2].T for r in found["rows"]]  # each [T, 2]

    def panel_draw() -> None:
        panel._drawn.clear()  # as a new record does
        panel.refresh([run], run)

    baseline_plot = pg.PlotWidget()
    baseline_item = baseline_plot.getPlotItem()
    baseline_item.setClipToView(False)
    cmap = pg.colormap.get("viridis")

    def baseline_draw() -> None:  # the trajectory as drawn before: an item per row, a brush per dot
        baseline_item.clear()
        for xy in rows:
            t = np.linspace(0.0, 1.0, len(xy))
            brushes = [pg.mkBrush(c) for c in cmap.map(t, mode="qcolor")]
            item = pg.PlotDataItem(symbol="o", symbolSize=5, symbolPen=None, pen=None)
            baseline_item.addItem(item)
            item.setData(xy[:, 0], xy[:, 1], symbolBrush=brushes)

    def timed(fn) -> float:
        start = time.thread_time()
        fn()
        app.processEvents()
        return (time.thread_time() - start) * 1000

    timed(panel_draw), timed(baseline_draw)  # warm-up
    panel_ms, base_ms = [], []
    for _ in range(args.repeats):  # alternating, so load falls on both alike
        panel_ms.append(timed(panel_draw))
        base_ms.append(timed(baseline_draw))
    p, b = statistics.median(panel_ms), statistics.median(base_ms)
    T = len(rows[0]) if rows else 0
    print(f"{args.preset}: {len(rows)} trajectory rows x {T} steps, layer {layer}")
    print(f"panel redraw (every tab, trajectory included): {p:.1f} ms CPU (median of {args.repeats})")
    print(f"baseline, the trajectory alone drawn the old way: {b:.1f} ms CPU")
    print(f"ratio panel / old trajectory alone: {p / b:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
