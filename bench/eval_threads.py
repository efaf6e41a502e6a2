"""`workbench eval` time with the workbench's thread policy (cores - 1, at least one)
against one thread and against torch's default (one per core), with a busy process
running beside it.

A run of the adding task is trained for a few steps first (its validation set: 1,000
sequences of 100 steps), then `workbench eval RUN` runs as its own process in each
setting, the settings taking turns; printed: the evaluation loop's time (the command's
time_s) and the whole command's wall time, medians, and their ratios to the policy's.

  python bench/eval_threads.py [--repeats 3] [--busy 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def workbench(args: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    full = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    for name in ("OMP_NUM_THREADS", "WORKBENCH_THREADS"):
        if name not in (env or {}):
            full.pop(name, None)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "workbench", *args], env=full, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    return out, time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--busy", type=int, default=1, help="busy processes beside it (a Python spin loop each)")
    args = ap.parse_args()
    import torch

    cores = len(os.sched_getaffinity(0))
    default = torch.get_num_threads()  # torch's own choice in a fresh process: the physical cores
    policy = max(1, cores - 1)
    settings = {f"policy ({policy})": {}, "one thread": {"WORKBENCH_THREADS": "1"},
                f"torch default ({default})": {"WORKBENCH_THREADS": str(default)}}
    with tempfile.TemporaryDirectory() as tmp:
        run = str(Path(tmp) / "run")
        workbench(["train", "adding_lstm", "--steps", "20", "--quiet", "--device", "cpu", "--run-dir", run,
                   "--set", "train.checkpoint_every=0", "--set", "train.eval_every=0"])
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in settings}
        try:
            for i in range(args.repeats):
                names = list(settings)
                for name in names[i % len(names):] + names[:i % len(names)]:
                    out, wall = workbench(["eval", run, "--device", "cpu", "--no-decode"], settings[name])
                    result = json.loads(out.stdout)
                    assert result["cpu_policy"]["threads"] == int(settings[name].get("WORKBENCH_THREADS", policy))
                    times[name].append((result["time_s"], wall))
        finally:
            for p in busy:
                p.kill()
    print(f"{cores} cores, {args.busy} busy process(es) beside, load average {os.getloadavg()[0]:.1f}; "
          f"medians of {args.repeats}")
    print("| threads | eval loop s | command wall s | loop time / policy's |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(t for t, _ in times[next(iter(settings))])
    for name, rows in times.items():
        loop = statistics.median(t for t, _ in rows)
        print(f"| {name} | {loop:.2f} | {statistics.median(w for _, w in rows):.1f} | {loop / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
