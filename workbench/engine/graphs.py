"""CUDA graphs of a training step's device work, replayed instead of re-launched.

A small recurrent model's step is hundreds of tiny kernels; on a GPU the host's time to
launch them one by one from Python, not the GPU, sets the pace (a 2x128 LSTM on an H200:
~4 ms a step, nearly all of it launching). A CUDA graph records the step's kernels once
and replays them with one launch. What is recorded is the part of the step between
drawing the batch and reading the step's numbers: forward, loss, backward, clipping and
the instrumentation's reductions (taps, parameter norms), ending in the one packed
tensor the trainer reads back. The optimizer update stays outside, after the host has
checked that the loss and gradients are finite (the non-finite guard decides on it).

One graph per distinct (batch shapes and dtypes, taps on or off, stacks fused or not,
autocast dtype), captured on the ``warmup``-th time that key comes round (earlier
occurrences run eagerly and warm cuDNN and the allocator up), at most ``max_graphs``
of them: a task whose batches change shape all the time runs eagerly after that. Replay
copies the batch into the graph's own input tensors, replays, and hands the parameters
back the gradient tensors the graph writes into. A capture that fails (an operation
that cannot be recorded, such as one that reads a value back to the host, or memory
running out) turns graphs off for the rest of the run; the step then runs eagerly, so a
failure costs time, never a result.
"""
from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from workbench.tasks.base import Batch

# device work: (a batch on the device) -> (packed [K] tensor of the step's numbers, what
# the trainer needs to unpack it)
DeviceWork = Callable[[Batch], tuple[torch.Tensor, Any]]


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    batch: Batch  # the graph's own input tensors
    packed: torch.Tensor  # the graph's output
    meta: Any
    grads: list[torch.Tensor | None]  # per parameter, the gradient tensor the graph writes


def batch_signature(batch: Batch) -> tuple:
    return tuple((f.name, tuple(v.shape), v.dtype) for f in dataclasses.fields(batch)
                 for v in [getattr(batch, f.name)] if isinstance(v, torch.Tensor))


class StepGraphs:
    def __init__(self, params: list[torch.Tensor], warmup: int = 2, max_graphs: int = 4,
                 min_free_share: float = 0.25):
        self.params = params
        self.warmup = warmup
        self.max_graphs = max_graphs
        self.min_free_share = min_free_share  # no new graph once the GPU has less free than this
        self.graphs: dict[tuple, _Graph] = {}
        self.seen: dict[tuple, int] = {}
        self.off_reason: str | None = None  # set when graphs were turned off for the run
        self.replays = 0

    def lookup(self, key: tuple) -> _Graph | None:
        """The graph recorded for ``key``, if any (None once graphs are off)."""
        return None if self.off_reason is not None else self.graphs.get(key)

    def capture_due(self, key: tuple) -> bool:
        """Counts a step of ``key`` that has no graph; whether to record one now."""
        if self.off_reason is not None:
            return False
        self.seen[key] = self.seen.get(key, 0) + 1
        if self.seen[key] <= self.warmup or len(self.graphs) >= self.max_graphs:
            return False
        free, total = torch.cuda.mem_get_info()
        return free >= self.min_free_share * total

    def capture(self, key: tuple, batch: Batch, work: DeviceWork) -> _Graph | None:
        """Record ``work`` on a copy of ``batch``; None (and graphs off) if it cannot be."""
        static = Batch(**{f.name: (v.clone() if isinstance(v, torch.Tensor) else v)
                          for f in dataclasses.fields(batch) for v in [getattr(batch, f.name)]})
        graph = torch.cuda.CUDAGraph()
        # An autograd graph still alive from an earlier step (held by cyclic garbage, say)
        # would hold the parameters' gradient accumulators, made on the default stream:
        # the capture would then have to wait on that stream, which a capture cannot.
        gc.collect()
        try:
            # one eager pass on the capture's stream first, as PyTorch's CUDA-graph notes ask
            # (lazy per-stream state such as library workspaces is set up outside the capture)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                work(static)
            torch.cuda.current_stream().wait_stream(side)
            for p in self.params:
                p.grad = None  # backward in the graph then writes fresh gradient tensors of its own
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"):
                packed, meta = work(static)
        except Exception as exc:  # noqa: BLE001 - any failure: this run goes on without graphs
            self.off_reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for p in self.params:
                p.grad = None
            self.graphs.clear()
            try:  # let the failed capture's work drain and give its memory back
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except RuntimeError:
                pass
            return None
        entry = _Graph(graph, static, packed, meta, [p.grad for p in self.params])
        self.graphs[key] = entry
        return entry

    def replay(self, entry: _Graph, batch: Batch) -> tuple[torch.Tensor, Any]:
        for f in dataclasses.fields(batch):
            source = getattr(batch, f.name)
            if isinstance(source, torch.Tensor):
                getattr(entry.batch, f.name).copy_(source, non_blocking=True)
        entry.graph.replay()
        for p, g in zip(self.params, entry.grads):
            p.grad = g
        self.replays += 1
        return entry.packed, entry.meta

