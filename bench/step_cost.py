"""Per-step training cost of variants of one preset, relative to the preset as it is: how
many steps of each variant fit the same compute budget (used to size the tuned presets'
step budgets, see BENCHMARKS.md "Tuned with sweeps").

    python bench/step_cost.py charlm_lstm --data ../shared/data/tinyshakespeare/input.txt \
        --variant b128=train.batch_size=128 --variant h384=model.layers.0.hidden_size=384,model.layers.1.hidden_size=384

The variants take turns step by step in one process (one torch thread) and each is timed
by the CPU time of its own turns (time.process_time), so load from other processes on a
shared machine falls on all of them alike. The CLI's CPU policy (allocator) is applied. Printed: CPU ms per step of each, its ratio to
the base preset, and the steps it may take for the base's --base-steps.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset")
    ap.add_argument("--data", default="", help="data.path for every variant")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=FIELD=V[,FIELD=V]",
                    help="a named variant: overrides separated by commas (repeatable)")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    ap.add_argument("--base-steps", type=int, default=0, help="the base's step budget, to scale")
    args = ap.parse_args(argv)

    from workbench.engine import cpu_policy

    cpu_policy.apply("bench")  # the allocator policy every entry point applies (WORKBENCH_ALLOCATOR=default: off)
    import torch

    from workbench import presets
    from workbench.engine.trainer import Trainer
    from workbench.spec import with_overrides
    from workbench.tasks import make_task

    torch.set_num_threads(1)
    base = presets.load_builtin(args.preset)
    common = ["train.device=cpu", "train.eval_every=0", "train.checkpoint_every=0", "train.probe_every=0",
              "train.epochs=0", f"train.steps={args.steps + args.warmup + 1}", "train.num_threads=1"]
    if args.data:
        common.append(f"data.path={args.data}")
    variants = [("base", [])]
    for text in args.variant:
        name, _, sets = text.partition("=")
        variants.append((name, [s for s in sets.split(",") if s]))
    runs = []
    for name, sets in variants:
        preset = with_overrides(base, common + sets)
        runs.append((name, sets, Trainer(preset, task=make_task(preset)).run()))
    cpu = {name: [] for name, _, _ in runs}
    for i in range(args.steps + args.warmup):
        for name, _sets, gen in runs:
            t0 = time.process_time()
            for record in gen:
                if record["kind"] == "step":
                    break
            if i >= args.warmup:
                cpu[name].append(time.process_time() - t0)
    base_ms = float(np.median(cpu["base"])) * 1000
    print(f"{args.preset}: CPU ms per step, median of {args.steps} (one thread, interleaved)")
    print(f"  {'variant':<12} {'ms/step':>8} {'x base':>7} {'steps':>7}  overrides")
    for name, sets, _ in runs:
        ms = float(np.median(cpu[name])) * 1000
        steps = int(args.base_steps * base_ms / ms) if args.base_steps else ""
        print(f"  {name:<12} {ms:8.1f} {ms / base_ms:7.3f} {steps!s:>7}  {','.join(sets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
