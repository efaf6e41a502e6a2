"""The adding problem at growing lengths: the vanishing-gradient story in numbers.

For T = 50, 100, 200, 400 and each of a vanilla tanh RNN, an LSTM and a GRU (the built-in
adding_* presets, same size, optimizer and budget), train until the validation MSE drops
below 0.01 or the step budget runs out, and report the steps it took, the final MSE
against the trivial baseline (1/6: always predict 1.0), and how the exact gradient
||dL/dh_t|| decays per step back in time at initialisation (the probe at step 0).
Registered in bench/quality.py as the benchmark "adding".
"""
from __future__ import annotations

import argparse
import time

from workbench.engine.gradstats import fit_decay

LENGTHS = (50, 100, 200, 400)
CELLS = (("rnn_tanh", "adding_rnn_tanh"), ("lstm", "adding_lstm"), ("gru", "adding_gru"))
TARGET_MSE = 0.01


def solve_adding(preset_name: str, seq_len: int, max_steps: int, eval_every: int, device: str, seed: int) -> dict:
    from workbench import presets
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides

    preset = with_overrides(presets.load_builtin(preset_name), [
        f"data.options.seq_len={seq_len}", f"train.steps={max_steps}", f"train.eval_every={eval_every}",
        f"train.probe_every={max_steps}", "train.checkpoint_every=0", f"train.device={device}",
        f"train.seed={seed}", "train.log_every=1000000"])
    trainer = Trainer(preset, probe_budget=None)
    solved_at, last_mse, init_profile = None, float("nan"), None
    started = time.perf_counter()
    for record in trainer.run():
        if record["kind"] == "probe" and init_profile is None:
            init_profile = next(iter(record["hidden_grad_norms"].values()))
        elif record["kind"] == "eval":
            last_mse = record["mse"]
            if last_mse < TARGET_MSE and solved_at is None:
                solved_at = record["step"]
                trainer.control.stop()
    decay = fit_decay(init_profile) if init_profile is not None else None
    return {"steps_to_0.01": solved_at if solved_at is not None else f"not within {max_steps}",
            "last_val_mse": last_mse, "decay_per_step_at_init": decay.factor_per_step if decay else float("nan"),
            "grad_h1/hT_at_init": decay.ratio_first_last if decay else float("nan"),
            "seconds": time.perf_counter() - started}


def bench_adding(args: argparse.Namespace) -> tuple[str, list[dict]]:
    rows = []
    lengths = [int(v) for v in str(getattr(args, "lengths", "") or ",".join(map(str, LENGTHS))).split(",")]
    for seq_len in lengths:
        for cell, preset_name in CELLS:
            print(f"  adding T={seq_len} {cell} ...", flush=True)
            result = solve_adding(preset_name, seq_len, args.adding_steps, 100, args.device, seed=0)
            rows.append({"T": seq_len, "cell": cell, **result, "trivial_mse": 1 / 6})
    return (f"Adding problem: steps until validation MSE < {TARGET_MSE} (budget {args.adding_steps} steps, "
            "hidden 64, batch 64, Adam 3e-3), and the exact gradient's decay per step back in time at init", rows)
