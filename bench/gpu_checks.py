"""GPU checks of the training engine (run by bench/gpu.sh; needs a CUDA GPU).

For every cell and precision (fp32 / bf16 autocast / fp16 autocast + GradScaler) a few
training steps on CUDA with all instrumentation on: finite losses, the records'
gradient profiles present, finite and positive, the exact probe's agreement with the
taps' shape, the device and precision the start record reports. Then truncated BPTT,
the non-finite guard and a bidirectional stack on CUDA. One line per check, "ok" or
"FAIL"; exit status 1 if any failed.
"""
from __future__ import annotations

import math
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from workbench.engine.trainer import Trainer, resolve_device  # noqa: E402
from workbench.spec import Preset  # noqa: E402

FAILED: list[str] = []
# "cpu" runs the same checks' logic without a GPU (AMP is then off: fp32 expected)
DEVICE = os.environ.get("WORKBENCH_CHECK_DEVICE", "cuda")


def preset(cell: str, precision: str, steps: int = 12, **train) -> Preset:
    raw = {
        "schema_version": 1, "name": f"gpu-check-{cell}-{precision}",
        "data": {"task": "adding", "path": "", "options": {"seq_len": 30, "val_size": 64}},
        "model": {"topology": "many_to_one", "input": {"kind": "linear", "projection_size": 16},
                  "layers": [{"cell": cell, "hidden_size": 32}, {"cell": cell, "hidden_size": 24}],
                  "head": {"kind": "regression"}},
        "train": {"steps": steps, "batch_size": 16, "lr": 3e-3, "eval_every": 0, "eval_batches": 2,
                  "probe_every": 4, "log_every": 1, "device": DEVICE, "precision": precision, **train},
    }
    return Preset.from_dict(raw)


def check(name: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        detail = fn()
        print(f"ok   {name}: {detail} ({time.perf_counter() - t0:.1f} s)", flush=True)
    except Exception as exc:  # noqa: BLE001 - report and go on
        FAILED.append(name)
        print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
        traceback.print_exc(limit=3)


def train_cell(cell: str, precision: str) -> str:
    trainer = Trainer(preset(cell, precision), probe_budget=None)
    records = list(trainer.run())
    start, end = records[0], records[-1]
    assert start["device"].startswith(DEVICE), start["device"]
    expected = precision if DEVICE == "cuda" else "fp32"
    assert start["precision"] == expected, (start["precision"], expected)
    assert end["status"] == "finished", end
    steps = [r for r in records if r["kind"] == "step"]
    assert len(steps) == 12
    losses = [r["loss"] for r in steps]
    assert all(math.isfinite(x) for x in losses), losses
    taps = [r["timestep_grad_norms"] for r in steps if not r.get("scaler_skipped")]
    assert taps, "every step was skipped by the grad scaler"
    for layer in ("layers.0", "layers.1"):
        arr = taps[-1][layer]
        assert arr.shape == (30,) and np.isfinite(arr).all() and (arr > 0).any(), (layer, arr)
    probes = [r for r in records if r["kind"] == "probe"]
    assert len(probes) >= 3, len(probes)
    h = probes[-1]["hidden_grad_norms"]["layers.1"]
    # many-to-one: the exact dL/dh_t of the top layer is not zero before the last step
    assert h.shape == (30,) and np.isfinite(h).all() and h[-1] > 0 and (h[:-1] > 0).sum() >= 20, h
    if precision == "fp16" and DEVICE == "cuda":
        assert trainer.scaler is not None
    skipped = sum(1 for r in steps if r.get("scaler_skipped"))
    ms = 1e3 * float(np.median([r["time_s"] for r in steps]))
    return (f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {ms:.1f} ms/step, {len(probes)} probes"
            + (f", {skipped} steps skipped by the grad scaler" if skipped else ""))


def tbptt() -> str:
    p = preset("lstm", "bf16", tbptt=8)
    records = list(Trainer(p, probe_budget=None).run())
    steps = [r for r in records if r["kind"] == "step"]
    assert records[-1]["status"] == "finished" and len(steps) == 12
    assert len(steps[-1]["timestep_grad_norms"]["layers.0"]) == 6  # T=30 in chunks of 8: the last is 6
    return f"loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}"


def non_finite_guard() -> str:
    # eager: a graph replays the recorded kernels, not this Python-side NaN injection
    trainer = Trainer(preset("gru", "fp32", steps=5, on_non_finite="skip"), cuda_graphs=False)
    inner, calls = trainer.task.loss, [0]

    def nan_at_3(output, batch):
        loss = inner(output, batch)
        if torch.is_grad_enabled() and trainer.model.tap_inputs:
            calls[0] += 1
            if calls[0] == 3:
                return loss * float("nan")
        return loss

    trainer.task.loss = nan_at_3
    records = list(trainer.run())
    bad = [r for r in records if r["kind"] == "non_finite"]
    assert len(bad) == 1 and bad[0]["step"] == 3 and bad[0]["what"] == "loss", bad
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    return bad[0]["message"]


def non_finite_guard_graphed() -> str:
    """A NaN that the device computes shows in replayed steps too: a ReLU RNN at a huge
    learning rate blows up; the guard skips those steps and the weights stay finite."""
    p = preset("rnn_relu", "fp32", steps=12, on_non_finite="skip", lr=50.0, clip="none", log_every=1,
               probe_every=0)
    trainer = Trainer(p)
    records = list(trainer.run())
    bad = [r for r in records if r["kind"] == "non_finite"]
    end = records[-1]
    assert bad, "the run never went non-finite"
    assert all(torch.isfinite(q).all() for q in trainer.model.parameters())
    if DEVICE == "cuda":
        assert end["graph_replays"] > 0 and "graphs_off" not in end, end
    return f"{len(bad)} non-finite steps skipped, {end['graph_replays']} replays; first: {bad[0]['message']}"


def bidirectional_stack() -> str:
    p = preset("gru", "bf16")
    raw = p.to_dict()
    raw["model"]["layers"][0]["bidirectional"] = True
    records = list(Trainer(Preset.from_dict(raw), probe_budget=None).run())
    assert records[-1]["status"] == "finished"
    probe = [r for r in records if r["kind"] == "probe"][-1]
    return f"probe layers {sorted(probe['hidden_grad_norms'])}"


def fused_matches_stack() -> str:
    """A stack of identical layers run as one fused kernel gives the stack's outputs,
    final states and gradients (fp32, TF32 off), for every cell, one- and two-way."""
    from workbench.engine.model import RecurrentStack
    from workbench.spec import LayerSpec
    worst = 0.0
    torch.manual_seed(0)
    with torch.backends.cudnn.flags(allow_tf32=False):
        for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
            for bidir in (False, True):
                stack = RecurrentStack([LayerSpec(cell=cell, hidden_size=48, bidirectional=bidir)] * 3, 20).to(DEVICE)
                D = 2 if bidir else 1
                x = torch.randn(8, 40, 20, device=DEVICE, requires_grad=True)
                h0 = [torch.randn(D, 8, 48, device=DEVICE) for _ in range(3)]
                initial = [(h, torch.randn_like(h)) for h in h0] if cell == "lstm" else h0
                got = []
                for fused in (False, True):
                    stack.fused = fused
                    out, finals = stack(x, initial)
                    flat = [t for f in finals for t in (f if isinstance(f, tuple) else (f,))]
                    loss = out.pow(2).mean() + sum(t.sum() for t in flat)
                    grads = torch.autograd.grad(loss, [x, *stack.parameters()])
                    got.append([out.detach(), *[t.detach() for t in flat], *grads])
                for a, b in zip(*got):
                    err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                    worst = max(worst, err)
                    assert err < 1e-4, (cell, bidir, err)
    return f"largest relative difference {worst:.1e}"


def fused_training() -> str:
    """fp32 on CUDA, identical layers, taps every 5th step: the other steps run fused."""
    raw = preset("lstm", "fp32", steps=10, log_every=5).to_dict()
    raw["model"]["layers"] = [{"cell": "lstm", "hidden_size": 32, "dropout": 0.1}] * 3
    trainer = Trainer(Preset.from_dict(raw), probe_budget=None, fused_stacks=True)
    records = list(trainer.run())
    assert trainer.model.encoder.fused and trainer.model.encoder.fusable
    steps = [r for r in records if r["kind"] == "step"]
    assert records[-1]["status"] == "finished" and len(steps) == 10
    assert all(math.isfinite(r["loss"]) for r in steps)
    tapped = [r["step"] for r in steps if "timestep_grad_norms" in r]
    assert tapped == [5, 10], tapped
    return f"loss {steps[0]['loss']:.3f} -> {steps[-1]['loss']:.3f}, taps at steps {tapped}"


def stack_path_timed() -> str:
    """On CUDA the engine times the untapped steps' paths (fused or not, graphed or not)
    and keeps the fastest."""
    raw = preset("lstm", "fp32", steps=30, log_every=100, probe_every=0).to_dict()
    raw["model"]["layers"] = [{"cell": "lstm", "hidden_size": 256}] * 2
    trainer = Trainer(Preset.from_dict(raw))
    end = list(trainer.run())[-1]
    tuner = trainer._path_tuner
    if DEVICE != "cuda":
        assert tuner is None and end["fused_stacks"] is False
        return "no timing on the CPU"
    assert tuner is not None and tuner.choice is not None, end
    assert (end["fused_stacks"], end["untapped_graphs"]) == tuner.choice, end
    ms = ", ".join(f"{'fused' if f else 'layers'}+{'graph' if g else 'eager'} {1e3 * float(np.median(v)):.2f} ms"
                   for (f, g), v in tuner.times.items())
    return f"{ms}: kept {tuner.choice}"


def graphs_match_eager() -> str:
    """Steps replayed from CUDA graphs train exactly as launched ones: the same losses,
    norms and taps, fp32 and bf16, taps every step and every third."""
    if DEVICE != "cuda":
        return "CUDA graphs need CUDA: nothing to compare on the CPU"
    worst, replays = 0.0, []
    for precision in ("fp32", "bf16"):
        for log_every in (1, 3):
            raw = preset("lstm", precision, steps=12, log_every=log_every, probe_every=0).to_dict()
            raw["model"]["layers"] = [{"cell": "lstm", "hidden_size": 64}] * 2
            runs = {}
            for graphs in (False, True):
                records = list(Trainer(Preset.from_dict(raw), cuda_graphs=graphs, fused_stacks=False).run())
                end = records[-1]
                assert end["status"] == "finished" and "graphs_off" not in end, end
                steps = [r for r in records if r["kind"] == "step"]
                runs[graphs] = (steps, end)
            (eager, _), (graphed, end) = runs[False], runs[True]
            assert end["graph_replays"] >= 6, end  # warm-up steps run eagerly, the rest replay
            replays.append(end["graph_replays"])
            for a, b in zip(eager, graphed):
                for key in ("loss", "grad_norm", "grad_norm_clipped"):
                    err = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12)
                    worst = max(worst, err)
                    assert err < 1e-4, (precision, log_every, a["step"], key, a[key], b[key])
                for layer, arr in a.get("timestep_grad_norms", {}).items():
                    other = b["timestep_grad_norms"][layer]
                    err = float(np.max(np.abs(arr - other) / np.maximum(np.abs(arr), 1e-12)))
                    worst = max(worst, err)
                    assert err < 1e-4, (precision, log_every, a["step"], layer, err)
    return f"largest relative difference {worst:.1e}; replays per 12-step run {replays}"


def graphs_on_presets() -> str:
    """Every built-in preset whose data is in the repository trains a few steps on CUDA with
    graphs on: each either replays graphs or turns them off with a reason, and finishes."""
    from workbench.presets import builtin_paths
    from workbench.spec import load, with_overrides
    lines = []
    for path in builtin_paths():
        p = with_overrides(load(path), [f"train.device={DEVICE}", "train.steps=6", "train.eval_every=0",
                                        "train.checkpoint_every=0", "train.probe_every=3", "train.epochs=0",
                                        "train.on_non_finite=skip"])  # (one preset is made to blow up)
        try:
            trainer = Trainer(p)
        except Exception as exc:  # noqa: BLE001 - data that lives outside the repository
            lines.append(f"{path.stem}: not run ({type(exc).__name__})")
            continue
        end = list(trainer.run())[-1]
        assert end["status"] == "finished", (path.stem, end)
        state = f"{end['graph_replays']} replays" + (f", OFF: {end['graphs_off']}" if end.get("graphs_off") else "")
        lines.append(f"{path.stem}: {state}")
    return "\n       " + "\n       ".join(lines)


def main() -> int:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("FAIL no CUDA GPU visible to torch")
        return 1
    if DEVICE == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
              f"{torch.cuda.get_device_name()}, bf16 supported: {torch.cuda.is_bf16_supported()}", flush=True)
    check(f"device auto resolves to {DEVICE}", lambda: str(resolve_device("auto")))
    for cell in ("rnn_tanh", "rnn_relu", "lstm", "gru"):
        for precision in ("fp32", "bf16", "fp16"):
            check(f"train {cell} {precision}", lambda c=cell, pr=precision: train_cell(c, pr))
    check("tbptt lstm bf16", tbptt)
    check("non-finite guard on cuda", non_finite_guard)
    check("non-finite guard, graphed steps", non_finite_guard_graphed)
    check("bidirectional gru bf16", bidirectional_stack)
    check("fused stack == single-layer stack", fused_matches_stack)
    check("fused training steps fp32", fused_training)
    check("fused or not, by timing", stack_path_timed)
    check("CUDA graphs == eager", graphs_match_eager)
    check("CUDA graphs on the built-in presets", graphs_on_presets)
    print(f"gpu_checks: {len(FAILED)} failed" + (f": {', '.join(FAILED)}" if FAILED else ""), flush=True)
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
