"""The trainer: a generator of plain records (floats, numpy arrays, dicts, strings).

It knows nothing of the task beyond workbench.tasks.base.Task, nothing of Qt and nothing
of the terminal: the CLI, the GUI's worker thread and the tests all consume the same
stream. Between steps it honours a TrainControl (pause / resume / stop), so a stop
takes effect within one step.

Record kinds (``record["kind"]``):
  start       device, parameters, model_io summary, resumed_from
  step        step, loss, lr, time_s, units_per_s, grad_norm, grad_norm_clipped, clipped,
              [timestep_grad_norms {layer: [T]}, param_grad_norms {layer: {...}}] every log_every
  probe       step, hidden_grad_norms {layer: [T]}  (exact dL/dh_t, every probe_every)
  eval        step, val_loss and the task's metrics
  non_finite  step, what ("loss" / "gradients"), action ("skipped" / "stopped")
  checkpoint  step, path
  end         step, status ("finished" / "stopped" / "failed"), final metrics, message
"""
from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from workbench.engine import checkpoint as ckpt
from workbench.engine.model import RecurrentModel, build_model
from workbench.engine.probe import exact_hidden_grad_norms, param_grad_norms, tap_grad_norms
from workbench.spec import Preset, TrainSpec
from workbench.tasks import make_task
from workbench.tasks.base import Batch, Task


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. out of memory); the message says what to change."""


class TrainControl:
    """Thread-safe pause / stop flags, set by a UI and polled by the trainer between steps."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

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
        while not self._running.wait(poll_s):
            pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but no CUDA GPU is available here; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainingError("train.device is 'mps' but Apple's Metal backend is not available here; use 'auto' or 'cpu'")
    return torch.device(name)


def make_optimizer(params, train: TrainSpec) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    if train.optimizer == "adam":
        return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    return torch.optim.RMSprop(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)


def lr_factor(train: TrainSpec, step: int, total: int) -> float:
    """Multiplier on train.lr at optimizer step ``step`` (0-based): warm-up, then schedule."""
    if train.warmup_steps and step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.schedule == "cosine":
        span = max(total - train.warmup_steps, 1)
        progress = min(max(step - train.warmup_steps, 0) / span, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if train.schedule == "step":
        return train.gamma ** (max(step - train.warmup_steps, 0) // train.step_size)
    return 1.0


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    best_val: float | None = None
    last_eval: dict = field(default_factory=dict)


class Trainer:
    """Train ``preset``'s model on its task. Iterate ``run()`` for the records."""

    def __init__(self, preset: Preset, run_dir: str | Path | None = None, control: TrainControl | None = None,
                 task: Task | None = None, resume: bool = False,
                 callbacks: tuple[Callable[[dict], None], ...] = ()):
        self.preset = preset
        self.train = preset.train
        self.run_dir = Path(run_dir) if run_dir else None
        self.control = control or TrainControl()
        self.callbacks = callbacks
        self.resume = resume
        self.task = task or make_task(preset)
        self.state = TrainerState()
        self.model: RecurrentModel | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.device: torch.device | None = None
        # The last weights whose loss and gradients were finite (kept on the host).
        self._last_good: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        t = self.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.generator = seed_everything(t.seed)
        self.device = resolve_device(t.device)
        self.model = build_model(self.preset.model, self.task.model_io()).to(self.device)
        self.optimizer = make_optimizer(self.model.parameters(), t)
        amp_on = self.device.type == "cuda" and t.precision != "fp32"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t.precision) if amp_on else None
        self.scaler = torch.amp.GradScaler("cuda") if amp_on and t.precision == "fp16" else None
        self.resumed_from = None
        if self.resume and self.run_dir is not None:
            found = ckpt.latest_checkpoint(self.run_dir)
            if found is not None:
                self.state.step = ckpt.load_checkpoint(found, self.model, self.optimizer, self.scaler,
                                                       generator=self.generator)
                self.resumed_from = str(found)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _emit(self, record: dict) -> dict:
        for cb in self.callbacks:
            cb(record)
        return record

    # ------------------------------------------------------------------ the loop
    def run(self) -> Iterator[dict]:
        self._setup()
        t = self.train
        model, task = self.model, self.task
        total = t.steps
        epoch_batches = task.epoch_size(t.batch_size)
        if t.epochs and epoch_batches:
            total = min(total, t.epochs * epoch_batches)
        n_params = sum(p.numel() for p in model.parameters())
        yield self._emit({"kind": "start", "device": str(self.device), "parameters": int(n_params),
                          "total_steps": int(total), "step": self.state.step, "resumed_from": self.resumed_from,
                          "torch_threads": torch.get_num_threads(), "layers": [n for n, _, _ in model.recurrent_layers()]})
        batches = task.train_batches(t.batch_size, self.generator)
        status, message = "finished", ""
        started = time.perf_counter()
        last_loss = float("nan")
        try:
            while self.state.step < total:
                self.control.wait_if_paused()
                if self.control.stopped:
                    status = "stopped"
                    break
                try:
                    batch = next(batches)
                except StopIteration:
                    self.state.epoch += 1
                    batches = task.train_batches(t.batch_size, self.generator)
                    batch = next(batches)
                step_record = self._train_step(batch.to(self.device), total)
                yield self._emit(step_record)
                if step_record["kind"] == "non_finite":
                    if step_record["action"] == "stopped":
                        status, message = "failed", step_record["message"]
                        break
                    continue
                last_loss = step_record["loss"]
                step = self.state.step
                if t.probe_every and (step % t.probe_every == 0 or step == 1):
                    yield self._emit(self._probe(batch.to(self.device)))
                if t.eval_every and step % t.eval_every == 0 and step < total:
                    yield self._emit(self._eval())
                if t.checkpoint_every and step % t.checkpoint_every == 0 and self.run_dir is not None:
                    yield self._emit(self._checkpoint())
        except torch.OutOfMemoryError:
            self._restore_last_good()
            status = "failed"
            message = (f"out of memory on {self.device} at step {self.state.step + 1}: "
                       f"try a smaller train.batch_size or a shorter sequence")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        final = {}
        if status != "failed" or self.state.step > 0:
            final = self._eval() if self.state.step > 0 else {}
            if final:
                yield self._emit(final)
        if self.run_dir is not None and self.state.step > 0:
            yield self._emit(self._checkpoint(final=True))
        elapsed = time.perf_counter() - started
        yield self._emit({"kind": "end", "step": self.state.step, "status": status, "message": message,
                          "time_s": elapsed, "last_loss": last_loss,
                          "metrics": {k: v for k, v in final.items() if k not in ("kind", "step")}})

    def _forward_loss(self, batch: Batch) -> torch.Tensor:
        with self._autocast():
            output = self.model(batch.x, batch.y_in, batch.lengths)
            return self.task.loss(output, batch)

    def _train_step(self, batch: Batch, total: int) -> dict:
        t = self.train
        model, opt = self.model, self.optimizer
        step = self.state.step  # 0-based index of this optimizer step
        lr = t.lr * lr_factor(t, step, total)
        for group in opt.param_groups:
            group["lr"] = lr
        instrument = (step + 1) % t.log_every == 0
        model.train()
        model.tap_inputs = instrument
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = self._forward_loss(batch)
        if instrument and model.probe is not None:
            for tap in model.probe.taps:
                if tap.requires_grad:
                    tap.retain_grad()
        loss_value = float(loss.detach())  # one sync per step: the loss is shown anyway
        if not math.isfinite(loss_value):
            return self._non_finite(step, "loss", f"the loss is {loss_value}")
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(opt)
        else:
            loss.backward()
        params = [p for p in model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, float("inf")) if params else torch.zeros(())
        grad_norm_value = float(grad_norm)
        if not math.isfinite(grad_norm_value) and self.scaler is None:
            return self._non_finite(step, "gradients", f"the gradient norm is {grad_norm_value}")
        clipped_norm = grad_norm_value
        if t.clip == "norm" and math.isfinite(grad_norm_value) and grad_norm_value > t.clip_value:
            scale = t.clip_value / (grad_norm_value + 1e-6)
            for p in params:
                p.grad.mul_(scale)
            clipped_norm = grad_norm_value * scale
        elif t.clip == "value":
            torch.nn.utils.clip_grad_value_(params, t.clip_value)
            clipped_norm = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))
        record: dict = {}
        if instrument:
            record["timestep_grad_norms"] = tap_grad_norms(model)
            record["param_grad_norms"] = param_grad_norms(model)
        model.tap_inputs = False
        model.probe = None
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        self.state.step += 1
        if self._last_good is None or self.state.step % 50 == 0:
            self._remember_good()
        dt = time.perf_counter() - t0
        units = batch.units()
        record.update({"kind": "step", "step": self.state.step, "loss": loss_value, "lr": lr, "time_s": dt,
                       "units_per_s": units / dt if dt > 0 else 0.0, "grad_norm": grad_norm_value,
                       "grad_norm_clipped": clipped_norm, "clipped": clipped_norm < grad_norm_value,
                       "epoch": self.state.epoch})
        return record

    def _non_finite(self, step: int, what: str, detail: str) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        self.model.tap_inputs = False
        self.model.probe = None
        self._restore_last_good()
        action = "stopped" if self.train.on_non_finite == "stop" else "skipped"
        message = (f"step {step + 1}: {detail}; the step was {action} and the last good weights kept"
                   + ("; try a lower train.lr or gradient clipping (train.clip)" if action == "stopped" else ""))
        if action == "skipped":
            self.state.step += 1  # a skipped step still counts toward the budget, so a run always ends
        return {"kind": "non_finite", "step": step + 1, "what": what, "action": action, "message": message}

    def _remember_good(self) -> None:
        self._last_good = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def _restore_last_good(self) -> None:
        """Bring back the last weights known finite (a NaN step may have corrupted them)."""
        if self._last_good is None:
            return
        current_ok = all(torch.isfinite(p).all() for p in self.model.parameters())
        if not current_ok:
            self.model.load_state_dict(self._last_good)

    def _probe(self, batch: Batch) -> dict:
        self.model.train()
        with self._autocast():
            norms = exact_hidden_grad_norms(self.model, self.task.loss, batch)
        return {"kind": "probe", "step": self.state.step, "hidden_grad_norms": norms}

    @torch.no_grad()
    def evaluate(self) -> dict:
        model, task, t = self.model, self.task, self.train
        model.eval()
        sums: dict[str, list[float]] = {}
        loss_sum, n = 0.0, 0
        for batch in task.val_batches(t.batch_size, t.eval_batches):
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
        metrics = {"val_loss": loss_sum / n if n else float("nan")}
        metrics.update({name: s / c if c else float("nan") for name, (s, c) in sums.items()})
        return metrics

    def _eval(self) -> dict:
        metrics = self.evaluate()
        self.state.last_eval = metrics
        return {"kind": "eval", "step": self.state.step, **metrics}

    def _checkpoint(self, final: bool = False) -> dict:
        path = ckpt.save_checkpoint(self.run_dir, self.state.step, self.model, self.optimizer, self.scaler,
                                    self.preset, generator=self.generator, final=final)
        return {"kind": "checkpoint", "step": self.state.step, "path": str(path), "final": final}


def default_cpu_threads(leave_free: int = 0) -> int:
    return max(1, (os.cpu_count() or 1) - leave_free)
