"""What one Dynamics record costs (workbench/engine/dynamics.py: one-step Jacobian norms,
Lyapunov exponents, W_hh spectra, gate statistics), in training steps of the same
model and batch, beside the exact dL/dh_t probe it follows (the baseline, measured in
the same run). Both count against the trainer's probe budget (2% of training time):
``probe_every`` must be at least (probe + dynamics) / 0.02 steps for neither to be
postponed.

Printed per cell: training step ms (taps on), the probe alone and what the dynamics add
to it (probe then Dynamics record, minus the probe alone) in training steps, that over
the probe, and the dynamics' parts in ms (the trajectory with the Lyapunov vectors, the
Jacobian norms, the spectra, the PCA trajectory of more rows; the parts' ms include the
probe-and-dynamics runs' noise).

  python bench/dynamics_cost.py            # CPU, 2x128 LSTM/RNN/GRU, T=50, B=64
  python bench/dynamics_cost.py --gpu      # CUDA (timed with synchronisation)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_cost import timed  # noqa: E402
from throughput import GPU_SIZES, Size, make_preset  # noqa: E402

from workbench.engine import dynamics  # noqa: E402
from workbench.engine.trainer import Trainer  # noqa: E402


class PartClock:
    """Wraps the dynamics module's parts to add up their time (synchronised on CUDA)."""

    def __init__(self, device: str):
        self.device, self.total = device, {}

    def wrap(self, name: str, fn):
        def timed_part(*args, **kwargs):
            if self.device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.device == "cuda":
                torch.cuda.synchronize()
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - t0
            return out
        return timed_part


def measure(cell: str, size: Size, device: str, repeats: int) -> dict:
    trainer = Trainer(make_preset(cell, size, device, "fp32", "taps", 10**6, 1), cuda_graphs=False, dynamics=False)
    records = trainer.run()
    for record in records:  # set up and take a few steps
        if record["kind"] == "step" and record["step"] >= 3:
            break
    work = trainer._next_work()
    step = lambda: trainer._train_step(trainer._next_work(), 10**6)  # noqa: E731
    def probe():  # the trainer's probe as it runs without dynamics
        trainer.dynamics = False
        trainer._probe(work)

    def both():  # with: the probe (recording the layer inputs), then the Dynamics record
        trainer.dynamics = True
        trainer._probe(work)
        records = list(trainer._dynamics(work))  # (a generator: it runs only when read)
        assert records and trainer.dynamics, getattr(trainer, "_dynamics_off", "no Dynamics record")

    def dyn():
        both()

    out = {"step": timed(step, device, repeats), "probe": timed(probe, device, repeats)}
    out["dynamics"] = timed(both, device, repeats) - out["probe"]
    clock = PartClock(device)
    originals = {n: getattr(dynamics, n) for n in ("trajectory_and_lyapunov", "jacobian_norms", "block_spectra",
                                                  "module_states", "direction_trajectory")}
    try:
        for n, fn in originals.items():
            setattr(dynamics, n, clock.wrap(n, fn))
        for _ in range(repeats):
            dyn()
    finally:
        for n, fn in originals.items():
            setattr(dynamics, n, fn)
    out["parts"] = {n: t / repeats for n, t in clock.total.items()}
    records.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--cells", default="lstm,rnn_tanh,gru")
    ap.add_argument("--sizes", default="small", help="comma list of small,medium,large (the GPU sizes)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        print("bench/dynamics_cost.py: --gpu asked for, but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    device = "cuda" if args.gpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    s = dynamics.DynamicsSettings()
    print(f"torch {torch.__version__}, {device}; per probe, in training steps (taps on); dynamics settings: "
          f"{s.power_iterations} Lanczos iterations, {s.lyapunov_vectors} Lyapunov vectors, first {s.max_rows} rows "
          f"(the PCA trajectory: first {s.trajectory_rows})")
    print(f"{'cell':<9}{'size':<8}{'step ms':>9}{'probe':>8}{'dynamics':>10}{'dyn/probe':>11}"
          f"{'lyap ms':>9}{'jac ms':>8}{'spec ms':>9}{'traj ms':>9}")
    for size_name in args.sizes.split(","):
        for cell in args.cells.split(","):
            r = measure(cell, GPU_SIZES[size_name], device, args.repeats)
            p = r["parts"]
            print(f"{cell:<9}{size_name:<8}{1e3 * r['step']:>9.2f}{r['probe'] / r['step']:>8.2f}"
                  f"{r['dynamics'] / r['step']:>10.2f}{r['dynamics'] / r['probe']:>11.2f}"
                  f"{1e3 * p.get('trajectory_and_lyapunov', 0):>9.1f}{1e3 * p.get('jacobian_norms', 0):>8.1f}"
                  f"{1e3 * p.get('block_spectra', 0):>9.1f}{1e3 * (p.get('module_states', 0) + p.get('direction_trajectory', 0)):>9.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
