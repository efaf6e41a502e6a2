"""Data-parallel training of one preset over several processes, launched by torchrun:

    torchrun --nproc_per_node 4 -m workbench train PRESET --run-dir D

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in each process's environment. Every rank
builds the same model (rank 0's weights are broadcast), draws its own batches (its own
data seed), and after each backward the gradients are averaged over the ranks, so each
optimizer step sees WORLD_SIZE x train.batch_size samples; train.steps still counts
optimizer steps. GPUs talk over NCCL (one GPU per rank: cuda:LOCAL_RANK), CPUs over gloo.

The averaging is DistributedDataParallel's data parallelism done explicitly: one flat
all-reduce of all gradients after backward instead of DDP's module wrapper and buckets,
because the trainer may run several forwards of the plain module per optimizer step
(truncated BPTT chunks, the probe's unrolled replica), which a DDP wrapper refuses. For
recurrent networks the backward through time leaves little to overlap anyway. (The
standalone script from `workbench export --script` uses DDP itself.)

Only rank 0 writes: the run folder (preset, metrics, checkpoints, weights) and the run
history. All ranks read the same checkpoint on --resume, so optimizer states agree.

The trainer calls this module at three marked points (``# distributed:``):
  setup_device(device)             in _setup: join the process group, this rank's device
  after_setup(trainer)             end of _setup: same weights, own batches, who writes
  average_gradients(params, loss)  after backward: mean gradients and loss over ranks
Without torchrun (WORLD_SIZE unset or 1) each of these is a no-op.
"""
from __future__ import annotations

import atexit
import os

import torch

from workbench.spec import SpecError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        return default


def world_size() -> int:
    return max(_env_int("WORLD_SIZE", 1), 1)


def rank() -> int:
    return _env_int("RANK", 0)


def local_rank() -> int:
    return _env_int("LOCAL_RANK", 0)


def is_distributed() -> bool:
    """Launched by torchrun (or the like) with more than one process."""
    return world_size() > 1


def is_main_process() -> bool:
    """Rank 0, the one process that writes files and records the run. True when not
    distributed. Read from the environment, so it is valid before the group exists."""
    return rank() == 0


def setup_device(device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device.

    ``device`` is what train.device resolved to: cuda -> cuda:LOCAL_RANK with NCCL; cpu
    -> gloo. Apple's MPS has no collective backend, so it is refused under torchrun."""
    if not is_distributed():
        return device
    from workbench.engine import cpu_policy

    cpu_policy.apply("trainer")  # a rank started without the CLI (a script of the user's): its policy now
    import torch.distributed as dist

    if device.type == "cuda":
        count = torch.cuda.device_count()
        # Every rank checks (not only those without a GPU), so rank 0 fails with the message
        # too, rather than waiting for peers that will never join.
        local_processes = max(_env_int("LOCAL_WORLD_SIZE", local_rank() + 1), local_rank() + 1)
        if local_processes > count:
            raise SpecError("train.device", f"torchrun started {local_processes} processes on this machine but it "
                            f"has {count} CUDA GPU(s), and NCCL needs one GPU per process: use "
                            f"--nproc_per_node {count} (or train.device cpu)")
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise SpecError("train.device", f"multi-process training (torchrun) runs on cuda (NCCL) or cpu (gloo), "
                        f"not {device.type}")
    if not dist.is_initialized():
        # device_id binds the NCCL communicator to this rank's GPU up front.
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, **kwargs)
        atexit.register(_shutdown)
    return device


def finish() -> None:
    """The end of a torchrun run, on every rank: wait until all ranks are here, then close
    the process group, before the interpreter's own teardown. A rank that tore its
    connections down while a peer still talked to it, or left that to exit time, was
    seen aborting ('terminate called without an active exception'). Alone: nothing."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - at exit, a peer may already be gone
            pass


def after_setup(trainer) -> None:
    """End of the trainer's set-up (after any checkpoint was loaded): every rank starts
    from rank 0's weights (broadcast); ranks > 0 draw their own batches (reseed_for_rank,
    and a resumed data stream starts afresh from that seed rather than replaying rank
    0's) and drop the run folder (trainer.run_dir = None: they write no checkpoints)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        with torch.no_grad():
            for tensor in [*trainer.model.parameters(), *trainer.model.buffers()]:
                dist.broadcast(tensor.data, src=0)
    if rank() == 0:
        return
    reseed_for_rank(trainer.generator, trainer.train.seed, trainer.state.step)
    cursor = getattr(trainer, "cursor", None)
    if cursor is not None and getattr(trainer, "resumed_from", None):
        cursor.start()  # the restored iterator was built from rank 0's saved generator state
        for name in ("_batch", "_carry"):
            if hasattr(trainer, name):
                setattr(trainer, name, None)
    trainer.run_dir = None


def reseed_for_rank(generator: torch.Generator, seed: int, step: int) -> None:
    """Each rank its own batches and dropout masks. Rank 0 keeps the seed's stream (a
    one-process run and rank 0 see the same batches); rank r > 0 reseeds from
    (seed, r, step), so a resumed run draws fresh, reproducible batches too."""
    if rank() == 0:
        return
    derived = (int(seed) * 1_000_003 + rank() * 7_919 + int(step) * 104_729) % (2**63 - 1)
    generator.manual_seed(derived)
    torch.manual_seed(derived)


def average_gradients(params: list[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """After backward: every gradient and the loss become their mean over the ranks, in
    one flat all-reduce (what DistributedDataParallel does in its buckets). Returns the
    loss to report, detached; alone (no torchrun) the loss itself, untouched.

    All ranks then hold the same gradients, so they take the same clipping, the same
    non-finite decision (a NaN on one rank is a NaN on all: none waits for the others in
    a step they skipped) and the same update. A parameter that got no gradient on any
    rank keeps none (the optimizer skips it, as it would in one process)."""
    if not is_distributed():
        return loss
    import torch.distributed as dist

    if not dist.is_initialized():
        return loss
    device = loss.device
    pieces = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    present = torch.tensor([float(p.grad is not None) for p in params], device=device)  # [P]
    flat = torch.cat([loss.detach().float().reshape(1), present, *pieces])  # [1 + P + sum(numel)]
    dist.all_reduce(flat)
    flat /= world_size()
    has_grad = (flat[1:1 + len(params)] > 0).tolist()  # one transfer, not one per parameter
    at = 1 + len(params)
    for p, has in zip(params, has_grad):
        n = p.numel()
        if has:  # some rank had a gradient for it
            grad = flat[at:at + n].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = grad.clone()
            else:
                p.grad.copy_(grad)
        at += n
    return flat[0].to(loss.dtype)


def run_worker(records) -> int:
    """What a rank > 0 does for `workbench train`: train in step with rank 0 and write
    nothing (no files, no terminal output, no history): ``records`` is that rank's run
    session (which writes nothing off rank 0). Returns the exit status."""
    from workbench.engine.records import End

    status = "failed"
    for record in records:
        if isinstance(record, End):
            status = record.status
    finish()
    return 0 if status in ("finished", "stopped") else 1
