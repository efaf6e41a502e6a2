"""Training throughput: the engine against a bare hand-written PyTorch loop.

The same model (linear input projection -> L recurrent layers -> linear head on the last
step, the adding problem, Adam, gradient norm clipped at 1) is trained four ways in one
process, interleaved and repeated, so that the ratios compare like with like:

  full   the engine, all instrumentation on: layer-input taps every step
         (log_every=1) and the exact dL/dh_t probe at its default rate (probe_every=50,
         with the engine's 5% probe budget)
  taps   the engine, taps every step, no exact probe
  off    the engine, instrumentation off (no taps, no probe)
  bare   a hand-written loop: nn.Linear + ONE fused nn.LSTM/GRU/RNN(num_layers=L) +
         nn.Linear, zero_grad / forward / backward / clip_grad_norm_ / step; no
         per-step synchronisation at all

Printed: steps/s of each, the ratios full/bare, taps/bare, off/bare (>= 1 means the
engine is faster), the share of the engine's time spent in the exact probe, the probe's
raw cost in training steps, and the achieved TFLOP/s (matrix products of the recurrent
layers, forward + backward = 3x forward).

  python bench/throughput.py                 # CPU, LSTM/GRU/RNN at a small size (minutes)
  python bench/throughput.py --gpu           # CUDA: small/medium/large in fp32/bf16/fp16
  python bench/throughput.py --cells lstm --sizes medium --precisions bf16 --gpu

On the CPU it uses one thread (set --threads) and times by the process's CPU time
(time.process_time), which other load on a shared machine disturbs far less than the
wall clock (also printed); run it more than once and look at the spread it prints. On a
GPU it times by the wall clock, synchronised at both ends.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from workbench.engine.trainer import Trainer  # noqa: E402
from workbench.spec import Preset  # noqa: E402
from workbench.tasks.adding import make_adding_batch  # noqa: E402

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1}
BARE = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn_tanh": nn.RNN}


@dataclass
class Size:
    name: str
    layers: int
    hidden: int
    seq_len: int
    batch: int
    projection: int = 32


CPU_SIZES = {"small": Size("small", 2, 128, 64, 32)}
GPU_SIZES = {
    "small": Size("small", 2, 128, 50, 64),
    "medium": Size("medium", 3, 512, 256, 64),
    "large": Size("large", 2, 1024, 512, 64),
}


def make_preset(cell: str, size: Size, device: str, precision: str, variant: str, steps: int, threads: int) -> Preset:
    log_every, probe_every = {"full": (1, 50), "taps": (1, 0), "off": (10**9, 0)}[variant]
    raw = {
        "schema_version": 1, "name": f"bench-{cell}-{size.name}-{variant}",
        "data": {"task": "adding", "path": "", "options": {"seq_len": size.seq_len, "val_size": size.batch}},
        "model": {"topology": "many_to_one",
                  "input": {"kind": "linear", "projection_size": size.projection},
                  "layers": [{"cell": cell, "hidden_size": size.hidden}] * size.layers,
                  "head": {"kind": "regression"}},
        "train": {"steps": steps, "batch_size": size.batch, "optimizer": "adam", "lr": 1e-3, "clip": "norm",
                  "clip_value": 1.0, "eval_every": 0, "eval_batches": 1, "probe_every": probe_every,
                  "log_every": log_every, "checkpoint_every": 0, "seed": 0, "device": device,
                  "precision": precision, "num_threads": threads if device == "cpu" else 0},
    }
    return Preset.from_dict(raw)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clock(device: str) -> float:
    """CPU runs: this process's CPU time (robust to other load); GPU runs: wall time."""
    return time.perf_counter() if device.startswith("cuda") else time.process_time()


def run_engine(cell, size, device, precision, variant, steps, warmup, threads) -> dict:
    """Steps/s of the engine after ``warmup`` steps, and the probe's time."""
    trainer = Trainer(make_preset(cell, size, device, precision, variant, warmup + steps, threads))
    t_start, probe_time, probes, step_times = None, 0.0, 0, []
    for record in trainer.run():
        kind = record["kind"]
        if kind == "step":
            if record["step"] == warmup:
                _sync(device)
                t_start, w_start = _clock(device), time.perf_counter()
            elif record["step"] > warmup:
                step_times.append(record["time_s"])
            if record["step"] == warmup + steps:
                _sync(device)
                elapsed, wall = _clock(device) - t_start, time.perf_counter() - w_start
        elif kind == "probe" and t_start is not None:
            probe_time += record["time_s"]
            probes += 1
        elif kind == "non_finite":
            raise RuntimeError(record["message"])
    return {"steps_per_s": steps / elapsed, "elapsed": elapsed, "wall_steps_per_s": steps / wall, "wall": wall,
            "probe_time": probe_time, "probes": probes, "median_step_s": statistics.median(step_times)}


class BareModel(nn.Module):
    def __init__(self, cell: str, size: Size):
        super().__init__()
        self.proj = nn.Linear(2, size.projection)
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn_tanh" else {}
        self.rnn = BARE[cell](size.projection, size.hidden, num_layers=size.layers, batch_first=True, **kwargs)
        self.head = nn.Linear(size.hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(self.proj(x))  # [B, T, H]
        return self.head(out[:, -1])


def run_bare(cell, size, device, precision, steps, warmup) -> dict:
    """The hand-written loop a practitioner would write (AMP as the docs show it)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = BareModel(cell, size).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    amp = dev.type == "cuda" and precision != "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if amp and precision == "fp16" else None
    gen = torch.Generator().manual_seed(0)
    t_start = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            t_start, w_start = _clock(device), time.perf_counter()
        batch = make_adding_batch(size.batch, size.seq_len, gen)
        x, y = batch.x.to(dev, non_blocking=True), batch.y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=dtype, enabled=amp):
            loss = nn.functional.mse_loss(model(x).float(), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    _sync(device)
    elapsed, wall = _clock(device) - t_start, time.perf_counter() - w_start
    return {"steps_per_s": steps / elapsed, "elapsed": elapsed, "wall_steps_per_s": steps / wall}


def step_flops(cell: str, size: Size) -> float:
    """Matrix-product FLOPs of one training step of the recurrent layers (fwd + bwd = 3x fwd)."""
    g, h, total = GATES[cell], size.hidden, 0.0
    inp = size.projection
    for _ in range(size.layers):
        total += 2.0 * size.batch * size.seq_len * g * h * (inp + h)
        inp = h
    return 3.0 * total


def bench_config(cell, size, device, precision, steps, warmup, repeats, threads) -> dict:
    results = {v: [] for v in ("full", "taps", "off", "bare")}
    wall = {v: [] for v in results}
    probe_share, probe_steps = [], []
    order = ["full", "taps", "off", "bare"]
    for r in range(repeats):
        rotated = order[r % 4:] + order[:r % 4]  # interleave: no variant always goes first
        for variant in rotated:
            if variant == "bare":
                res = run_bare(cell, size, device, precision, steps, warmup)
            else:
                res = run_engine(cell, size, device, precision, variant, steps, warmup, threads)
                if variant == "full":
                    probe_share.append(res["probe_time"] / res["wall"])
                    if res["probes"]:
                        probe_steps.append(res["probe_time"] / res["probes"] / res["median_step_s"])
            results[variant].append(res["steps_per_s"])
            wall[variant].append(res["wall_steps_per_s"])
    med = {v: statistics.median(xs) for v, xs in results.items()}
    wall_med = {v: statistics.median(xs) for v, xs in wall.items()}
    ratios = {v: [a / b for a, b in zip(results[v], results["bare"])] for v in ("full", "taps", "off")}
    flops = step_flops(cell, size)
    return {
        "cell": cell, "size": size.name, "device": device, "precision": precision,
        "shape": f"{size.layers}x{size.hidden} T={size.seq_len} B={size.batch}",
        "steps_per_s": med, "runs": results,
        "ratio": {v: med[v] / med["bare"] for v in ("full", "taps", "off")},
        "wall_ratio": {v: wall_med[v] / wall_med["bare"] for v in ("full", "taps", "off")},
        "clock": "wall" if device.startswith("cuda") else "cpu",
        "ratio_spread": {v: (min(x), max(x)) for v, x in ratios.items()},
        "probe_share": statistics.median(probe_share) if probe_share else 0.0,
        "probe_cost_steps": statistics.median(probe_steps) if probe_steps else float("nan"),
        "tflops": {v: flops * med[v] / 1e12 for v in med},
    }


def print_table(rows: list[dict]) -> None:
    print()
    print(f"{'cell':<9}{'size':<8}{'shape':<24}{'prec':<6}{'bare st/s':>10}{'full/bare':>10}{'taps/bare':>10}"
          f"{'off/bare':>9}{'probe%':>8}{'probe=steps':>12}{'TF/s full':>10}{'TF/s bare':>10}")
    for r in rows:
        print(f"{r['cell']:<9}{r['size']:<8}{r['shape']:<24}{r['precision']:<6}{r['steps_per_s']['bare']:>10.1f}"
              f"{r['ratio']['full']:>10.3f}{r['ratio']['taps']:>10.3f}{r['ratio']['off']:>9.3f}"
              f"{100 * r['probe_share']:>7.1f}%{r['probe_cost_steps']:>12.1f}"
              f"{r['tflops']['full']:>10.3g}{r['tflops']['bare']:>10.3g}")
    print("ratios: engine steps/s over bare steps/s (medians; >= 1 means the engine is faster). "
          "probe%: share of the full engine's time spent in the exact probe; probe=steps: one probe's time "
          "in median training steps.")
    for r in rows:
        spread = ", ".join(f"{v} {lo:.3f}..{hi:.3f}" for v, (lo, hi) in r["ratio_spread"].items())
        walls = ", ".join(f"{v}/bare {x:.3f}" for v, x in r["wall_ratio"].items())
        print(f"  {r['cell']} {r['size']} {r['precision']}: timed by {r['clock']} clock; per-repeat ratio ranges: "
              f"{spread}" + (f"; by the wall clock: {walls}" if r["clock"] == "cpu" else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="run on CUDA with the GPU sizes")
    ap.add_argument("--cells", default="lstm,gru,rnn_tanh")
    ap.add_argument("--sizes", default=None, help="comma list (cpu: small; gpu: small,medium,large)")
    ap.add_argument("--precisions", default=None, help="gpu: comma list of fp32,bf16,fp16 (cpu: fp32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default: cpu 150, gpu 100)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: cpu 5, gpu 10)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (cpu runs)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.gpu and not torch.cuda.is_available():
        print("bench/throughput.py: --gpu asked for, but torch sees no CUDA GPU", file=sys.stderr)
        return 2
    device = "cuda" if args.gpu else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.threads)
    table = GPU_SIZES if args.gpu else CPU_SIZES
    sizes = [table[s] for s in (args.sizes.split(",") if args.sizes else table)]
    precisions = (args.precisions or ("fp32,bf16,fp16" if args.gpu else "fp32")).split(",")
    steps = args.steps or (100 if args.gpu else 150)
    warmup = args.warmup if args.warmup is not None else (10 if args.gpu else 5)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if args.gpu else f", {torch.get_num_threads()} thread(s)")
          + f", {steps} timed steps after {warmup} warm-up, {args.repeats} repeats, interleaved", flush=True)
    rows = []
    for size in sizes:
        for precision in precisions:
            for cell in args.cells.split(","):
                t0 = time.perf_counter()
                try:
                    row = bench_config(cell, size, device, precision, steps, warmup, args.repeats, args.threads)
                except Exception as exc:  # noqa: BLE001 - one failing case must not hide the rest
                    print(f"  {cell} {size.name} {precision}: FAILED {type(exc).__name__}: {exc}", flush=True)
                    continue
                rows.append(row)
                if args.json:  # after every case: a run cut short keeps what it measured
                    Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
                print(f"  {cell} {size.name} {precision}: full/bare {row['ratio']['full']:.3f}, off/bare "
                      f"{row['ratio']['off']:.3f}, bare {row['steps_per_s']['bare']:.1f} steps/s "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
