"""Plot buffers (Qt-free): series, heatmap rings, smoothing, CSV, run folders."""
from __future__ import annotations

import json
import math

import numpy as np

from workbench.gui.rundata import HeatmapRing, RunData, Series, _ema, load_run_folder


def naive_ema(values, a):
    raw = w = 0.0
    out = []
    for v in values:
        if math.isfinite(v):
            raw, w = a * raw + (1 - a) * v, a * w + (1 - a)
        out.append(raw / w if w > 0 else math.nan)
    return np.array(out)


def test_series_keeps_newest_in_order():
    s = Series(capacity=10, initial=4)
    for i in range(37):
        s.append(i)
    assert list(s.view()) == list(range(27, 37))
    assert s.last() == 36


def test_ema_matches_the_recurrence():
    rng = np.random.default_rng(0)
    values = rng.random(5000) * 3
    values[100] = np.nan
    for a in (0.0, 0.3, 0.9, 0.999):
        out, _raw, _w = _ema(values, a)
        assert np.allclose(out, naive_ema(values, a), equal_nan=True)


def test_incremental_smoothing_equals_full():
    run = RunData("r")
    losses = np.linspace(1, 0.1, 300)
    run.add([{"kind": "step", "step": i + 1, "loss": float(v)} for i, v in enumerate(losses[:100])])
    run.smoothed(0.8)
    run.add([{"kind": "step", "step": i + 101, "loss": float(v)} for i, v in enumerate(losses[100:])])
    assert np.allclose(run.smoothed(0.8), naive_ema(losses, 0.8))


def test_heatmap_ring_scrolls_and_pads():
    ring = HeatmapRing(rows=3)
    ring.append(1, np.array([1.0, 10.0]))
    ring.append(2, np.array([0.1, 1.0, 100.0]))  # longer: columns grow
    image, steps = ring.image()
    assert image.shape == (2, 3) and np.isnan(image[0, 2]) and image[1, 2] == 2.0
    for s in (3, 4):
        ring.append(s, np.array([1.0, np.nan, 0.0]))  # zero: -inf (underflow); non-finite: NaN
    image, steps = ring.image()
    assert list(steps) == [2, 3, 4] and np.isneginf(image[-1, 2]) and np.isnan(image[-1, 1])


def test_records_into_buffers_and_csv(tmp_path):
    run = RunData("r", clip="norm", clip_value=1.0)
    taps = {"layers.0": np.array([1e-3, 1e-2, 1e-1])}
    run.add([{"kind": "start", "total_steps": 3, "layers": ["layers.0"]},
             {"kind": "step", "step": 1, "loss": 1.0, "lr": 0.1, "grad_norm": 2.0, "grad_norm_clipped": 1.0,
              "clipped": True, "timestep_grad_norms": taps},
             {"kind": "probe", "step": 1, "hidden_grad_norms": taps},
             {"kind": "non_finite", "step": 2, "what": "loss", "action": "skipped", "message": "x"},
             {"kind": "eval", "step": 1, "val_loss": 0.5, "mse": 0.5},
             {"kind": "end", "status": "finished", "step": 2}])
    assert list(run.clip_steps.view()) == [1.0] and len(run.non_finite) == 1
    assert run.status == "finished" and run.total_steps == 3
    d = run.decay("exact")["layers.0"]
    assert math.isclose(d.factor_per_step, 0.1, rel_tol=1e-6)  # x0.1 per step going back
    assert run.scalar_csv().splitlines()[1].startswith("1,1,")
    assert run.val_csv().splitlines() == ["step,val_loss,mse", "1,0.5,0.5"]
    assert run.heatmap_csv("inputs", "layers.0").splitlines()[1] == "1,0.001,0.01,0.1"
    # a run folder's metrics.jsonl (NaN written as a string) loads for overlay
    folder = tmp_path / "run"
    folder.mkdir()
    lines = [{"kind": "step", "step": i, "loss": "nan" if i == 2 else 1.0 / i, "lr": 0.1, "grad_norm": 1.0}
             for i in range(1, 5)]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{torn")
    loaded = load_run_folder(folder)
    assert len(loaded.steps) == 4 and math.isnan(loaded.loss.view()[1]) and loaded.status == "interrupted"
