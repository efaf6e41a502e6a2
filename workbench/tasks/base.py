"""The common interface of every task: data, shapes, loss, metrics.

The trainer knows nothing of tasks beyond this interface. A task owns its data (built-in
generated data, or a user's file when ``data.path`` is set), tells the model builder the
shapes (ModelIO), and turns model outputs into a loss and metrics. Padding never counts:
masks select what counts in the loss and in every metric.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from workbench.spec import ModelIO, ModelSpec, SpecError, _from_raw


@dataclass
class Batch:
    """One batch, already padded. Shapes by topology (B = batch, T/S = lengths):

    x:       [B, T] token ids, [B, T, F] features, [B, T, C, H, W] frames; one_to_many: one item per row;
             with the 'embedding_chars' input [B, T, 1 + C] long: x[..., 0] the word id, x[..., 1:]
             the word's character ids (0 = padding, for characters and for padded words)
    y:       targets: [B] / [B, F] (many_to_one), [B, T] / [B, T, F] (per step)
    lengths: [B] true input lengths when x is padded, else None
    y_in:    [B, T] decoder inputs (BOS + targets shifted right) for generating topologies
    mask:    [B, T] bool, True where y counts (per-step targets only), else None
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None
    y_in: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        moved = {f.name: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                 for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}
        return Batch(**moved)

    @property
    def size(self) -> int:
        return int(self.x.shape[0])

    def units(self) -> int:
        """Tokens (or samples) this batch trains on, for throughput."""
        if self.mask is not None:
            return int(self.mask.sum())
        if self.lengths is not None:
            return int(self.lengths.sum())
        if self.x.dim() >= 2 and self.x.dtype in (torch.long, torch.int32):
            return int(self.x.numel())
        return int(self.x.shape[0] * (self.x.shape[1] if self.x.dim() >= 3 else 1))


class Task:
    """Base class. Subclasses set ``name``, ``Options`` and ``topologies``."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    topologies: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = type(None)
    # Text options that take one of a few values (option -> the values): the task's own
    # check and the window's combo box both read it.
    option_choices: ClassVar[dict[str, tuple[str, ...]]] = {}
    # The metric a user judges this task by, and whether smaller is better.
    main_metric: ClassVar[str] = "loss"
    lower_is_better: ClassVar[bool] = True
    # Whether a per-step task's targets line up with its input steps (y[:, t] belongs to
    # x[:, t]); False for CTC, whose targets are a label string per row. Truncated BPTT
    # cuts x and y at the same steps, so it needs aligned targets.
    step_aligned: ClassVar[bool] = True

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        """Validate options only; cheap. Data is read by prepare()."""
        self.options = parse_options(self.Options, options)
        self.path = path
        self.seed = seed
        self.prepared = False

    # -- life cycle ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Read or generate the data, build vocabularies and statistics. Raise
        workbench.io.errors.DataError naming the file and line for bad data."""

    def ensure_prepared(self) -> Task:
        if not self.prepared:
            self.prepare()
            self.prepared = True
        return self

    def artifacts(self) -> dict:
        """What inference needs without the data (vocabularies, normalisation statistics),
        as plain JSON. Written to RUN_DIR/task.json after prepare()."""
        return {}

    def restore(self, artifacts: dict) -> None:
        """Instead of prepare(): take back artifacts() so the task can encode inputs and
        decode outputs for a trained model, without reading the training data."""
        self.prepared = True

    # -- shapes --------------------------------------------------------------------------
    def model_io(self) -> ModelIO:
        raise NotImplementedError

    def check_model(self, model: ModelSpec) -> None:
        """Raise SpecError naming the field when the model cannot fit this task."""
        if self.topologies and model.topology not in self.topologies:
            allowed = ", ".join(self.topologies)
            raise SpecError("model.topology", f"task {self.name!r} needs one of: {allowed} (got {model.topology})")

    # -- data ----------------------------------------------------------------------------
    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """An endless (or one-epoch, see ``epoch_size``) stream of training batches."""
        raise NotImplementedError

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        """The same validation batches every call."""
        raise NotImplementedError

    def epoch_size(self, batch_size: int) -> int | None:
        """Batches per pass over the training data; None for endless generated data."""
        return None

    # -- loss and metrics ----------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        """name -> (sum, count) over this batch; the trainer adds them up and divides."""
        return {}

    def baseline(self) -> dict[str, float]:
        """What a trivial predictor scores, so a user sees whether the model learned."""
        return {}

    # -- evaluation of a finished run (`workbench eval`) ---------------------------------
    def use_eval_file(self, path: str) -> None:
        """Make the whole of ``path`` (a file in this task's format) the validation set,
        encoded with the (restored) vocabularies. Called after restore()."""
        raise SpecError("data.path", f"task {self.name!r} cannot evaluate on a file of its own")

    def decode_metrics(self, model, batch: Batch) -> dict[str, tuple[float, float]]:
        """Metrics that need free-running inference (e.g. greedy decoding), as sums like
        metric_sums(); too slow for the trainer's periodic evals, run by `workbench eval`."""
        return {}

    def free_running_metrics(self, model) -> dict[str, float]:
        """Metrics of the model run on its own outputs over the whole validation set (e.g.
        next-frame rollouts scored K frames ahead), already averaged; run by `workbench eval`."""
        return {}

    def stream_metrics(self, model) -> dict[str, float]:
        """Metrics of the validation data read as one stream, the model's state carried
        from each piece to the next (a language model's held-out text, every token scored
        with all of the text before it), already averaged; run by `workbench eval`, not
        by training's evaluations (one long sequential pass)."""
        return {}

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics that are not means over counted items (e.g. perplexity = exp(nats)),
        computed from the averaged ones."""
        return {}

    # -- helpers shared by tasks ----------------------------------------------------------
    @staticmethod
    def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """logits [B, T, V] / [B, V], targets [B, T] / [B]; mean over counted positions."""
        flat_logits = logits.reshape(-1, logits.shape[-1]).float()
        flat_targets = targets.reshape(-1)
        losses = F.cross_entropy(flat_logits, flat_targets, reduction="none")
        if mask is None:
            return losses.mean()
        m = mask.reshape(-1).to(losses.dtype)
        return (losses * m).sum() / m.sum().clamp_min(1.0)

    @staticmethod
    def accuracy_sums(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, float]:
        correct = logits.argmax(dim=-1) == targets
        if mask is not None:
            return float((correct & mask).sum()), float(mask.sum())
        return float(correct.sum()), float(correct.numel())


def parse_options(options_cls: type, raw: dict):
    """Task options from ``data.options``; unknown keys and wrong types name the field."""
    if options_cls is type(None):
        if raw:
            raise SpecError(f"data.options.{sorted(raw)[0]}", "this task takes no options")
        return None
    return _from_raw(options_cls, raw or {}, "data.options")
