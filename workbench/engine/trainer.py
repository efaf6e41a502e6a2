"""The trainer: a generator of plain records (floats, numpy arrays, dicts, strings).

It knows nothing of the task beyond workbench.tasks.base.Task, nothing of Qt and nothing
of the terminal: the CLI, the GUI's worker thread and the tests all consume the same
stream. Between steps it honours a TrainControl (pause / resume / stop), so a stop
takes effect within one step.

Records: the declared types of workbench/engine/records.py (Start, Step, Probe, Dynamics,
Eval, NonFinite, Checkpoint, End), in this order: one Start; then Steps, with a Probe
(and its Dynamics) before the first update (the profile at init) and every probe_every
steps, an Eval (over
train.eval_batches batches) every eval_every steps, a Checkpoint every checkpoint_every
steps, a NonFinite for each step whose loss or gradients were NaN/Inf; then the final
Eval (over the whole validation set) and Checkpoint; one End.

What a step costs beyond bare PyTorch: everything it reports (loss, gradient norms,
the layer-input gradient norms and per-layer parameter norms) is reduced on the device
and moved to the host in ONE transfer, which is also the step's only synchronisation
(the non-finite guard needs the loss before the optimizer step). On CUDA that device
work is replayed from a CUDA graph per batch shape (graphs.py), so a small model's step
is one launch instead of hundreds from Python. The taps need each
layer boundary as a tensor, so tapped steps run a stack as single-layer calls; steps
between taps (``log_every`` > 1) may run a stack of identical layers as one fused
multi-layer kernel; on CUDA which way, and whether from a CUDA graph, is chosen by
timing (StepPathTuner; the end record's fused_stacks and untapped_graphs say what was
kept). The exact probe is
sampled every ``probe_every`` steps, and postponed whenever the time spent probing would
exceed ``probe_budget`` (2%) of the training time so far.

Truncated BPTT (``train.tbptt`` > 0, many_to_one / many_to_many only): each batch's time
axis is cut into chunks of that length and the hidden state is carried, detached, from
one chunk to the next. many_to_many: one optimizer step per chunk. many_to_one: the
target is at the end, so one step per batch whose gradient reaches back at most
``tbptt`` steps from each row's last step. The instrumentation then describes the last
chunk of the step.
"""
from __future__ import annotations

import contextlib
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.engine import checkpoint as ckpt
from workbench.engine import cpu_policy, distributed
from workbench.engine.graphs import StepGraphs, batch_signature
from workbench.engine.model import RecurrentModel, build_model
from workbench.engine.probe import (
    ParamGradNorms,
    TapNormHooks,
    exact_hidden_grad_norm_tensors,
    to_host,
    unpack_param_norms,
)
from workbench.engine.records import Checkpoint, Dynamics, End, Eval, NonFinite, Probe, Record, Start, Step
from workbench.engine.resources import check_training_memory
from workbench.errors import TrainingError  # noqa: F401 - also importable from here
from workbench.spec import Preset, SpecError, TrainSpec
from workbench.tasks import make_task
from workbench.tasks.base import Batch, Task

# val_batches' max_batches for "every batch there is" (the task stops at its last).
WHOLE_SET = 10**9


def out_of_memory(exc: BaseException) -> bool:
    """CUDA's allocator raises torch.OutOfMemoryError; the CPU's and Apple's MPS a plain
    RuntimeError that says so."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


class TrainControl:
    """Thread-safe pause / stop flags, set by a UI and polled by the trainer between steps.

    ``paused_s``: the seconds the trainer has waited while paused, so that training time
    (the End record's time_s, the history's training time) leaves pauses out."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.paused_s = 0.0

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused trainer so it can see the stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_if_paused(self, poll_s: float = 0.1) -> None:
        if self._running.is_set():
            return
        t0 = time.perf_counter()
        while not self._running.wait(poll_s):
            pass
        self.paused_s += time.perf_counter() - t0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """train.device -> a torch device: auto = CUDA if present, else Apple MPS, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        why = ("this PyTorch was built without CUDA" if torch.version.cuda is None
               else "no CUDA GPU is visible (driver or CUDA_VISIBLE_DEVICES?)")
        raise TrainingError(f"train.device is {name!r} but {why}; use 'auto' or 'cpu'")
    if name == "mps" and not _mps_available():
        raise TrainingError("train.device is 'mps' but Apple's Metal backend is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


def make_optimizer(params, train: TrainSpec) -> torch.optim.Optimizer:
    """The optimizer train.optimizer names. SGD/Adam/AdamW use PyTorch's fused
    implementation where the device has one (one kernel for all parameters, on the CPU
    and on CUDA; the same update rule), else the multi-tensor one."""
    params = list(params)
    if train.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    kinds = {"sgd": (torch.optim.SGD, {"momentum": train.momentum}), "adam": (torch.optim.Adam, {}),
             "adamw": (torch.optim.AdamW, {})}
    if train.optimizer not in kinds:
        raise SpecError("train.optimizer", f"unknown optimizer {train.optimizer!r}")
    cls, extra = kinds[train.optimizer]
    try:
        return cls(params, lr=train.lr, weight_decay=train.weight_decay, fused=True, **extra)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device or dtype
        return cls(params, lr=train.lr, weight_decay=train.weight_decay, **extra)


def lr_factor(train: TrainSpec, step: int, total: int) -> float:
    """Multiplier on train.lr at optimizer step ``step`` (0-based): linear warm-up over
    ``warmup_steps`` (from 1/warmup up to 1), then the schedule, counted from the end of
    the warm-up: constant; cosine from 1 down to 0 at ``total``; or ``gamma`` every
    ``step_size`` steps."""
    if train.warmup_steps and step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    after = max(step - train.warmup_steps, 0)
    if train.schedule == "cosine":
        span = max(total - train.warmup_steps, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(after / span, 1.0)))
    if train.schedule == "step":
        return train.gamma ** (after // train.step_size)
    return 1.0


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch (weights, dropout) and numpy; returns the data generator (CPU)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done
    epoch: int = 0  # passes over the data completed
    best_val: float | None = None
    last_eval: dict = field(default_factory=dict)
    last_probe_step: int = -1  # -1: not probed yet


class _DataCursor:
    """Where the trainer is in the task's batch stream, in a form that can be saved and
    replayed exactly: the data generator's state when the current iterator was made
    (the start of the epoch; for endless data, every ENDLESS_SPAN batches) and how many
    batches have been drawn from it since. Resuming replays those draws, so the stream
    continues exactly as it would have, whatever the task's iterator keeps to itself.

    Endless (generated) data restarts its iterator every ENDLESS_SPAN batches from the
    generator's state at that point, so a resume replays at most that many draws instead
    of every batch since the run began (generated video clips take ~4 ms a batch: a run
    resumed at step 100,000 would wait minutes)."""

    ENDLESS_SPAN = 256

    def __init__(self, task: Task, batch_size: int, generator: torch.Generator):
        self.task, self.batch_size, self.generator = task, batch_size, generator
        self.anchor: torch.Tensor | None = None
        self.position = 0
        self._iter: Iterator[Batch] | None = None
        self.endless = task.epoch_size(batch_size) is None

    def start(self) -> None:
        self.anchor = self.generator.get_state()
        self.position = 0
        self._iter = iter(self.task.train_batches(self.batch_size, self.generator))

    def next(self) -> Batch | None:
        """The next batch, or None at the end of an epoch."""
        if self._iter is None or (self.endless and self.position >= self.ENDLESS_SPAN):
            self.start()
        try:
            batch = next(self._iter)
        except StopIteration:
            return None
        self.position += 1
        return batch

    def restore(self, anchor: torch.Tensor, position: int) -> None:
        self.generator.set_state(anchor)
        self.start()
        for _ in range(position):
            if self.next() is None:
                break


@dataclass
class _Work:
    """One optimizer step's worth of data: ``loss()`` runs the forward pass and returns
    the loss; ``probe_loss()`` does the same through the unrolled replica."""

    loss: Callable[[], torch.Tensor]
    probe_loss: Callable[[], torch.Tensor]
    units: int
    batch: Batch | None = None  # the whole device batch (not a TBPTT chunk): a CUDA graph can replay it


def _row_classes(batch: Batch | None) -> torch.Tensor | None:
    """A classification batch's class per row [B] (the trajectory's colours), else None."""
    y = batch.y if batch is not None else None
    if y is None or y.dim() != 1 or y.is_floating_point() or y.is_complex():
        return None
    return y


def _slice_time(t: torch.Tensor | None, s: int, e: int) -> torch.Tensor | None:
    return None if t is None else t[:, s:e]


def _detach_states(states: list) -> list:
    return [tuple(x.detach() for x in s) if isinstance(s, tuple) else s.detach() for s in states]


class StepPathTuner:
    """Picks, by timing, how the untapped steps run: each path is (fused, graphs): a stack
    of identical layers as one fused multi-layer kernel or as single-layer calls, and the
    step replayed from a CUDA graph or launched op by op. The paths take turns; the first
    ``warmup_rounds`` rounds are not timed (cuDNN plans its kernels on first use, and a
    graph is recorded on its third step), then ``samples`` rounds are; the path with the
    lowest median time wins and ``choice`` is set, as cudnn.benchmark does for convolutions."""

    def __init__(self, paths: list[tuple[bool, bool]], warmup_rounds: int = 3, samples: int = 3):
        self.paths = list(paths)
        self.warmup_rounds, self.samples = warmup_rounds, samples
        self.seen = 0
        self.times: dict[tuple[bool, bool], list[float]] = {path: [] for path in self.paths}
        self.choice: tuple[bool, bool] | None = None

    def next_path(self) -> tuple[bool, bool]:
        return self.paths[self.seen % len(self.paths)] if self.choice is None else self.choice

    def timed(self, seconds: float) -> tuple[bool, bool] | None:
        """The step that ran next_path() took ``seconds``; returns the choice once made."""
        if self.choice is None:
            n = len(self.paths)
            if self.seen >= self.warmup_rounds * n:
                self.times[self.paths[self.seen % n]].append(seconds)
            self.seen += 1
            if self.seen >= (self.warmup_rounds + self.samples) * n:
                self.choice = min(self.paths, key=lambda path: statistics.median(self.times[path]))
        return self.choice


class Trainer:
    """Train ``preset``'s model on its task. Iterate ``run()`` for the records.

    ``probe_budget``: the largest share of training time the exact probe may take (it
    is postponed past ``probe_every`` when it would take more; 2% by default, so that
    the fully instrumented engine stays within 5% of a bare loop); None = probe exactly
    every ``probe_every`` steps. ``clock`` measures that share (a benchmark that
    interleaves several trainers gives each its own). ``fused_stacks``: run the steps
    that record no taps through one multi-layer kernel (RecurrentStack.fused); None =
    on CUDA, whichever way the first such steps time faster (StepPathTuner).
    ``cuda_graphs``: replay each step's device work from a CUDA graph (graphs.py); None
    = on CUDA, unless fp16's grad scaler or several processes are in play.
    ``dynamics``: after each Probe, a Dynamics record on the same batch (Jacobian norms,
    Lyapunov exponents, W_hh spectra, gates; engine/dynamics.py), its time counted in
    the probe's budget; None = as the preset's ``train.dynamics`` says (False turns it
    off whatever the preset says)."""

    def __init__(self, preset: Preset, run_dir: str | Path | None = None, control: TrainControl | None = None,
                 task: Task | None = None, resume: bool = False, probe_budget: float | None = 0.02,
                 clock: Callable[[], float] = time.perf_counter, fused_stacks: bool | None = None,
                 cuda_graphs: bool | None = None, dynamics: bool | None = None):
        self.preset = preset
        self.dynamics = preset.train.dynamics if dynamics is None else dynamics and preset.train.dynamics
        self.train = preset.train
        self.run_dir = Path(run_dir) if run_dir else None
        self.control = control or TrainControl()
        self.resume = resume
        self.probe_budget = probe_budget
        self.eval_examples = 0  # how many validation examples the last evaluation read
        self.clock = clock
        self.fused_stacks = fused_stacks
        self.cuda_graphs = cuda_graphs
        self.task = task or make_task(preset)
        self.state = TrainerState()
        self.model: RecurrentModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.device: torch.device | None = None
        self._check_settings()

    def _check_settings(self) -> None:
        t, topology = self.train, self.preset.model.topology
        if t.tbptt:
            if topology not in ("many_to_one", "many_to_many"):
                raise SpecError("train.tbptt", f"truncated BPTT cuts one long input sequence into chunks; a "
                                f"{topology.replace('_', '-')} model has no such sequence to cut: set it to 0")
            if any(layer.bidirectional for layer in self.preset.model.layers):
                raise SpecError("train.tbptt", "bidirectional layers read each sequence from its end, which a "
                                "chunk does not have: set train.tbptt to 0 or make the layers one-directional")
            if not self.task.step_aligned:
                raise SpecError("train.tbptt", f"task {self.task.name!r} has no target per input step (one label "
                                f"string per sequence), so a chunk has no targets of its own: set train.tbptt to 0")
        # train.epochs caps the passes over finite data; a task's generated, endless data has
        # no passes to count, so there the cap does not apply (total_steps): one preset can
        # cap the passes over a user's short clip and still train on its generated default

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        t = self.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = distributed.setup_device(resolve_device(t.device))  # distributed: this rank's device
        # Refuse a preset that cannot fit before anything is allocated (estimate vs free memory).
        check_training_memory(self.preset, self.task, self.device)
        self.generator = seed_everything(t.seed)
        try:
            self.model = build_model(self.preset.model, self.task.model_io()).to(self.device)
        except RuntimeError as exc:
            if not out_of_memory(exc):
                raise
            raise TrainingError(f"out of memory on {self.device} while building the model: use smaller layers "
                                f"or embeddings") from None
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self._param_norms = ParamGradNorms(self.model)
        self.optimizer = make_optimizer(self.params, t)
        amp_on = self.device.type == "cuda" and t.precision != "fp32"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision) if amp_on else None
        self.precision = t.precision if amp_on else "fp32"
        self.scaler = torch.amp.GradScaler("cuda") if amp_on and t.precision == "fp16" else None
        # Each step's device work may be replayed from a CUDA graph (graphs.py): far fewer
        # launches from Python, which set the pace of small models on a GPU.
        graphs = self.cuda_graphs
        if graphs is None:
            graphs = self.scaler is None and not distributed.is_distributed()
        self._graphs = StepGraphs(self.params) if graphs and self.device.type == "cuda" else None
        # Steps that record no taps may also run stacks of identical layers as one fused
        # kernel. Which is faster, fused or not, graphed or not, depends on the GPU, the
        # sizes and the precision (on an H200 a fused fp32 2x1024 LSTM: 1.3x faster than
        # single-layer calls when launched op by op, slower replayed from a graph; a 2x128
        # one: slower fused unless graphed; bench/throughput.py). So on CUDA the first
        # untapped steps time the candidates and keep the fastest (StepPathTuner). On the
        # CPU fused and single-layer calls are the same loop over layers: no fusing.
        fusable = any(stack.fusable for _name, stack in self.model.named_stacks())
        fused_options = [bool(self.fused_stacks)]
        if self.fused_stacks is None and fusable and self.device.type == "cuda":
            fused_options = [False, True]
        graph_options = [self._graphs is not None]
        if self._graphs is not None and self.cuda_graphs is None:
            graph_options = [True, False]
        paths = [(fused, graphed) for graphed in graph_options for fused in fused_options]
        self._path_tuner = StepPathTuner(paths) if len(paths) > 1 else None
        self._untapped_path = paths[0]
        self.model.set_fused_stacks(paths[0][0])
        self._fusable = tuple(stack.fusable for _name, stack in self.model.named_stacks())
        self._probe_fallback = ""  # why the exact probe went back to the unrolled replica, if it did
        # Detached views of the parameters, made once: they follow every in-place update
        # (optimizer, restore, load) and spare a detach() per parameter per step.
        self._param_data = [p.detach() for p in self.params]
        # The weights before the last optimizer update, kept on the device: if an update
        # makes them non-finite, these are the last good weights.
        self._snapshot = [p.clone() for p in self._param_data]
        self._updated = False  # whether an update was made since the snapshot was last restored
        self._last_update_step = 0
        self.cursor = _DataCursor(self.task, t.batch_size, self.generator)
        self._batch: Batch | None = None  # the batch being cut into TBPTT chunks
        self._chunk = 0  # next chunk of it
        self._carry: list | None = None  # hidden state carried into that chunk
        self._batch_origin: tuple = (None, 0)  # cursor anchor and position just after drawing it
        self._batch_epoch = 0  # the pass the current batch belongs to
        self.resumed_from = None
        self._trial_threads = 0  # the thread count the trial chose (0: none ran)
        if self.resume and self.run_dir is not None:
            found = ckpt.latest_checkpoint(self.run_dir)
            if found is not None:
                self._restore(found)
                self.resumed_from = str(found)
        # distributed (torchrun): rank 0's weights everywhere, each rank its own batches, only
        # rank 0 writes (ranks > 0 get run_dir None); see workbench/engine/distributed.py.
        distributed.after_setup(self)

    def _restore(self, stem: Path) -> None:
        saved = ckpt.restore_checkpoint(stem, self.model, self.optimizer, self.scaler, generator=self.generator)
        self.state.step = int(saved["step"])
        extra = saved["trainer"]
        self.state.epoch = int(extra.get("epoch", 0))
        self.state.last_probe_step = int(extra.get("last_probe_step", -1))
        self._trial_threads = int(extra.get("trial_threads", 0))
        if "data_anchor" in extra:
            chunk = int(extra.get("chunk", 0))
            if chunk:  # stopped inside a batch's TBPTT chunks: draw that batch again
                self.cursor.restore(extra["batch_anchor"], int(extra["batch_position"]) - 1)
                self._batch, self._chunk = self.cursor.next(), chunk
                self._batch_origin = (extra["batch_anchor"], int(extra["batch_position"]))
                self._batch_epoch = int(extra.get("batch_epoch", self.state.epoch))
                carry = extra.get("carry")
                self._carry = None if carry is None else [
                    tuple(x.to(self.device) for x in s) if isinstance(s, (tuple, list)) else s.to(self.device)
                    for s in carry]
            self.cursor.restore(extra["data_anchor"], int(extra["data_position"]))
            # replaying the data must not move the global RNG (dropout) off its saved state
            torch.set_rng_state(saved["torch_rng"])
        with torch.no_grad():
            torch._foreach_copy_(self._snapshot, self._param_data)

    def _autocast(self, cache: bool = True):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype, cache_enabled=cache)

    def total_steps(self) -> int:
        t = self.train
        epoch_batches = self.task.epoch_size(t.batch_size)
        if t.epochs and epoch_batches and not t.tbptt:
            return min(t.steps, t.epochs * epoch_batches)
        return t.steps

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[Record]:
        self._setup()
        t = self.train
        model = self.model
        total = self.total_steps()
        n_params = sum(p.numel() for p in model.parameters())
        pending: list[_Work | None] = []  # the first step's work when the thread trial drew it
        policy = cpu_policy.describe()
        if self.state.step < total and self._thread_trial_due():
            if self._trial_threads:  # resumed: the count its own trial chose, so it goes on as it would have
                torch.set_num_threads(self._trial_threads)
                policy["thread_trial"] = {"threads": self._trial_threads, "from": "the checkpoint resumed"}
            else:
                pending.append(self._next_work())
                if pending[0] is not None:
                    automatic = torch.get_num_threads()
                    try:
                        policy["thread_trial"] = self._choose_threads(pending[0])
                        self._trial_threads = policy["thread_trial"]["threads"]
                    except RuntimeError as exc:  # the run's own first step meets it and says what to change
                        if not out_of_memory(exc):
                            raise
                        self.optimizer.zero_grad(set_to_none=True)
                        torch.set_num_threads(automatic)
                        policy["thread_trial"] = {"threads": automatic, "skipped": "out of memory"}
            policy["threads"] = torch.get_num_threads()
        yield Start(device=str(self.device), precision=self.precision, parameters=int(n_params),
                    total_steps=int(total), step=self.state.step, resumed_from=self.resumed_from,
                    torch_threads=torch.get_num_threads(), cpu_policy=policy,
                    layers=[n for n, _, _ in model.recurrent_layers()],
                    tbptt=t.tbptt, log_every=t.log_every, probe_every=t.probe_every, probe_budget=self.probe_budget)
        status, message = "finished", ""
        started, paused_before = time.perf_counter(), self.control.paused_s
        self._clock_start = self.clock()
        self._probe_time = 0.0
        last_loss = float("nan")
        try:
            while self.state.step < total:
                self.control.wait_if_paused()
                if self.control.stopped:
                    status = "stopped"
                    break
                work = pending.pop() if pending else self._next_work()
                if work is None:  # the last epoch is done
                    break
                if t.probe_every and self.state.last_probe_step < 0:
                    # the first probe sees the weights before any update: the profile at init
                    yield self._probe(work)
                    yield from self._dynamics(work)
                record = self._train_step(work, total)
                yield record
                if isinstance(record, NonFinite):
                    if record.action == "stopped":
                        status, message = "failed", record.message
                        break
                    continue
                last_loss = record.loss
                step = self.state.step
                if self._probe_due(step):
                    yield self._probe(work)
                    yield from self._dynamics(work)
                if t.eval_every and step % t.eval_every == 0 and step < total:
                    yield self._eval()
                if t.checkpoint_every and step % t.checkpoint_every == 0 and self.run_dir is not None:
                    yield self._checkpoint()
        except RuntimeError as exc:
            if not out_of_memory(exc):
                raise
            self.optimizer.zero_grad(set_to_none=True)
            self.model.probe = None
            self._restore_if_non_finite()
            status = "failed"
            message = (f"out of memory on {self.device} at step {self.state.step + 1}: "
                       f"try a smaller train.batch_size or a shorter sequence (or train.tbptt)")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        final: Eval | None = None
        if self.state.step > 0:
            try:
                final = self._eval(whole=True)  # the run's result: every validation example
            except RuntimeError as exc:  # out of memory: the run's outcome is kept, only its last evaluation lost
                if not out_of_memory(exc):
                    raise
                message = (message + "; " if message else "") + "the final evaluation ran out of memory"
        if final is not None:
            yield final
        if self.run_dir is not None and self.state.step > 0:
            yield self._checkpoint(final=True)
        elapsed = time.perf_counter() - started - (self.control.paused_s - paused_before)
        yield End(step=self.state.step, status=status, message=message, time_s=elapsed, last_loss=last_loss,
                  epoch=self.state.epoch, metrics=dict(final.metrics) if final is not None else {},
                  eval_examples=self.eval_examples if final is not None else 0, **self._path_summary())

    def _thread_trial_due(self) -> bool:
        """Whether to choose the CPU thread count by timing (cpu_policy.choose_threads):
        on the CPU, with train.num_threads automatic (0) and torch's count above one, in a
        single process (torchrun ranks keep theirs), unless WORKBENCH_THREAD_TRIAL=off."""
        return (self.device.type == "cpu" and not self.train.num_threads and torch.get_num_threads() > 1
                and not distributed.is_distributed()
                and os.environ.get(cpu_policy.ENV_THREAD_TRIAL, "").strip().lower() != "off")

    def _choose_threads(self, work: _Work) -> dict:
        """Time the first step's forward and backward with torch's automatic thread count
        and with one thread; keep the faster. Outside the run: the dropout masks come from
        a forked RNG, the gradients are dropped, and no optimizer step is made, so the
        run's losses are those of a run given the chosen count (a test checks it)."""
        def run_step(threads: int) -> None:
            torch.set_num_threads(threads)
            with torch.random.fork_rng(devices=[]):
                self._reduce_step(work.loss, instrument=False)
            self.optimizer.zero_grad(set_to_none=True)

        choice = cpu_policy.choose_threads([torch.get_num_threads(), 1], run_step)
        torch.set_num_threads(choice["threads"])
        return choice

    def _path_summary(self) -> dict:
        """For the end record: how the untapped steps ran (fused_stacks, untapped_graphs;
        None while still being timed), how many steps were replayed from CUDA graphs, and
        why graphs were turned off, if they were."""
        decided = self._path_tuner is None or self._path_tuner.choice is not None
        fused, graphed = self._untapped_path
        out = {"fused_stacks": fused if decided else None, "untapped_graphs": graphed if decided else None,
               "graph_replays": self._graphs.replays if self._graphs is not None else 0}
        if self._graphs is not None:
            out["graphs"] = len(self._graphs.graphs)
            if self._graphs.off_reason:
                out["graphs_off"] = self._graphs.off_reason
        if self._probe_fallback:
            out["probe_unrolled"] = self._probe_fallback
        if getattr(self, "_dynamics_off", ""):
            out["dynamics_off"] = self._dynamics_off
        return out

    def _probe_due(self, step: int) -> bool:
        every = self.train.probe_every
        if not every:
            return False
        if step // every == self.state.last_probe_step // every:
            return False  # at multiples of probe_every (or the first step after, when postponed)
        if self.probe_budget is None:
            return True
        return self._probe_time <= self.probe_budget * (self.clock() - self._clock_start)

    # ------------------------------------------------------------------ data -> work
    def _next_work(self) -> _Work | None:
        """The next optimizer step's data (a batch, or a TBPTT chunk of one); None when
        the last epoch is over."""
        t = self.train
        if self._batch is None:
            batch = self._draw_batch()
            if batch is None:
                return None
            self._batch, self._chunk, self._carry = batch, 0, None
        batch = self._batch
        T = batch.x.shape[1]
        if not t.tbptt or T <= t.tbptt:
            self._batch = None
            return self._whole_batch(batch)
        if self.preset.model.topology == "many_to_one":
            self._batch = None
            return self._many_to_one_chunks(batch)
        return self._many_to_many_chunk(batch)

    def _draw_batch(self) -> Batch | None:
        """The next training batch; None once train.epochs passes are done. A pass ends
        when the task's iterator does or after epoch_size() batches, whichever is first."""
        t = self.train
        if t.epochs and self.state.epoch >= t.epochs:
            return None
        batch = self.cursor.next()
        if batch is None:  # the iterator ran out: the pass is over
            if self.cursor.position == 0:
                raise TrainingError(f"task {self.task.name!r} gave no training batches")
            self.state.epoch += 1
            self.cursor.start()
            return self._draw_batch()
        # where this batch came from, so that a checkpoint inside its TBPTT chunks can draw it again
        self._batch_origin = (self.cursor.anchor, self.cursor.position)
        self._batch_epoch = self.state.epoch
        size = self.task.epoch_size(t.batch_size)
        if size and self.cursor.position >= size:
            self.state.epoch += 1
            self.cursor.start()
        return batch

    def _batch_loss(self, batch: Batch, unrolled: bool = False) -> Callable[[], torch.Tensor]:
        """The loss of the whole (device) batch, as a function to call."""
        model, task = self.model, self.task
        return lambda: task.loss(model(batch.x, batch.y_in, batch.lengths, unrolled=unrolled), batch)

    def _whole_batch(self, cpu_batch: Batch) -> _Work:
        units = cpu_batch.units()  # on the host copy: no device sync
        batch = cpu_batch.to(self.device)
        return _Work(self._batch_loss(batch), self._batch_loss(batch, unrolled=True), units, batch)

    def _many_to_many_chunk(self, cpu_batch: Batch) -> _Work:
        """The next TBPTT chunk of a many-to-many batch: one optimizer step."""
        k, n = self._chunk, self.train.tbptt
        T = cpu_batch.x.shape[1]
        s, e = k * n, min((k + 1) * n, T)
        lengths = None if cpu_batch.lengths is None else (cpu_batch.lengths - s).clamp(0, e - s)
        piece = Batch(x=cpu_batch.x[:, s:e], y=cpu_batch.y[:, s:e], lengths=lengths,
                      y_in=_slice_time(cpu_batch.y_in, s, e), mask=_slice_time(cpu_batch.mask, s, e))
        units = piece.units()
        chunk = piece.to(self.device)
        initial = self._carry
        model, task = self.model, self.task
        self._chunk = k + 1
        if e >= T:
            self._batch, self._chunk = None, 0

        def loss(unrolled: bool = False) -> torch.Tensor:
            output, finals = model(chunk.x, None, chunk.lengths, unrolled=unrolled,
                                   initial_states=initial, return_states=True)
            if not unrolled and self._batch is not None:
                self._carry = _detach_states(finals)
            return task.loss(output, chunk)

        return _Work(loss, lambda: loss(True), units)

    def _many_to_one_chunks(self, cpu_batch: Batch) -> _Work:
        """A many-to-one batch in TBPTT chunks: one optimizer step; each row's prediction
        comes from the chunk holding its last step, and its gradient stays in that chunk."""
        n = self.train.tbptt
        B, T = cpu_batch.x.shape[:2]
        ends = (cpu_batch.lengths.long() - 1).clamp(0, T - 1) if cpu_batch.lengths is not None \
            else torch.full((B,), T - 1, dtype=torch.long)
        end_chunk = ends // n  # [B] (host)
        chunks = [(s, min(s + n, T)) for s in range(0, T, n)]
        needed = set(end_chunk.tolist())
        last_needed = max(needed)
        units = cpu_batch.units()
        batch = cpu_batch.to(self.device)
        end_chunk_dev = end_chunk.to(self.device)
        model, task = self.model, self.task
        memo: dict = {"outputs": [], "states": []}

        def run_chunk(k: int, state, unrolled: bool):
            s, e = chunks[k]
            lengths = (ends - s + 1).clamp(1, e - s).to(self.device)  # rows ending here: their last step
            return model(batch.x[:, s:e], None, lengths, unrolled=unrolled, initial_states=state, return_states=True)

        def loss(unrolled: bool = False) -> torch.Tensor:
            if unrolled:
                # the probe reruns the last chunk only, from the state training carried into it
                if len(memo["states"]) <= last_needed:  # probing before training on it (step 0)
                    with torch.no_grad():
                        loss(False)
                first, state, preds = last_needed, memo["states"][last_needed], list(memo["outputs"][:last_needed])
            else:
                first, state, preds = 0, None, []
                memo["outputs"], memo["states"] = [], []
            for k in range(first, last_needed + 1):
                if not unrolled:
                    memo["states"].append(state)
                with torch.enable_grad() if k in needed and torch.is_grad_enabled() else torch.no_grad():
                    out_k, finals = run_chunk(k, state, unrolled)
                if not unrolled:
                    memo["outputs"].append(out_k.detach())
                state = _detach_states(finals)
                preds.append(out_k)
            pred = preds[0]
            for k in range(1, len(preds)):
                here = (end_chunk_dev == k).view(B, *([1] * (pred.dim() - 1)))
                pred = torch.where(here, preds[k], pred)
            return task.loss(pred, batch)

        return _Work(loss, lambda: loss(True), units)

    # ------------------------------------------------------------------ one step
    def _train_step(self, work: _Work, total: int) -> Step | NonFinite:
        t = self.train
        model, opt = self.model, self.optimizer
        step = self.state.step  # 0-based index of this optimizer step
        lr = t.lr * lr_factor(t, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        instrument = (step + 1) % t.log_every == 0
        if not model.training:  # (a walk over every module: only after an evaluation)
            model.train()
        model.tap_inputs = instrument
        tuning = self._path_tuner is not None and not instrument and self._path_tuner.choice is None
        use_graphs = self._graphs is not None  # tapped steps: graphed where graphs are on
        if not instrument:
            fused, use_graphs = self._path_tuner.next_path() if tuning else self._untapped_path
            if model.fused_state() != tuple(fused and s for s in self._fusable):
                model.set_fused_stacks(fused)
        t0 = time.perf_counter()
        packed, (tap_sizes, param_keys) = self._device_step(work, instrument, use_graphs)
        host = packed.cpu().numpy()  # the step's one synchronisation
        if tuning:  # forward + backward are done by now: time this path
            choice = self._path_tuner.timed(time.perf_counter() - t0)
            if choice is not None:
                self._untapped_path = choice
        model.tap_inputs = False
        model.probe = None
        loss_value, norm_value, clipped_value = (float(v) for v in host[:3])
        if not math.isfinite(loss_value):
            return self._non_finite(step, "loss", f"the loss is {loss_value}")
        scaler_skipped = False
        if not math.isfinite(norm_value):
            if self.scaler is None:
                return self._non_finite(step, "gradients", f"the gradient norm is {norm_value}")
            scaler_skipped = True  # fp16 overflow: the scaler skips this step and lowers its scale
        with torch.no_grad():
            torch._foreach_copy_(self._snapshot, self._param_data)
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        self.state.step += 1
        self._updated, self._last_update_step = True, self.state.step
        dt = time.perf_counter() - t0
        record = Step(step=self.state.step, loss=loss_value, lr=lr, time_s=dt,
                      units_per_s=work.units / dt if dt > 0 else 0.0, grad_norm=norm_value,
                      grad_norm_clipped=clipped_value, clipped=bool(clipped_value < norm_value),
                      epoch=self._batch_epoch, scaler_skipped=scaler_skipped)
        if instrument:
            at = 3
            tap_arrays = {}
            for name, size in tap_sizes:
                tap_arrays[name] = host[at:at + size]
                at += size
            record.timestep_grad_norms = tap_arrays
            record.param_grad_norms = unpack_param_norms(param_keys, host[at:at + len(param_keys)])
        return record

    def _device_step(self, work: _Work, instrument: bool, use_graphs: bool) -> tuple[torch.Tensor, tuple]:
        """The step's device work up to (not including) the optimizer update, replayed
        from a CUDA graph where there is one (workbench/engine/graphs.py)."""
        graphs = self._graphs
        if use_graphs and graphs is not None and work.batch is not None:
            # (a tapped forward runs layer by layer whatever the fused flag says)
            fused = () if instrument else self.model.fused_state()
            key = (batch_signature(work.batch), instrument, fused, self.amp_dtype)
            entry = graphs.lookup(key)
            if entry is None and graphs.capture_due(key):
                entry = graphs.capture(key, work.batch, lambda b: self._reduce_step(
                    self._batch_loss(b), instrument, graph_safe=True))
            if entry is not None:
                return graphs.replay(entry, work.batch)
        self.optimizer.zero_grad(set_to_none=True)
        return self._reduce_step(work.loss, instrument)

    def _reduce_step(self, loss_fn: Callable[[], torch.Tensor], instrument: bool,
                     graph_safe: bool = False) -> tuple[torch.Tensor, tuple]:
        """Forward, backward, clipping and the instrumentation's reductions, all on the
        device and without reading anything back. Returns (packed [K]: loss, norm before
        and after clipping, then each layer's [T] tap profile and the parameter-group
        norms; (tap (layer, length) list, parameter-group keys))."""
        with self._autocast(cache=not graph_safe):  # (a graph must not keep autocast's cast cache)
            loss = loss_fn()
        hooks = TapNormHooks(self.model) if instrument else None
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()
        loss = distributed.average_gradients(self.params, loss)  # distributed: mean over ranks
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm, clipped_norm = self._clip()
        # Everything this step reports, reduced on the device, goes to the host at once.
        pieces = [loss.detach().reshape(1), grad_norm.reshape(1), clipped_norm.reshape(1)]
        tap_sizes, param_keys = [], []
        self.model.probe = None  # the taps, done with: nothing may keep this step's graph alive
        if instrument:
            taps = hooks.tensors()
            tap_sizes = [(name, norms.numel()) for name, norms in taps]
            pieces += [norms for _name, norms in taps]
            param_keys, param_norms = self._param_norms()
            if param_norms is not None:
                pieces.append(param_norms)
        dtype = torch.float64 if any(p.dtype == torch.float64 for p in pieces) else torch.float32
        return torch.cat([p.to(dtype) for p in pieces]), (tap_sizes, param_keys)

    def _clip(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip the gradients as train.clip says; (norm before, norm after) on the device."""
        t = self.train
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            zero = torch.zeros((), device=self.device)
            return zero, zero
        total = _total_norm(grads)
        if t.clip == "norm":
            # what clip_grad_norm_ does, without its second norm computation
            scale = torch.clamp(t.clip_value / (total + 1e-6), max=1.0)
            torch._foreach_mul_(grads, scale.to(grads[0].dtype))
            return total, total * scale
        if t.clip == "value":
            torch._foreach_clamp_min_(grads, -t.clip_value)
            torch._foreach_clamp_max_(grads, t.clip_value)
            return total, _total_norm(grads)
        return total, total

    def _non_finite(self, step: int, what: str, detail: str) -> NonFinite:
        """The loss or a gradient of step ``step`` (0-based) is NaN/Inf: no update.

        A non-finite loss puts back the weights from before the last update (the last
        weights whose loss was finite): a blown-up update is the usual cause, and if the
        batch was to blame, one update is all it costs. Non-finite gradients with a
        finite loss leave the weights as they are (they gave a finite loss)."""
        self.optimizer.zero_grad(set_to_none=True)
        self._batch, self._carry = None, None  # a TBPTT carry from a non-finite forward is useless
        if self.scaler is not None:
            self.scaler.update()  # closes this step's unscale_ (and lowers the scale)
        restored = self._roll_back() if what == "loss" else self._restore_if_non_finite()
        action = "stopped" if self.train.on_non_finite == "stop" else "skipped"
        if restored:
            detail += (f"; the weights were rolled back to those before the update of step "
                       f"{self._last_update_step}")
        message = (f"step {step + 1}: {detail}; the step was {action} and the last good weights kept"
                   + ("; try a lower train.lr or gradient clipping (train.clip)" if action == "stopped" else ""))
        if action == "skipped":
            self.state.step += 1  # a skipped step still counts toward the budget, so a run always ends
        return NonFinite(step=step + 1, what=what, action=action, restored=restored, message=message)

    def _roll_back(self) -> bool:
        """Put back the weights from before the last optimizer update, if one was made
        since the last roll-back. Returns whether the weights changed."""
        if not self._updated:
            return False
        with torch.no_grad():
            torch._foreach_copy_(self._param_data, self._snapshot)
        self._updated = False
        return True

    def _restore_if_non_finite(self) -> bool:
        """Roll back only if the weights are not all finite (an update blew them up)."""
        with torch.no_grad():
            norms = torch._foreach_norm(self._param_data)
            if bool(torch.isfinite(torch.stack(norms)).all()):
                return False
        return self._roll_back()

    # ------------------------------------------------------------------ probe / eval / checkpoint
    def _probe(self, work: _Work) -> Probe:
        """The exact dL/dh_t on the step's data at the updated weights. Forked RNG: the
        probe's dropout masks must not change the training run."""
        t0, c0 = time.perf_counter(), self.clock()
        self.model.train()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        # what the probe's forward fed each layer, for the Dynamics record that follows
        self._probe_inputs = {} if self.dynamics else None
        try:
            with torch.random.fork_rng(devices=devices):
                norms = to_host(exact_hidden_grad_norm_tensors(self.model, work.probe_loss, self._probe_inputs))
        except RuntimeError as exc:
            stacks = [stack for _name, stack in self.model.named_stacks() if stack.kernel_probe is not False]
            if out_of_memory(exc) or not stacks:
                raise
            # The kernel route refused (a backend without it, say): the step-by-step
            # replica gives the same numbers, slower; said in the end record.
            self._probe_fallback = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for stack in stacks:
                stack.kernel_probe = False
            with torch.random.fork_rng(devices=devices):
                norms = to_host(exact_hidden_grad_norm_tensors(self.model, work.probe_loss, self._probe_inputs))
        dt = time.perf_counter() - t0
        self._probe_time += self.clock() - c0
        self.state.last_probe_step = self.state.step
        return Probe(step=self.state.step, hidden_grad_norms=norms, time_s=dt)

    def _dynamics(self, work: _Work) -> Iterator[Dynamics]:
        """The recurrence's dynamics (engine/dynamics.py) on the probe's batch at the same
        weights, from the layer inputs the probe's forward recorded; its time counts as
        probe time. An instrument never ends a run: if it fails (a cell whose step has no
        double backward, say), it is off for the rest of the run and the end record
        says why."""
        inputs, self._probe_inputs = getattr(self, "_probe_inputs", None), None
        if not self.dynamics:
            return
        from workbench.engine.dynamics import model_dynamics

        t0, c0 = time.perf_counter(), self.clock()
        self.model.train()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):  # (only a forward of its own draws dropout masks)
                fields = model_dynamics(self.model, work.probe_loss, seed=self.train.seed, inputs=inputs or None,
                                        labels=_row_classes(work.batch))
        except Exception as exc:  # noqa: BLE001 - an instrument's defect is reported in End, never ends the run
            if out_of_memory(exc):
                raise
            self.dynamics = False
            self._dynamics_off = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return
        finally:
            self._probe_time += self.clock() - c0
        yield Dynamics(step=self.state.step, time_s=time.perf_counter() - t0, **fields)

    @torch.no_grad()
    def evaluate(self, whole: bool = False) -> dict:
        """Validation metrics, averaged per example over the first train.eval_batches
        batches (the quick sample evaluations during training take) or, ``whole``, over
        the whole validation set, as `workbench eval` reads it. self.eval_examples: how
        many examples were read (not a metric, so not in the dict)."""
        model, task, t = self.model, self.task, self.train
        model.eval()
        sums: dict[str, list[float]] = {}
        loss_sum, n = 0.0, 0
        for batch in task.val_batches(t.batch_size, WHOLE_SET if whole else t.eval_batches):
            batch = batch.to(self.device)
            with self._autocast():
                output = model(batch.x, batch.y_in, batch.lengths)
                loss = task.loss(output, batch)
            loss_sum += float(loss) * batch.size
            n += batch.size
            for name, (s, c) in task.metric_sums(output, batch).items():
                acc = sums.setdefault(name, [0.0, 0.0])
                acc[0] += s
                acc[1] += c
        model.train()
        self.eval_examples = n
        metrics = {"val_loss": loss_sum / n if n else float("nan")}
        metrics.update({name: s / c if c else float("nan") for name, (s, c) in sums.items()})
        metrics.update(task.derived_metrics(metrics))  # e.g. perplexity from nats per char
        return metrics

    def _eval(self, whole: bool = False) -> Eval:
        metrics = self.evaluate(whole)
        self.state.last_eval = metrics
        val = metrics.get("val_loss")
        if val is not None and math.isfinite(val) and (self.state.best_val is None or val < self.state.best_val):
            self.state.best_val = val
        return Eval(step=self.state.step, metrics=metrics)

    def _trainer_state(self) -> dict:
        extra = {"epoch": self.state.epoch, "last_probe_step": self.state.last_probe_step,
                 "data_anchor": self.cursor.anchor if self.cursor.anchor is not None else self.generator.get_state(),
                 "data_position": self.cursor.position, "chunk": self._chunk if self._batch is not None else 0}
        if self._trial_threads:
            extra["trial_threads"] = self._trial_threads
        if self._batch is not None:
            extra["batch_anchor"], extra["batch_position"] = self._batch_origin
            extra["batch_epoch"] = self._batch_epoch
        if self._batch is not None and self._carry is not None:
            extra["carry"] = [tuple(x.detach().cpu() for x in s) if isinstance(s, tuple) else s.detach().cpu()
                              for s in self._carry]
        return extra

    def _checkpoint(self, final: bool = False) -> Checkpoint:
        path = ckpt.save_checkpoint(self.run_dir, self.state.step, self.model, self.optimizer, self.scaler,
                                    self.preset, generator=self.generator, final=final, extra=self._trainer_state())
        return Checkpoint(step=self.state.step, path=str(path), final=final)


def _total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of a list of tensors, as a float32 0-d tensor on their device."""
    norms = torch._foreach_norm(tensors)
    return torch.linalg.vector_norm(torch.stack(norms).float())  # (stack promotes mixed dtypes)


def default_cpu_threads(leave_free: int = 0) -> int:
    return max(1, (os.cpu_count() or 1) - leave_free)
