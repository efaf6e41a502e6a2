"""Training throughput: the engine against a bare hand-written PyTorch loop.

The same model (linear input projection -> L recurrent layers -> linear head on the last
step, the adding problem, Adam, gradient norm clipped at 1) is trained several ways in
one process, so that the ratios compare like with like:

  full       the engine, all instrumentation on: layer-input taps every step
             (log_every=1) and the exact dL/dh_t probe at its default rate (probe_every=50,
             within the engine's default 2% probe budget)
  full_eager full without CUDA graphs (GPU runs): every kernel launched from Python
  full10     the same with taps every 10th step (GPU runs): the other steps run a stack
             of identical layers as one fused kernel where the engine finds that faster
  taps       the engine, taps every step, no exact probe
  off        the engine, instrumentation off (no taps, no probe)
  off_stack  off, never fused (GPU runs): what the fused path gains
  off_eager  off without CUDA graphs (GPU runs)
  bare       a hand-written loop: nn.Linear + ONE fused nn.LSTM/GRU/RNN(num_layers=L) +
             nn.Linear, zero_grad / forward / backward / clip_grad_norm_ / Adam step (AMP
             and a GradScaler as PyTorch's docs show them); no per-step synchronisation
  bare_sync  bare, reading the loss back every step as a loop that logs it does (GPU,
             only when asked for with --variants: on an H200 it matched bare, 0.99-1.06)
  bare_stack bare with L single-layer modules (GPU runs): what layer boundaries cost

Printed: steps/s of each, the ratios of each to bare (>= 1 means the
engine is faster), the share of the engine's time spent in the exact probe, one probe's
cost in training steps (and what probing every 50 steps would cost without the budget),
and the achieved TFLOP/s (matrix products of the recurrent layers, fwd + bwd = 3x fwd).

  python bench/throughput.py                 # CPU, LSTM/GRU/RNN at a small size (minutes)
  python bench/throughput.py --gpu           # CUDA: small/medium/large in fp32/bf16/fp16
  python bench/throughput.py --cells lstm --sizes medium --precisions bf16 --gpu

CPU: one torch thread (--threads); the four variants take turns step by step and each is
timed by the CPU time of its own turns (time.process_time), so load from other processes
on a shared machine falls on all of them alike. GPU: each variant runs on its own, the
order rotated between repeats, timed by the wall clock synchronised at both ends.
Ratios measured in one run are what count; run it more than once and look at the spread.
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


# engine variants: (log_every, probe_every, Trainer keyword arguments; left out = the engine's own choice)
ENGINE_VARIANTS = {"full": (1, 50, {}), "full_eager": (1, 50, {"cuda_graphs": False}), "full10": (10, 50, {}),
                   "taps": (1, 0, {}), "off": (10**9, 0, {}), "off_stack": (10**9, 0, {"fused_stacks": False}),
                   "off_eager": (10**9, 0, {"cuda_graphs": False})}
BARE_VARIANTS = ("bare", "bare_sync", "bare_stack")
CPU_VARIANTS = ("full", "taps", "off", "bare")
GPU_VARIANTS = ("full", "full_eager", "full10", "taps", "off", "off_stack", "off_eager", "bare", "bare_sync",
                "bare_stack")
GPU_DEFAULT_VARIANTS = tuple(v for v in GPU_VARIANTS if v != "bare_sync")


def make_preset(cell: str, size: Size, device: str, precision: str, variant: str, steps: int, threads: int) -> Preset:
    log_every, probe_every, _kwargs = ENGINE_VARIANTS[variant]
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
    trainer = Trainer(make_preset(cell, size, device, precision, variant, warmup + steps, threads),
                      **ENGINE_VARIANTS[variant][2])
    t_start, probe_time, probes, step_times, first_probe = None, 0.0, 0, [], None
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
        elif kind == "probe":
            first_probe = record["time_s"]  # in the warm-up: its second run is warm
        elif kind == "non_finite":
            raise RuntimeError(record["message"])
        elif kind == "end":
            graphs = f"{record.get('graph_replays', 0)} graph replays"
            if record.get("graphs_off"):
                graphs += f", graphs off: {record['graphs_off']}"
            if record.get("fused_stacks") is not None:  # how the untapped steps ran
                graphs += (f", untapped steps: {'fused' if record['fused_stacks'] else 'single-layer calls'}"
                           f"{', graphed' if record.get('untapped_graphs') else ', eager'}")
    return {"steps_per_s": steps / elapsed, "elapsed": elapsed, "wall_steps_per_s": steps / wall, "wall": wall,
            "probe_time": probe_time, "probes": probes, "median_step_s": statistics.median(step_times),
            "first_probe_s": first_probe, "graphs": graphs}


class BareModel(nn.Module):
    """stacked=False: ONE fused multi-layer module (the baseline); True: a list of
    single-layer modules, as the engine has (what the layer boundaries cost by itself)."""

    def __init__(self, cell: str, size: Size, stacked: bool = False):
        super().__init__()
        self.proj = nn.Linear(2, size.projection)
        kwargs = {"nonlinearity": "tanh"} if cell == "rnn_tanh" else {}
        if stacked:
            self.rnns = nn.ModuleList(
                BARE[cell](size.projection if i == 0 else size.hidden, size.hidden, batch_first=True, **kwargs)
                for i in range(size.layers))
        else:
            self.rnns = nn.ModuleList([BARE[cell](size.projection, size.hidden, num_layers=size.layers,
                                                  batch_first=True, **kwargs)])
        self.head = nn.Linear(size.hidden, 1)

    def forward(self, x):
        out = self.proj(x)
        for rnn in self.rnns:
            out, _ = rnn(out)  # [B, T, H]
        return self.head(out[:, -1])


def run_bare(cell, size, device, precision, steps, warmup, variant: str = "bare") -> dict:
    """The hand-written loop a practitioner would write (AMP as the docs show it).
    bare_sync: the same, reading the loss back every step (as a loop that logs it does);
    bare_stack: single-layer modules instead of the fused one."""
    torch.manual_seed(0)
    dev = torch.device(device)
    model = BareModel(cell, size, stacked=variant == "bare_stack").to(dev)
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
        if variant == "bare_sync":
            loss.item()
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


class OwnClock:
    """CPU time spent inside one variant's steps only (the variants take turns)."""

    def __init__(self):
        self.total, self.since = 0.0, None

    def __call__(self) -> float:
        return self.total + (time.process_time() - self.since if self.since is not None else 0.0)

    def start(self) -> None:
        self.since = time.process_time()

    def stop(self) -> None:
        self.total += time.process_time() - self.since
        self.since = None


def _engine_steps(trainer: Trainer, probes: list):
    """One training step per next() (a probe runs inside the next step's turn); the
    steps at which probes ran are appended to ``probes``."""
    for record in trainer.run():
        if record["kind"] == "non_finite":
            raise RuntimeError(record["message"])
        if record["kind"] == "probe":
            probes.append(record["step"])
        if record["kind"] == "step":
            yield record


def _bare_steps(cell, size, device, precision):
    torch.manual_seed(0)
    model = BareModel(cell, size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    while True:
        batch = make_adding_batch(size.batch, size.seq_len, gen)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(model(batch.x).float(), batch.y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        yield None


def bench_interleaved(cell, size, precision, steps, warmup, repeats, threads) -> dict:
    """CPU: the four variants take turns step by step, each timed by the CPU time of its
    own turns, so that load from other processes falls on all of them alike."""
    variants = CPU_VARIANTS
    results = {v: [] for v in variants}
    probe_share, probe_steps = [], []
    for _ in range(repeats):
        clocks = {v: OwnClock() for v in variants}
        trainers = {v: Trainer(make_preset(cell, size, "cpu", precision, v, warmup + steps + 1, threads),
                               clock=clocks[v]) for v in variants if v != "bare"}
        probes: list[int] = []
        gens = {v: _engine_steps(t, probes if v == "full" else []) for v, t in trainers.items()}
        gens["bare"] = _bare_steps(cell, size, "cpu", precision)
        step_cpu = {v: [] for v in variants}
        for i in range(warmup + steps):
            k = i % len(variants)
            for v in variants[k:] + variants[:k]:  # rotate who goes first
                before = clocks[v].total
                clocks[v].start()
                next(gens[v])
                clocks[v].stop()
                step_cpu[v].append(clocks[v].total - before)
        for g in gens.values():
            g.close()
        timed = {v: sum(step_cpu[v][warmup:]) for v in variants}
        for v in variants:
            results[v].append(steps / timed[v])
        # a probe after step k runs in turn k+1: those in the timed window
        in_window = [k for k in probes if warmup <= k < warmup + steps]
        spent = sum(step_cpu["full"][k] - step_cpu["taps"][k] for k in in_window)
        probe_share.append(max(spent, 0.0) / timed["full"])
        if in_window:
            probe_steps.append(max(spent, 0.0) / len(in_window) / statistics.median(step_cpu["taps"][warmup:]))
    return _summarise(cell, size, "cpu", precision, results, probe_share, probe_steps, "cpu")


def bench_sequential(cell, size, device, precision, steps, warmup, repeats, threads,
                     variants=GPU_DEFAULT_VARIANTS) -> dict:
    """GPU: each variant runs on its own, one after another, repeated in rotated order;
    timed by the wall clock, synchronised at both ends."""
    results = {v: [] for v in variants}
    notes = {}
    probe_share, probe_steps = [], []
    order = list(variants)
    for r in range(repeats):
        k = r % len(order)
        rotated = order[k:] + order[:k]  # interleave: no variant always goes first
        for variant in rotated:
            if variant in BARE_VARIANTS:
                res = run_bare(cell, size, device, precision, steps, warmup, variant)
            else:
                res = run_engine(cell, size, device, precision, variant, steps, warmup, threads)
                if variant == "full":
                    probe_share.append(res["probe_time"] / res["wall"])
                    if res["probes"]:
                        probe_steps.append(res["probe_time"] / res["probes"] / res["median_step_s"])
                    elif res.get("first_probe_s"):
                        probe_steps.append(res["first_probe_s"] / res["median_step_s"])
            results[variant].append(res["steps_per_s"])
            if "graphs" in res:
                notes[variant] = res["graphs"]
    row = _summarise(cell, size, device, precision, results, probe_share, probe_steps,
                     "wall" if device.startswith("cuda") else "cpu")
    row["engine_notes"] = notes
    return row


def _summarise(cell, size, device, precision, results, probe_share, probe_steps, clock) -> dict:
    med = {v: statistics.median(xs) for v, xs in results.items()}
    others = [v for v in results if v != "bare"]
    ratios = {v: [a / b for a, b in zip(results[v], results["bare"])] for v in others}
    flops = step_flops(cell, size)
    cost = statistics.median(probe_steps) if probe_steps else float("nan")
    return {
        "cell": cell, "size": size.name, "device": device, "precision": precision,
        "shape": f"{size.layers}x{size.hidden} T={size.seq_len} B={size.batch}",
        "steps_per_s": med, "runs": results, "clock": clock,
        "ratio": {v: med[v] / med["bare"] for v in others},
        "ratio_spread": {v: (min(x), max(x)) for v, x in ratios.items()},
        "probe_share": statistics.median(probe_share) if probe_share else 0.0,
        "probe_cost_steps": cost,
        "probe_unthrottled": cost / 50 if cost == cost else float("nan"),
        "tflops": {v: flops * med[v] / 1e12 for v in med},
    }


def bench_config(cell, size, device, precision, steps, warmup, repeats, threads, sequential=False,
                 variants=GPU_DEFAULT_VARIANTS) -> dict:
    if device == "cpu" and not sequential:
        return bench_interleaved(cell, size, precision, steps, warmup, repeats, threads)
    return bench_sequential(cell, size, device, precision, steps, warmup, repeats, threads, variants)


def print_table(rows: list[dict]) -> None:
    print()
    shown = [v for v in GPU_VARIANTS if v != "bare" and any(v in r["ratio"] for r in rows)]
    print(f"{'cell':<9}{'size':<8}{'shape':<24}{'prec':<6}{'bare st/s':>10}"
          + "".join(f"{v + '/bare':>{max(11, len(v) + 7)}}" for v in shown)
          + f"{'probe%':>8}{'probe=steps':>12}{'@50 raw':>8}{'TF/s full':>10}{'TF/s bare':>10}")
    for r in rows:
        print(f"{r['cell']:<9}{r['size']:<8}{r['shape']:<24}{r['precision']:<6}{r['steps_per_s']['bare']:>10.1f}"
              + "".join(f"{r['ratio'].get(v, float('nan')):>{max(11, len(v) + 7)}.3f}" for v in shown)
              + f"{100 * r['probe_share']:>7.1f}%{r['probe_cost_steps']:>12.1f}{100 * r['probe_unthrottled']:>7.1f}%"
              f"{r['tflops']['full']:>10.3g}{r['tflops']['bare']:>10.3g}")
    print("ratios: steps/s over bare steps/s (medians; >= 1 means faster than the bare loop). full: taps every "
          "step + the exact probe (on CUDA from CUDA graphs); full_eager: full without graphs; full10: the same "
          "with taps every 10th step (the other steps run stacks of identical layers as one fused kernel where "
          "the engine finds that faster); taps: no probe; off: no instrumentation; off_stack: off, never fused; "
          "off_eager: off without graphs; bare_sync: the bare loop reading its loss every step; "
          "bare_stack: the bare loop with single-layer modules. probe%: share of the full engine's time spent in "
          "the exact probe (kept within a 2% budget by postponing probes); probe=steps: one probe's time in "
          "median training steps; @50 raw: what probing every 50 steps would cost without the budget.")
    for r in rows:
        spread = ", ".join(f"{v} {lo:.3f}..{hi:.3f}" for v, (lo, hi) in r["ratio_spread"].items())
        print(f"  {r['cell']} {r['size']} {r['precision']}: timed by the {r['clock']} clock; per-repeat ratio "
              f"ranges: {spread}")
        for v, note in r.get("engine_notes", {}).items():
            print(f"      {v}: {note}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="run on CUDA with the GPU sizes")
    ap.add_argument("--cells", default="lstm,gru,rnn_tanh")
    ap.add_argument("--sizes", default=None, help="comma list (cpu: small; gpu: small,medium,large)")
    ap.add_argument("--precisions", default=None, help="gpu: comma list of fp32,bf16,fp16 (cpu: fp32)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per run (default: cpu 200, gpu 100)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: cpu 5, gpu 10)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (cpu runs)")
    ap.add_argument("--variants", default=None, help=f"GPU: comma list of {','.join(GPU_VARIANTS)} "
                    "(default all but bare_sync; full and bare are always run)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--sequential", action="store_true",
                    help="on the CPU too, time the variants one after another as on a GPU (a dry run of that path)")
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
    variants = GPU_DEFAULT_VARIANTS
    if args.variants:
        asked = set(args.variants.split(",")) | {"full", "bare"}
        unknown = asked - set(GPU_VARIANTS)
        if unknown:
            ap.error(f"unknown variants {sorted(unknown)}; known: {', '.join(GPU_VARIANTS)}")
        variants = tuple(v for v in GPU_VARIANTS if v in asked)
    steps = args.steps or (100 if args.gpu else 200)
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
                    row = bench_config(cell, size, device, precision, steps, warmup, args.repeats, args.threads,
                                       args.sequential, variants)
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
