"""GPU check of the distributed path (not a pytest file: run by hand on a CUDA machine).

    python3 tests/export/gpu_check.py

With one GPU, two NCCL ranks cannot share it, so this forces the distributed code path
in ONE process (WORLD_SIZE=1, workbench.engine.distributed.is_distributed patched to
True): NCCL process group bound to cuda:0, rank 0's broadcast, the flat gradient
all-reduce on CUDA tensors, with fp32, bf16 and fp16 (grad scaler). An all-reduce over
one rank is the identity, so every run must give exactly the losses of the plain run;
the step time of each is printed beside the plain run's (same machine, same call).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from workbench.engine import distributed  # noqa: E402
from workbench.engine.trainer import Trainer  # noqa: E402
from workbench.presets import load_builtin  # noqa: E402
from workbench.spec import with_overrides  # noqa: E402


def preset(precision: str, steps: int):
    return with_overrides(load_builtin("charlm_gru"), [
        "data.options.seq_len=128", "train.batch_size=64", "train.device=cuda", f"train.precision={precision}",
        f"train.steps={steps}", "train.eval_every=0", "train.probe_every=0", "train.log_every=1000000",
        "train.checkpoint_every=0", "train.eval_batches=2"])


def run(precision: str, steps: int) -> tuple[list[float], float]:
    trainer = Trainer(preset(precision, steps))
    losses, times = [], []
    for record in trainer.run():
        if record["kind"] == "step":
            losses.append(record["loss"])
            times.append(time.perf_counter())
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    per_step = (times[-1] - times[19]) / (len(times) - 20)
    return losses, per_step


def main() -> int:
    assert torch.cuda.is_available(), "no CUDA here"
    torch.backends.cudnn.deterministic = True  # so two runs can be compared step for step
    print(torch.__version__, torch.cuda.get_device_name(0))
    steps = 120
    plain = {p: run(p, steps) for p in ("fp32", "bf16", "fp16")}
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29531")
    distributed.is_distributed = lambda: True  # the NCCL path, over one rank
    ok = True
    for p in ("fp32", "bf16", "fp16"):
        losses, per_step = run(p, steps)
        import torch.distributed as dist

        assert dist.is_initialized() and dist.get_backend() == "nccl"
        same = losses == plain[p][0]
        worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses, plain[p][0]))
        ok &= worst <= 1e-5
        print(f"{p}: losses identical to the plain run: {same}, worst relative difference {worst:.2e} "
              f"(first {losses[0]:.4f}, last {losses[-1]:.4f}); "
              f"step {per_step * 1e3:.2f} ms with the NCCL all-reduce vs {plain[p][1] * 1e3:.2f} ms plain "
              f"(ratio {per_step / plain[p][1]:.3f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
