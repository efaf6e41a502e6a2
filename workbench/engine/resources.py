"""Will the model fit? The memory check the trainer makes before it allocates anything.

``check_training_memory(preset, task, device)`` compares ``spec.memory_estimate`` (weights,
gradients, Adam state and the activations kept for backpropagation through time) with
the memory the device has free right now, and refuses a preset that cannot fit with a
message giving both numbers and what to change. It is a lower-bound check: the sequence
lengths come from the task's first validation rows, not the longest possible input, so
a preset it passes may still run out of memory on a long batch; the trainer catches
that (torch.OutOfMemoryError) and ends the run with the same advice. What it refuses
could never have trained: a typo such as ``hidden_size=16384`` with 8 layers is caught
in a second, not after minutes of swapping or a killed process.

Free memory:
  cuda  torch.cuda.mem_get_info on the training GPU (free, not total: other processes'
        allocations count)
  cpu   MemAvailable from /proc/meminfo (what the kernel can hand out without swapping),
        capped by a cgroup v2 memory limit (containers); elsewhere os.sysconf's
        available pages; unknown (no check) where neither exists
  mps   unified memory: the CPU's figure
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from workbench.errors import TrainingError
from workbench.spec import ModelIO, Preset, format_bytes, memory_estimate

# Rows drawn from the validation data to learn the sequence lengths (few: a huge preset's
# data must not be what runs out of memory here).
_SAMPLE_ROWS = 8


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024  # the file counts kB (KiB)
    return None


def _cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """A cgroup v2 memory limit minus what the group uses (None when unlimited/absent)."""
    try:
        limit = (root / "memory.max").read_text().strip()
        used = (root / "memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None  # "max": no limit
    return max(int(limit) - int(used), 0)


def _sysconf_available() -> int | None:
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return int(pages) * int(size) if pages > 0 and size > 0 else None


def available_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes free on ``device`` or None if unknown, a short name of what was measured)."""
    if device.type == "cuda":
        index = device.index
        if index is None:
            from workbench.engine import distributed

            index = distributed.local_rank() if distributed.is_distributed() else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        return int(free), f"GPU cuda:{index} has {format_bytes(free)} free"
    found = _meminfo_available()
    if found is None:
        found = _sysconf_available()
    limit = _cgroup_available()
    if limit is not None and (found is None or limit < found):
        return limit, f"this process's memory limit (cgroup) leaves {format_bytes(limit)}"
    if found is None:
        return None, "unknown"
    return found, f"the machine has {format_bytes(found)} of RAM available"


def sample_lengths(task, batch_size: int, topology: str) -> tuple[int, int | None]:
    """(input length T, output length or None) from the task's first validation rows."""
    try:
        batch = next(iter(task.val_batches(min(batch_size, _SAMPLE_ROWS), 1)), None)
    except NotImplementedError:
        batch = None
    if batch is None:
        return 1, None
    out_len = None
    if batch.y_in is not None:
        out_len = int(batch.y_in.shape[1])  # [B, L] decoder inputs
    elif topology == "many_to_many" and batch.y.dim() >= 2:
        out_len = int(batch.y.shape[1])
    if topology == "one_to_many" or batch.x.dim() < 2:
        return out_len or 1, out_len  # one item per row: the generated length is what is kept
    return int(batch.x.shape[1]), out_len  # x [B, T, ...]


def training_memory(preset: Preset, io: ModelIO, seq_len: int, out_len: int | None) -> dict[str, int]:
    """spec.memory_estimate for this preset's batch size."""
    return memory_estimate(preset.model, io, preset.train.batch_size, seq_len, out_len)


def check_training_memory(preset: Preset, task, device: torch.device) -> dict[str, int] | None:
    """Raise TrainingError when the preset's estimated training memory exceeds what
    ``device`` has free; returns the estimate (None when the free memory is unknown)."""
    free, what = available_memory(device)
    if free is None:
        return None
    seq_len, out_len = sample_lengths(task, preset.train.batch_size, preset.model.topology)
    estimate = training_memory(preset, task.model_io(), seq_len, out_len)
    if estimate["total"] > free:
        lengths = f"{seq_len} steps" + (f" in, {out_len} out" if out_len and out_len != seq_len else "")
        raise TrainingError(
            f"this preset needs about {format_bytes(estimate['total'])} of memory to train "
            f"(weights {format_bytes(estimate['weights'])}, gradients and optimizer state "
            f"{format_bytes(estimate['optimizer'])}, activations {format_bytes(estimate['activations'])} "
            f"for a batch of {preset.train.batch_size} x {lengths}) but {what}: nothing was allocated; "
            f"use a smaller train.batch_size, shorter sequences or smaller layers")
    return estimate
