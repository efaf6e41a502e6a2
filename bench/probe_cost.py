"""What one exact dL/dh_t probe costs, in training steps of the same model and batch.

The probe runs two ways on the same trainer: through each layer's fused kernel with the
zero probe input (the engine's route; LayerProbe in workbench/engine/model.py) and as the
step-by-step replica (every layer unrolled, the reference the tests hold it to). Printed
per cell: time per probe over time per training step
(taps on), and the number of operators each dispatches over a step's: on a GPU, where
launching is what costs for small models, that count is what the time follows.

  python bench/probe_cost.py            # CPU, 2x128 LSTM/RNN/GRU, T=50, B=64
  python bench/probe_cost.py --gpu      # CUDA (timed with synchronisation)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import GPU_SIZES, Size, make_preset  # noqa: E402

from workbench.engine.probe import exact_hidden_grad_norm_tensors  # noqa: E402
from workbench.engine.trainer import Trainer  # noqa: E402


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of fn() (after one warm call), synchronised on CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def dispatched_ops(fn) -> int:
    """Operators dispatched from Python by one call of fn (not counting their insides)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


def measure(cell: str, size: Size, device: str, repeats: int) -> dict:
    trainer = Trainer(make_preset(cell, size, device, "fp32", "taps", 10**6, 1), cuda_graphs=False)
    records = trainer.run()
    for record in records:  # set up and take a few steps
        if record["kind"] == "step" and record["step"] >= 3:
            break
    work = trainer._next_work()
    step = lambda: trainer._train_step(trainer._next_work(), 10**6)  # noqa: E731
    rows = {"step": (timed(step, device, repeats), dispatched_ops(step))}
    for through_kernel in (True, False):
        for _prefix, stack in trainer.model.named_stacks():
            stack.kernel_probe = through_kernel
        probe = lambda: exact_hidden_grad_norm_tensors(trainer.model, work.probe_loss)  # noqa: E731
        rows["kernel" if through_kernel else "unrolled"] = (timed(probe, device, repeats), dispatched_ops(probe))
    records.close()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--cells", default="lstm,rnn_tanh,gru")
    ap.add_argument("--sizes", default="small", help="comma list of small,medium,large (the GPU sizes)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        print("bench/probe_cost.py: --gpu asked for, but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    device = "cuda" if args.gpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {device}; one probe in training steps (taps on), and the operators "
          f"it dispatches over a step's")
    print(f"{'cell':<9}{'size':<8}{'step ms':>9}{'kernel: steps':>15}{'ops':>7}{'unrolled: steps':>17}{'ops':>7}")
    for size_name in args.sizes.split(","):
        for cell in args.cells.split(","):
            rows = measure(cell, GPU_SIZES[size_name], device, args.repeats)
            step_t, step_ops = rows["step"]
            (k_t, k_ops), (u_t, u_ops) = rows["kernel"], rows["unrolled"]
            print(f"{cell:<9}{size_name:<8}{1e3 * step_t:>9.2f}{k_t / step_t:>15.2f}{k_ops / step_ops:>7.2f}"
                  f"{u_t / step_t:>17.2f}{u_ops / step_ops:>7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
