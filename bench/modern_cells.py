"""The recurrences of today (minGRU, minLSTM, LRU) beside the LSTM and the GRU.

Three measurements, each in one run so that its ratios compare like with like:

  throughput  training steps/s of the engine's model (linear input, L layers of width H,
              regression head on the last step, Adam, instrumentation off) for each cell
              at T = 256, 1024, 4096, as ratios to the LSTM and the GRU of the same width
              and depth measured in the same run. CPU: the cells take turns step by step
              and each is timed by the CPU time of its own turns (time.process_time), so
              load from other processes falls on all alike. GPU (--gpu): each cell on its
              own, wall clock synchronised at both ends.
  longrange   the adding problem at T = 400, 1000, 2000: for each cell, the step at which
              the validation MSE first falls below 0.01 within a fixed step budget (a
              validation every --eval-every steps), and the exact dL/dh_1 / dL/dh_T ratio
              of its (top) layer at initialisation and at the end (the engine's probe on
              one validation batch): how much of the loss's gradient reaches the first
              step. The vanilla RNN and the LSTM are the comparison rows.
  charlm      Tiny Shakespeare (../shared/data/tinyshakespeare/input.txt) at equal
              training time: each model trains for --seconds of CPU time, then its
              validation loss (nats/char) over the held-out text. charlm_lstm's shape
              (2 x 256 LSTM, T=128) against 2 x 256 stacks of minGRU, minLSTM and LRU.

  scan        the minGRU recurrence alone, forward + backward: the paper's log-space scan
              against the chunked linear scan (what workbench.engine.scan.FORM chooses
              between per device), as a ratio.

  python bench/modern_cells.py throughput [--gpu] [--sizes 64x2] [--lengths 256,1024,4096]
  python bench/modern_cells.py scan [--gpu]
  python bench/modern_cells.py longrange [--budget 600] [--lengths 400,1000,2000]
  python bench/modern_cells.py charlm [--seconds 120]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from workbench.engine.model import build_model  # noqa: E402
from workbench.spec import HeadSpec, InitSpec, InputSpec, LayerSpec, ModelIO, ModelSpec  # noqa: E402
from workbench.tasks.adding import make_adding_batch  # noqa: E402

MODERN = ("mingru", "minlstm", "lru")


def adding_model(cell: str, hidden: int, layers: int, init: InitSpec | None = None):
    spec = ModelSpec(topology="many_to_one", input=InputSpec(kind="linear", projection_size=16),
                     layers=[LayerSpec(cell=cell, hidden_size=hidden) for _ in range(layers)],
                     head=HeadSpec(kind="regression"), init=init or InitSpec())
    return build_model(spec, ModelIO(input_kind="features", feature_size=2, output_size=1))


# ----------------------------------------------------------------------------- throughput


def throughput(args) -> dict:
    device = torch.device("cuda" if args.gpu else "cpu")
    cells = args.cells.split(",")
    results = {}
    for size in args.sizes.split(","):
        H, L = (int(v) for v in size.split("x"))
        for T in (int(t) for t in args.lengths.split(",")):
            B = args.batch
            steps = max(2, args.steps * 256 // T) if not args.gpu else args.steps
            g = torch.Generator().manual_seed(0)
            batch = make_adding_batch(B, T, g)
            x, y = batch.x.to(device), batch.y.to(device)
            runs = {}
            for cell in cells:
                torch.manual_seed(0)
                model = adding_model(cell, H, L).to(device)
                opt = torch.optim.Adam(model.parameters(), lr=1e-3)

                def step(model=model, opt=opt, x=x, y=y):
                    opt.zero_grad(set_to_none=True)
                    loss = torch.nn.functional.mse_loss(model(x), y)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                runs[cell] = step
                step()  # warm-up
            spent = {cell: [] for cell in cells}
            for _ in range(steps):
                for cell in cells:  # turns, step by step
                    if args.gpu:
                        torch.cuda.synchronize()
                        t0 = time.perf_counter()
                        runs[cell]()
                        torch.cuda.synchronize()
                        spent[cell].append(time.perf_counter() - t0)
                    else:
                        t0 = time.process_time()
                        runs[cell]()
                        spent[cell].append(time.process_time() - t0)
            per_step = {cell: statistics.median(v) for cell, v in spent.items()}
            row = {cell: {"steps_per_s": 1 / s, "vs_lstm": per_step["lstm"] / s, "vs_gru": per_step["gru"] / s}
                   for cell, s in per_step.items()}
            results[f"{H}x{L} T={T}"] = row
            print(f"\n{H}x{L}, T={T}, B={B} ({steps} steps each, median)", flush=True)
            print(f"  {'cell':8s} {'steps/s':>9s} {'vs LSTM':>8s} {'vs GRU':>8s}")
            for cell, r in row.items():
                print(f"  {cell:8s} {r['steps_per_s']:9.2f} {r['vs_lstm']:8.2f} {r['vs_gru']:8.2f}", flush=True)
    return results


# ----------------------------------------------------------------------------- scan forms


def scan_forms(args) -> dict:
    """minGRU's recurrence alone, forward + backward: the paper's log-space scan against
    the chunked linear scan (workbench.engine.scan.FORM picks one per device)."""
    from workbench.engine import scan

    device = torch.device("cuda" if args.gpu else "cpu")
    results = {}
    print(f"\nminGRU recurrence, B={args.batch}, H={args.hidden}, forward + backward, median of {args.steps}")
    print(f"  {'T':>6s} {'log ms':>8s} {'linear ms':>10s} {'log / linear':>13s}")
    for T in (int(t) for t in args.lengths.split(",")):
        g = torch.Generator().manual_seed(0)
        k = torch.randn(args.batch, T, args.hidden, generator=g).to(device).requires_grad_()
        pre = torch.randn(args.batch, T, args.hidden, generator=g).to(device).requires_grad_()

        def run(form, k=k, pre=pre):
            log_a, log_b = -torch.nn.functional.softplus(k), -torch.nn.functional.softplus(-k) + scan.log_g(pre)
            h, _, _ = scan._gated_scan(log_a, log_b, None, False, form)
            h.sum().backward()
        spent = {"log": [], "linear": []}
        for form in spent:
            run(form)  # warm-up
        for _ in range(args.steps):
            for form in spent:  # turns
                if args.gpu:
                    torch.cuda.synchronize()
                t0 = time.perf_counter() if args.gpu else time.process_time()
                run(form)
                if args.gpu:
                    torch.cuda.synchronize()
                spent[form].append((time.perf_counter() if args.gpu else time.process_time()) - t0)
        log_ms, lin_ms = (1000 * statistics.median(spent[f]) for f in ("log", "linear"))
        results[f"T={T}"] = {"log_ms": log_ms, "linear_ms": lin_ms, "log_over_linear": log_ms / lin_ms}
        print(f"  {T:6d} {log_ms:8.1f} {lin_ms:10.1f} {log_ms / lin_ms:13.2f}", flush=True)
    return results


# ----------------------------------------------------------------------------- long range


def _probe_ratio(model, x, y) -> float:
    """Exact dL/dh_t of the top layer on one batch: ||dL/dh_1|| / ||dL/dh_T|| (means over
    B), on a float64 copy of the model: in float32 anything below ~1e-45 is 0, and at
    T = 400 a forget gate of 0.73 already gives 1e-55."""
    import copy

    from workbench.engine.probe import exact_hidden_grad_norm_tensors

    model = copy.deepcopy(model).double()

    def loss():
        return torch.nn.functional.mse_loss(model(x.double(), unrolled=True), y.double())
    norms = exact_hidden_grad_norm_tensors(model, loss)
    top = norms[list(norms)[-1]]
    return float(top[0] / top[-1]) if float(top[-1]) > 0 else float("nan")


def longrange(args) -> dict:
    cells = args.cells.split(",")
    results = {}
    for T in (int(t) for t in args.lengths.split(",")):
        gv = torch.Generator().manual_seed(1234)
        val = [(b.x, b.y) for b in (make_adding_batch(args.batch, T, gv) for _ in range(args.val_batches))]
        print(f"\nadding, T={T}: budget {args.budget} steps, B={args.batch}, 1x{args.hidden} "
              f"(LRU {args.lru_layers}x{args.hidden}), "
              f"validation every {args.eval_every}", flush=True)
        print(f"  {'cell':8s} {'steps to MSE<0.01':>18s} {'final MSE':>10s} {'dh1/dhT init':>13s} "
              f"{'dh1/dhT end':>12s} {'CPU s':>7s}")
        for cell in cells:
            torch.manual_seed(0)
            init = InitSpec(lru_r_min=args.r_min, lru_r_max=args.r_max) if cell == "lru" else InitSpec()
            # the LRU stacked: one layer's GELU picks the marked numbers, the next adds them
            model = adding_model(cell, args.hidden, args.lru_layers if cell == "lru" else 1, init)
            opt = torch.optim.Adam(model.parameters(), lr=args.lr)
            ratio0 = _probe_ratio(model, *val[0])
            g = torch.Generator().manual_seed(0)
            reached, mse, t0 = None, float("nan"), time.process_time()
            for step in range(1, args.budget + 1):
                b = make_adding_batch(args.batch, T, g)
                x, y = b.x, b.y
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.mse_loss(model(x), y).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                if step % args.eval_every == 0 or step == args.budget:
                    with torch.no_grad():
                        mse = statistics.fmean(float(torch.nn.functional.mse_loss(model(vx), vy)) for vx, vy in val)
                    if mse < 0.01:
                        reached = step
                        break
            ratio1 = _probe_ratio(model, *val[0])
            cpu = time.process_time() - t0
            results[f"T={T} {cell}"] = {"steps_to_0.01": reached, "final_mse": mse, "ratio_init": ratio0,
                                        "ratio_end": ratio1, "cpu_s": cpu}
            shown = str(reached) if reached else f"> {args.budget}"
            print(f"  {cell:8s} {shown:>18s} {mse:10.4f} {ratio0:13.2e} {ratio1:12.2e} {cpu:7.0f}", flush=True)
    return results


# ----------------------------------------------------------------------------- char LM


def charlm(args) -> dict:
    from workbench.engine.trainer import Trainer  # noqa: F401  (the task's own batches below)
    from workbench.presets import load_builtin
    from workbench.tasks import task_class

    path = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        path = Path("/work/shared/data/tinyshakespeare/input.txt")
    base = load_builtin("charlm_lstm")
    options = dict(base.data.options, seq_len=args.seq_len)
    task = task_class("charlm")(options, str(path), 0).ensure_prepared()
    io = task.model_io()
    results = {}
    print(f"\nTiny Shakespeare, {args.seconds:.0f} CPU s of training each, B={args.batch}, T={args.seq_len}, "
          f"2x{args.hidden}, Adam lr {args.lr}", flush=True)
    print(f"  {'cell':8s} {'steps':>6s} {'val nats/char':>14s}")
    for cell in args.cells.split(","):
        spec = base.model.copy() if hasattr(base.model, "copy") else base.model
        import copy
        spec = copy.deepcopy(base.model)
        for layer in spec.layers:
            layer.cell, layer.hidden_size = cell, args.hidden
        if cell == "lru":
            spec.init.lru_r_min, spec.init.lru_r_max = 0.9, 0.999
        torch.manual_seed(0)
        model = build_model(spec, io)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        g = torch.Generator().manual_seed(0)
        batches = task.train_batches(args.batch, g)
        steps, t0 = 0, time.process_time()
        model.train()
        while time.process_time() - t0 < args.seconds:
            batch = next(batches)
            opt.zero_grad(set_to_none=True)
            task.loss(model(batch.x, batch.y_in, batch.lengths), batch).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            steps += 1
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in task.val_batches(args.batch, args.val_batches):
                out = model(batch.x, batch.y_in, batch.lengths)
                total += float(task.loss(out, batch)) * batch.x.shape[0]
                count += batch.x.shape[0]
        nats = total / count
        results[cell] = {"steps": steps, "val_nats_per_char": nats}
        print(f"  {cell:8s} {steps:6d} {nats:14.3f}", flush=True)
    return results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--gpu", action="store_true")
    t.add_argument("--cells", default="lstm,gru,mingru,minlstm,lru")
    t.add_argument("--sizes", default="64x2", help="HxL, comma-separated")
    t.add_argument("--lengths", default="256,1024,4096")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--steps", type=int, default=6, help="timed steps per cell at T=256 (fewer when longer, CPU)")
    f = sub.add_parser("scan")
    f.add_argument("--gpu", action="store_true")
    f.add_argument("--lengths", default="256,1024,4096")
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--hidden", type=int, default=128)
    f.add_argument("--steps", type=int, default=5)
    r = sub.add_parser("longrange")
    r.add_argument("--cells", default="rnn_tanh,lstm,mingru,minlstm,lru")
    r.add_argument("--lengths", default="400,1000,2000")
    r.add_argument("--budget", type=int, default=600)
    r.add_argument("--eval-every", type=int, default=50)
    r.add_argument("--batch", type=int, default=32)
    r.add_argument("--hidden", type=int, default=32)
    r.add_argument("--lr", type=float, default=3e-3)
    r.add_argument("--val-batches", type=int, default=2)
    r.add_argument("--lru-layers", type=int, default=2)
    r.add_argument("--r-min", type=float, default=0.9)
    r.add_argument("--r-max", type=float, default=0.999)
    c = sub.add_parser("charlm")
    c.add_argument("--cells", default="lstm,mingru,minlstm,lru")
    c.add_argument("--seconds", type=float, default=120)
    c.add_argument("--seq-len", type=int, default=128)
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--hidden", type=int, default=256)
    c.add_argument("--lr", type=float, default=4e-3)
    c.add_argument("--val-batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"throughput": throughput, "scan": scan_forms, "longrange": longrange, "charlm": charlm}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
