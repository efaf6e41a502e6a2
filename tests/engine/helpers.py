"""Small models, presets and tasks for the engine tests."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch

from workbench.engine.model import build_model
from workbench.presets import BUILTIN_DIR
from workbench.spec import HeadSpec, InputSpec, LayerSpec, ModelIO, ModelSpec, Preset, with_overrides
from workbench.tasks.base import Batch, Task

# gpu.sh runs these same tests on the GPU with WORKBENCH_TEST_DEVICE=cuda
DEVICE = torch.device(os.environ.get("WORKBENCH_TEST_DEVICE", "cpu"))

FEATURES, OUT, VOCAB, OUT_VOCAB = 3, 2, 11, 9


def layers(*cells_bidir) -> list[LayerSpec]:
    """layers(("lstm", False), ("gru", True)) -> LayerSpecs of hidden size 5."""
    return [LayerSpec(cell=c, hidden_size=5, bidirectional=b) for c, b in cells_bidir]


def small_model(topology: str, stack: list[LayerSpec], decoder: list[LayerSpec] | None = None,
                attention: bool = False, dtype=torch.float64, seed: int = 0):
    """A tiny model of the topology and a matching batch (B=3), on DEVICE in ``dtype``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    B, T, S = 3, 7, 6
    if topology in ("many_to_one", "many_to_many"):
        spec = ModelSpec(topology=topology, input=InputSpec(kind="linear", projection_size=4), layers=stack,
                         head=HeadSpec(kind="regression"))
        io = ModelIO(input_kind="features", feature_size=FEATURES, output_size=OUT)
        x = torch.randn(B, T, FEATURES, generator=g)
        batch = Batch(x=x, y=torch.zeros(B, OUT))
    elif topology == "encoder_decoder":
        spec = ModelSpec(topology=topology, input=InputSpec(kind="embedding", embedding_dim=4), layers=stack,
                         decoder_layers=decoder, attention=attention)
        io = ModelIO(input_kind="tokens", vocab_size=VOCAB, output_size=OUT_VOCAB, output_vocab_size=OUT_VOCAB)
        x = torch.randint(3, VOCAB, (B, S), generator=g)
        y_in = torch.randint(3, OUT_VOCAB, (B, T), generator=g)
        batch = Batch(x=x, y=y_in, y_in=y_in, lengths=torch.tensor([S, S - 2, S - 1]))
    else:  # one_to_many: a feature vector per row sets the state, then tokens
        spec = ModelSpec(topology=topology, input=InputSpec(kind="linear", projection_size=4, embedding_dim=4),
                         layers=stack)
        io = ModelIO(input_kind="vector", feature_size=FEATURES, output_size=OUT_VOCAB, output_vocab_size=OUT_VOCAB)
        x = torch.randn(B, FEATURES, generator=g)
        y_in = torch.randint(3, OUT_VOCAB, (B, T), generator=g)
        batch = Batch(x=x, y=y_in, y_in=y_in)
    model = build_model(spec, io).to(device=DEVICE, dtype=dtype)
    batch = Batch(**{k: (v.to(DEVICE, dtype=dtype) if v is not None and v.is_floating_point()
                         else (v.to(DEVICE) if v is not None else None))
                     for k, v in vars(batch).items()})
    return model, batch


def fixed_loss(seed: int = 7):
    """A loss that depends on every output position, the same for any model copy:
    sum(W * out) + 0.1 * sum(out^2), with W fixed by ``seed``."""
    cache: dict = {}

    def loss(output: torch.Tensor, batch=None) -> torch.Tensor:
        key = (tuple(output.shape), output.dtype, output.device)
        if key not in cache:
            w = torch.randn(output.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
            cache[key] = w.to(output.device, output.dtype)
        return (output * cache[key]).sum() + 0.1 * output.pow(2).sum()

    return loss


def preset(base: str = "adding_lstm", *overrides: str, model_layers: list[dict] | None = None) -> Preset:
    """A built-in preset, small and quick: hidden 8, T=12, batch 4, CPU, then overrides."""
    raw = json.loads((BUILTIN_DIR / f"{base}.json").read_text())
    raw["model"]["layers"] = model_layers or [dict(raw["model"]["layers"][0], hidden_size=8)]
    raw["data"]["options"]["seq_len"] = 12
    raw["data"]["options"]["val_size"] = 8
    raw["train"].update(batch_size=4, steps=6, eval_every=0, eval_batches=2, checkpoint_every=0, device="cpu",
                        probe_every=0, log_every=1, num_threads=1)
    return with_overrides(Preset.from_dict(raw), list(overrides))


@dataclass
class ToyOptions:
    n: int = 10
    seq_len: int = 12


class ToyStream(Task):
    """A finite data set of n random sequences (features [T, 3] -> per-step targets
    [T, 2], or one target per row for many_to_one): epochs end, order is shuffled."""

    name = "toy_stream"
    topologies = ("many_to_many", "many_to_one")
    Options = ToyOptions

    def __init__(self, options: dict | None = None, path: str = "", seed: int = 0, topology: str = "many_to_many"):
        super().__init__(options or {}, path, seed)
        g = torch.Generator().manual_seed(123)
        n, T = self.options.n, self.options.seq_len
        self.topology = topology
        self.X = torch.randn(n, T, FEATURES, generator=g)
        self.Y = torch.randn(n, T, OUT, generator=g) if topology == "many_to_many" else torch.randn(n, OUT, generator=g)
        self.lengths = torch.randint(T // 2, T + 1, (n,), generator=g)
        self.lengths[0] = T

    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="features", feature_size=FEATURES, output_size=OUT)

    def check_model(self, model) -> None:
        pass

    def _batch(self, idx: torch.Tensor) -> Batch:
        lengths = self.lengths[idx]
        if self.topology == "many_to_many":
            T = self.X.shape[1]
            mask = torch.arange(T)[None, :] < lengths[:, None]
            return Batch(x=self.X[idx], y=self.Y[idx], lengths=lengths, mask=mask)
        return Batch(x=self.X[idx], y=self.Y[idx], lengths=lengths)

    def train_batches(self, batch_size: int, generator: torch.Generator):
        order = torch.randperm(self.options.n, generator=generator)
        for i in range(0, self.options.n, batch_size):
            yield self._batch(order[i:i + batch_size])

    def val_batches(self, batch_size: int, max_batches: int):
        for i in range(0, min(self.options.n, batch_size * max_batches), batch_size):
            yield self._batch(torch.arange(i, min(i + batch_size, self.options.n)))

    def epoch_size(self, batch_size: int) -> int:
        return math.ceil(self.options.n / batch_size)

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        sq = (output.float() - batch.y).pow(2)
        if batch.mask is not None:
            m = batch.mask.unsqueeze(-1).to(sq.dtype)
            return (sq * m).sum() / (m.sum() * sq.shape[-1]).clamp_min(1.0)
        return sq.mean()

    def metric_sums(self, output, batch):
        return {}
