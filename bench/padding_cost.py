"""What reading padded rows correctly costs a bidirectional stack.

On a padded batch, a bidirectional layer's reverse direction must start at each row's
last real step (RowAlignment in workbench/engine/model.py: one kernel call on the input
widened with the right-shifted rows). This times a training step's forward + backward of
the same stack and batch three ways, interleaved round by round:

  unaligned  the layers' own module calls, lengths ignored (what the engine did before:
             the reverse direction read the padding first; wrong, the baseline of speed)
  aligned    the engine's route with the rows' lengths
  packed     torch's pack_padded_sequence route, for comparison

and prints aligned / unaligned and packed / unaligned time ratios.

  python bench/padding_cost.py                    # CPU, one thread: the tagger's shape
  python bench/padding_cost.py --gpu              # CUDA (timed with synchronisation)
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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402

from workbench.engine.model import RecurrentStack  # noqa: E402
from workbench.spec import LayerSpec  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--input", type=int, default=132, help="input width (the tagger's words + chars: 132)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--time", type=int, default=40, help="padded length T")
    ap.add_argument("--min-length", type=int, default=30, help="rows are this to T long (bucketed batches)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.gpu else "cpu")
    torch.manual_seed(0)
    stack = RecurrentStack([LayerSpec(cell=args.cell, hidden_size=args.hidden, bidirectional=True)
                            for _ in range(args.layers)], args.input).to(device)
    B, T = args.batch, args.time
    x = torch.randn(B, T, args.input, device=device, requires_grad=True)
    lengths = torch.randint(args.min_length, T + 1, (B,))
    lengths[0] = T
    lengths_dev = lengths.to(device)

    def unaligned():
        out, _ = stack(x)
        out.sum().backward()

    def aligned():
        out, _ = stack(x, align=stack.alignment(x, lengths_dev))
        out.sum().backward()

    def packed():
        seq = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        for rnn in stack.rnns:
            seq, _ = rnn(seq)
        out, _ = pad_packed_sequence(seq, batch_first=True, total_length=T)
        out.sum().backward()

    ways = {"unaligned": unaligned, "aligned": aligned, "packed": packed}
    times = {name: [] for name in ways}
    for fn in ways.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in ways.items():
            if args.gpu:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if args.gpu:
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["unaligned"])
    print(f"# {args.layers}x bidirectional {args.cell} {args.hidden}, input {args.input}, B={B}, T={T}, "
          f"lengths {args.min_length}..{T}, {device}, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'route':<10} {'median ms':>10} {'/ unaligned':>12}")
    for name in ways:
        med = statistics.median(times[name])
        print(f"{name:<10} {med * 1e3:>10.2f} {med / base:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
