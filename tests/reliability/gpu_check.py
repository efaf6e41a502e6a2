"""GPU checks for the reliability work (run by hand on a CUDA machine; not a pytest file):

    python -m tests.reliability.gpu_check [--device cuda]

1. the free memory the check reads is torch.cuda.mem_get_info's;
2. a preset beyond the GPU is refused before anything is allocated on it;
3. the estimate against the real peak (torch.cuda.max_memory_allocated) for a few presets;
4. a real CUDA out-of-memory at step 3 (the allocator, not a mock) ends the run 'failed'
   with the advice, frees the memory, and the next run trains on the same GPU;
5. `workbench train` refuses the too-big preset on the GPU in one line (exit 2).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch

from workbench import presets, spec
from workbench.engine import resources
from workbench.engine.model import RecurrentModel
from workbench.engine.trainer import Trainer, TrainingError
from workbench.spec import format_bytes
from workbench.tasks import make_task


def say(*parts):
    print(*parts, flush=True)


def preset(name, *overrides):
    return spec.with_overrides(presets.load_builtin(name), list(overrides))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    dev_name = ap.parse_args().device
    device = torch.device(dev_name)
    cuda = device.type == "cuda"
    say("torch", torch.__version__, "cuda", torch.version.cuda, "device", device,
        torch.cuda.get_device_name(0) if cuda else "")
    failures = 0

    def check(ok, what):
        nonlocal failures
        say(("PASS " if ok else "FAIL ") + what)
        failures += 0 if ok else 1

    # 1. free memory
    free, what = resources.available_memory(device)
    if cuda:
        real_free, total = torch.cuda.mem_get_info()
        check(abs(free - real_free) < 256 * 2**20, f"free memory read: {what} (mem_get_info {format_bytes(real_free)} of {format_bytes(total)})")
    else:
        say("free:", what)

    # 2. too big: refused before allocating
    base = torch.cuda.memory_allocated() if cuda else 0
    huge = preset("adding_lstm", f"train.device={dev_name}", "model.layers.0.hidden_size=16384",
                  "train.batch_size=65536", "data.options.seq_len=100000")
    try:
        next(Trainer(huge).run())
        check(False, "huge preset refused")
    except TrainingError as exc:
        check("needs about" in str(exc) and (not cuda or "GPU cuda:" in str(exc)), f"huge preset refused: {exc}")
    if cuda:
        check(torch.cuda.memory_allocated() == base, f"nothing allocated by the refusal ({torch.cuda.memory_allocated() - base} bytes)")

    # 3. estimate vs real peak
    for name, overrides in (("adding_lstm", []), ("adding_lstm", ["train.batch_size=256", "data.options.seq_len=1000"]),
                            ("charlm_lstm", []), ("numbers_encdec_lstm", []), ("video_nextframe_lstm", []),
                            ("adding_gru", ["model.layers.0.hidden_size=2048", "train.batch_size=64",
                                            "data.options.seq_len=200"])):
        p = preset(name, f"train.device={dev_name}", "train.steps=3", "train.eval_every=0", "train.probe_every=0",
                   *overrides)
        try:
            task = make_task(p)
        except Exception as exc:  # noqa: BLE001 - e.g. the default corpus is not on this machine
            say(f"  {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        seq, out = resources.sample_lengths(task, p.train.batch_size, p.model.topology)
        est = resources.training_memory(p, task.model_io(), seq, out)
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        recs = list(Trainer(p, task=task).run())
        peak = (torch.cuda.max_memory_allocated() - before) if cuda else 0
        say(f"  {name} {' '.join(overrides)}: T={seq} out={out} estimate {format_bytes(est['total'])} "
            f"(acts {format_bytes(est['activations'])}) real peak {format_bytes(peak)} ratio "
            f"{(est['total'] / peak) if peak else float('nan'):.2f} status {recs[-1]['status']} "
            f"{time.perf_counter() - t0:.1f}s")

    # 4. a real allocator OOM at step 3
    import gc

    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    settled = torch.cuda.memory_allocated() if cuda else 0  # after normal runs (library workspaces stay)
    original = RecurrentModel.forward
    calls = {"n": 0}

    def forward(model, *args, **kwargs):
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 3:
                torch.empty(2**45, dtype=torch.uint8, device=device)  # 32 TiB: the allocator refuses
        return original(model, *args, **kwargs)

    RecurrentModel.forward = forward
    try:
        p = preset("adding_lstm", f"train.device={dev_name}", "train.steps=6", "train.eval_every=0", "train.probe_every=0")
        recs = list(Trainer(p).run())
    finally:
        RecurrentModel.forward = original
    end = recs[-1]
    check(end["status"] == "failed" and end["step"] == 2 and "out of memory" in end["message"]
          and "train.batch_size" in end["message"], f"real OOM at step 3: {end['status']} step {end['step']}: {end['message']}")
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        left = torch.cuda.memory_allocated() - settled
        check(left < 16 * 2**20, f"memory held after the OOM run beyond a normal run's: {format_bytes(left)}")
    recs = list(Trainer(p).run())
    check(recs[-1]["status"] == "finished", f"the next run on the same device: {recs[-1]['status']}")

    # 5. the CLI on the GPU
    proc = subprocess.run([sys.executable, "-m", "workbench", "train", "adding_lstm", "--device", dev_name, "--quiet",
                           "--set", "model.layers.0.hidden_size=16384", "--set", "train.batch_size=65536",
                           "--set", "data.options.seq_len=100000", "--run-dir", "/tmp/gpu_check_run"],
                          capture_output=True, text=True, env={**os.environ, "WORKBENCH_HOME": "/tmp/gpu_check_home"})
    lines = proc.stderr.strip().splitlines()
    check(proc.returncode == 2 and len(lines) == 1 and not os.path.exists("/tmp/gpu_check_run"),
          f"CLI refusal on the GPU: exit {proc.returncode}: {proc.stderr.strip()}")
    say("failures:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
