"""CPU training time per step, with the default C allocator and with the workbench's
policy (workbench/engine/cpu_policy.py), per preset size; and the engine against a
plain PyTorch loop run in the default environment.

Each measurement is its own process (the allocator policy is per process, set at start):
the engine trains the built-in preset as `workbench train` does (instruments on, as the
preset has them), and the wall, user and system time and the page faults are read
between the end of the warm-up steps and the last step (start-up, data loading and the
final evaluation left out). The processes of one preset alternate default / policy,
so load from other processes falls on both alike; ratios are within one run.

  python bench/cpu_policy.py                         # adding, char-LM, tagger, video
  python bench/cpu_policy.py --presets charlm_lstm --steps 60 --repeats 2
  python bench/cpu_policy.py --bare                  # + the plain loop at char-LM size
  WORKBENCH_ALLOCATOR=default python bench/cpu_policy.py --per-step charlm_lstm --steps 12
                                                     # each step's faults, sys, user, RSS

`--bare`: a hand-written loop at the char-LM's size (nn.Embedding -> nn.LSTM(2 layers) ->
nn.Linear, Adam, clipping, the same batches' shape), in the default environment,
against the engine with its policy and all its instruments on.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
if not SHAKESPEARE.is_file():
    SHAKESPEARE = Path("/work/shared/data/tinyshakespeare/input.txt")
PRESETS = ["adding_lstm", "charlm_lstm", "tagger_bilstm", "video_nextframe_lstm"]
WARMUP = 8


def _usage() -> tuple[float, float, float, int, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt, r.ru_nivcsw + r.ru_nvcsw


def _per_step(a, b, steps: int) -> dict:
    return {"wall": (b[0] - a[0]) / steps, "user": (b[1] - a[1]) / steps, "sys": (b[2] - a[2]) / steps,
            "faults": (b[3] - a[3]) / steps, "switches": (b[4] - a[4]) / steps}


def child_engine(name: str, steps: int, threads: int) -> dict:
    from workbench.engine import cpu_policy

    policy = cpu_policy.apply("bench")  # WORKBENCH_ALLOCATOR=default in the environment: left as is
    from workbench import presets, spec
    from workbench.engine.trainer import Trainer

    overrides = [f"train.steps={WARMUP + steps}", "train.checkpoint_every=0", "train.device=cpu",
                 f"train.num_threads={threads}"]
    if name.startswith("charlm"):
        overrides.append(f"data.path={SHAKESPEARE}")
    preset = spec.with_overrides(presets.resolve(name), overrides)
    first = None
    for record in Trainer(preset).run():
        if record["kind"] == "step" and record["step"] == WARMUP:
            first = _usage()
        elif record["kind"] == "step" and record["step"] == WARMUP + steps:
            last = _usage()
            break
    return {"per_step": _per_step(first, last, steps), "policy": policy["allocator"]["policy"],
            "threads": __import__("torch").get_num_threads(),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def per_step(name: str, steps: int, threads: int) -> None:
    """Each step's page faults, system, user and wall time and resident memory, in this
    process's environment (WORKBENCH_ALLOCATOR=default for glibc's own behaviour)."""
    from workbench.engine import cpu_policy

    cpu_policy.apply("bench")
    from workbench import presets, spec
    from workbench.engine.trainer import Trainer

    overrides = [f"train.steps={steps}", "train.checkpoint_every=0", "train.device=cpu", f"train.num_threads={threads}"]
    if name.startswith("charlm"):
        overrides.append(f"data.path={SHAKESPEARE}")
    last = _usage()
    for record in Trainer(spec.with_overrides(presets.resolve(name), overrides)).run():
        if record["kind"] == "step":
            now = _usage()
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20
            print(f"step {record['step']}: faults {now[3] - last[3]}, sys {now[2] - last[2]:.3f} s, "
                  f"user {now[1] - last[1]:.3f} s, wall {now[0] - last[0]:.3f} s, RSS {rss:.0f} MB", flush=True)
            last = now


def child_bare(steps: int, threads: int) -> dict:
    """A plain PyTorch char-LM loop: charlm_lstm's sizes, nothing of the workbench."""
    import torch
    from torch import nn

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    text = SHAKESPEARE.read_text(encoding="utf-8")
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text[:200_000]], dtype=torch.long)
    vocab, batch, seq = len(chars), 64, 128

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(vocab, 64)
            self.proj = nn.Linear(64, 64)
            self.lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True)
            self.head = nn.Linear(256, vocab)

        def forward(self, x):  # x [B, T] -> logits [B, T, V]
            out, _ = self.lstm(self.proj(self.embed(x)))
            return self.head(out)

    model = CharLM()
    opt = torch.optim.Adam(model.parameters(), lr=0.004)
    first = None
    for step in range(1, WARMUP + steps + 1):
        starts = torch.randint(0, len(data) - seq - 1, (batch,))
        window = torch.stack([data[s:s + seq + 1] for s in starts.tolist()])  # [B, T+1]
        x, y = window[:, :-1], window[:, 1:]
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        float(loss)  # a loop that logs reads its loss back
        if step == WARMUP:
            first = _usage()
    last = _usage()
    return {"per_step": _per_step(first, last, steps), "policy": "default", "threads": torch.get_num_threads(),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(args: list[str], allocator: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_NUM_THREADS", None)  # torch's own default, as a user gets it
    if allocator == "default":
        env["WORKBENCH_ALLOCATOR"] = "default"
    else:
        env.pop("WORKBENCH_ALLOCATOR", None)
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r["per_step"][key] for r in rows)


def _line(label: str, rows: list[dict]) -> str:
    return (f"| {label} | {_median(rows, 'wall') * 1000:.0f} | {_median(rows, 'user') * 1000:.0f} | "
            f"{_median(rows, 'sys') * 1000:.0f} | {_median(rows, 'faults'):.0f} | "
            f"{statistics.median(r['maxrss_mb'] for r in rows):.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=PRESETS)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per process (after 8 warm-up steps)")
    ap.add_argument("--repeats", type=int, default=2, help="processes per preset and allocator")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's own default)")
    ap.add_argument("--bare", action="store_true", help="also the plain PyTorch loop at char-LM size")
    ap.add_argument("--per-step", metavar="PRESET", help="print each step's faults and times in this environment")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.per_step:
        per_step(args.per_step, args.steps, args.threads)
        return 0
    if args.child:
        kind, steps, threads = args.child[0], int(args.child[1]), int(args.child[2])
        result = child_bare(steps, threads) if kind == "bare" else child_engine(kind, steps, threads)
        print(json.dumps(result))
        return 0
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; "
          f"{args.steps} timed steps per process, medians of {args.repeats}, "
          f"torch threads {args.threads or 'default'}")
    print("| preset, allocator | wall ms/step | user ms/step | sys ms/step | minor faults/step | max RSS MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.presets:
        rows: dict[str, list[dict]] = {"default": [], "policy": []}
        for i in range(args.repeats):
            for allocator in (("default", "policy") if i % 2 == 0 else ("policy", "default")):
                rows[allocator].append(run_child([name, str(args.steps), str(args.threads)], allocator))
        print(_line(f"{name}, default", rows["default"]))
        print(_line(f"{name}, policy", rows["policy"]))
        d, p = rows["default"], rows["policy"]
        sys_ratio = (f"{_median(d, 'sys') / max(_median(p, 'sys'), 1e-4):.0f}x" if _median(d, 'sys') >= 1e-3
                     else "(both < 1 ms)")
        print(f"| {name}: default / policy | {_median(d, 'wall') / _median(p, 'wall'):.2f}x | "
              f"{_median(d, 'user') / _median(p, 'user'):.2f}x | {sys_ratio} | | |", flush=True)
    if args.bare:
        rows = {"bare": [], "engine": []}
        for i in range(args.repeats):
            order = (("bare", "default"), ("charlm_lstm", "policy"))
            for kind, allocator in (order if i % 2 == 0 else order[::-1]):
                rows["bare" if kind == "bare" else "engine"].append(run_child([kind, str(args.steps), str(args.threads)], allocator))
        print(_line("plain PyTorch loop, default env", rows["bare"]))
        print(_line("engine + instruments, policy", rows["engine"]))
        print(f"engine speed / plain loop's: {_median(rows['bare'], 'wall') / _median(rows['engine'], 'wall'):.2f}x "
              f"(wall per step)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
