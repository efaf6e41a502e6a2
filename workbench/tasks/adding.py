"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015).

Each step carries two numbers: a value drawn from U(0, 1) and a marker. Exactly two
markers are 1, one in each half of the sequence; the target is the sum of the two
marked values. Predicting the mean (1.0) scores MSE 1/6 ~ 0.167, so a model below ~0.01
has learned to carry information across up to T steps: the classic long-range test
that a vanilla RNN fails as T grows, through vanishing gradients.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task


@dataclass
class AddingOptions:
    seq_len: int = 100
    val_size: int = 1000


def make_adding_batch(batch_size: int, seq_len: int, generator: torch.Generator) -> Batch:
    values = torch.rand(batch_size, seq_len, generator=generator)  # [B, T]
    half = max(seq_len // 2, 1)
    first = torch.randint(0, half, (batch_size,), generator=generator)
    second = torch.randint(half, seq_len, (batch_size,), generator=generator) if seq_len > 1 else first
    markers = torch.zeros(batch_size, seq_len)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)  # [B, T, 2]
    y = (values[rows, first] + values[rows, second]).unsqueeze(-1)  # [B, 1]
    return Batch(x=x, y=y)


class AddingTask(Task):
    name = "adding"
    title = "Adding problem (long-range regression)"
    topologies = ("many_to_one",)
    Options = AddingOptions
    main_metric = "mse"

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        if path:
            raise SpecError("data.path", "the adding problem generates its own data; leave the path empty")
        if not 2 <= self.options.seq_len <= 100_000:
            raise SpecError("data.options.seq_len", f"must be between 2 and 100000, got {self.options.seq_len}")
        if not 1 <= self.options.val_size <= 1_000_000:
            raise SpecError("data.options.val_size", f"must be between 1 and 1000000, got {self.options.val_size}")

    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="features", feature_size=2, output_size=1)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.input.kind != "linear":
            raise SpecError("model.input.kind", "the adding problem feeds numbers: use the 'linear' input")
        if model.head.kind != "regression":
            raise SpecError("model.head.kind", "the adding problem is a regression: use the 'regression' head")

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        while True:
            yield make_adding_batch(batch_size, self.options.seq_len, generator)

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        generator = torch.Generator().manual_seed(self.seed + 1_000_003)
        remaining = self.options.val_size
        for _ in range(max_batches):
            if remaining <= 0:
                break
            n = min(batch_size, remaining)
            remaining -= n
            yield make_adding_batch(n, self.options.seq_len, generator)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.mse_loss(output.float(), batch.y)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        sq = (output.float() - batch.y).pow(2)
        return {"mse": (float(sq.sum()), float(sq.numel()))}

    def baseline(self) -> dict[str, float]:
        return {"mse": 1.0 / 6.0}
