"""Captioning (one-to-many): encode a small image once, then generate its caption.

Each generated image (3 x ``image_size`` x ``image_size``, black background, a little
noise) holds two coloured shapes, one big and one small, placed apart either mostly
vertically or mostly horizontally. The caption names the big one first and says where
it is relative to the small one:

    "red circle above blue square", "green cross left of green triangle"

from 6 colours x 4 shapes x 4 relations ("above", "below", "left of", "right of"), so
each image has exactly one right caption (5 or 6 words). The model (input kind
'frames_linear' or 'frames_conv', read once into the generator's initial state)
must see colour, shape, size and position and put them in the grammar's order.

Batches: x [B, 3, H, W] floats in [0, 1]; y_in [B, T] = <bos> + caption; y [B, T] =
caption + <eos>; mask [B, T]. Training images are generated without end from the
run's generator; ``val_size`` validation images come from the run's seed.

Metrics: token accuracy and exact match (teacher-forced; equal to greedy decoding's
exact match, see textutil.sequence_metric_sums), and ``greedy_exact_match`` from real
decoding in ``workbench eval``. Baseline: the word most often at each position.

Inference helpers (no data needed): ``random_image(seed) -> (image [3, H, W], caption)``,
``draw(big, small, relation, rng)`` for a chosen scene, ``encode_image(image) -> Batch``
(an image [3, H, W] or [H, W, 3], floats in [0, 1] or uint8), ``decode_caption(ids) -> str``.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from workbench.io.vocab import ALL_SPECIALS, Vocab
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch
from workbench.tasks.textutil import (
    GeneratedTokensTask,
    check_classification_head,
    check_int,
    position_mode_baseline,
    restore_vocab,
)

COLOURS = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.15, 0.3, 1.0),
           "yellow": (1.0, 0.95, 0.1), "magenta": (1.0, 0.1, 1.0), "cyan": (0.1, 0.95, 1.0)}
SHAPES = ("circle", "square", "triangle", "cross")
RELATIONS = ("above", "below", "left of", "right of")
WORDS = list(COLOURS) + list(SHAPES) + ["above", "below", "left", "right", "of"]


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r + 0.5
    if shape == "square":
        h = r * 0.85
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "triangle":  # apex up, base 2r wide
        return (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2 + 0.5)
    arm = max(r / 3, 0.5)  # cross: a plus sign
    return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))


def _sizes(size: int) -> tuple[int, int]:
    return max(round(size * 0.22), 3), max(round(size * 0.12), 2)


def _place(rng: random.Random, relation: str, size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Centres (x, y) of the big and the small shape such that `big <relation> small`
    holds clearly (the main axis' gap beats the other axis' offset by 2 pixels)."""
    rb, rs = _sizes(size)
    while True:
        xb, yb = rng.randint(rb, size - 1 - rb), rng.randint(rb, size - 1 - rb)
        xs, ys = rng.randint(rs, size - 1 - rs), rng.randint(rs, size - 1 - rs)
        dx, dy = xs - xb, ys - yb  # small relative to big
        if max(abs(dx), abs(dy)) < rb + rs + 1:
            continue  # they would touch
        if relation in ("above", "below"):
            ok = abs(dy) >= abs(dx) + 2 and (dy > 0) == (relation == "above")
        else:
            ok = abs(dx) >= abs(dy) + 2 and (dx > 0) == (relation == "left of")
        if ok:
            return (xb, yb), (xs, ys)


def draw(big: tuple[str, str], small: tuple[str, str], relation: str, rng: random.Random, size: int,
         noise: float = 0.04) -> np.ndarray:
    """(colour, shape) of the big and the small object -> image [3, size, size] float32."""
    rb, rs = _sizes(size)
    (xb, yb), (xs, ys) = _place(rng, relation, size)
    image = np.zeros((3, size, size), dtype=np.float32)
    for (colour, shape), (cx, cy), r in ((big, (xb, yb), rb), (small, (xs, ys), rs)):
        mask = _shape_mask(shape, cx, cy, r, size)
        shade = rng.uniform(0.7, 1.0)
        for c in range(3):
            image[c][mask] = COLOURS[colour][c] * shade
    if noise:
        nrng = np.random.default_rng(rng.getrandbits(63))
        image += nrng.normal(0.0, noise, image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


def random_scene(rng: random.Random, size: int) -> tuple[np.ndarray, str]:
    big = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
    small = (rng.choice(list(COLOURS)), rng.choice(SHAPES))
    relation = rng.choice(RELATIONS)
    caption = f"{big[0]} {big[1]} {relation} {small[0]} {small[1]}"
    return draw(big, small, relation, rng, size), caption


@dataclass
class CaptionOptions:
    image_size: int = 24
    val_size: int = 500


class CaptionTask(GeneratedTokensTask):
    name = "captioning"
    title = "Captioning generated shapes (one image in, a sentence out)"
    topologies = ("one_to_many",)
    Options = CaptionOptions
    main_metric = "exact_match"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        if path:
            raise SpecError("data.path", "the captioning task generates its own images; leave the path empty")
        check_int(self.options, "image_size", 12, 128)
        check_int(self.options, "val_size", 1, 100_000)
        self.vocab = Vocab(list(ALL_SPECIALS) + WORDS)
        self._val: list[tuple[np.ndarray, list[int]]] | None = None
        self._baseline: dict[str, float] = {}

    @property
    def size(self) -> int:
        return self.options.image_size

    # -- inference helpers ---------------------------------------------------------------------
    def random_image(self, seed: int) -> tuple[torch.Tensor, str]:
        image, caption = random_scene(random.Random(seed), self.size)
        return torch.from_numpy(image), caption

    def encode_image(self, image) -> Batch:
        img = torch.as_tensor(np.asarray(image))
        if img.dim() == 3 and img.shape[-1] == 3 and img.shape[0] != 3:
            img = img.permute(2, 0, 1)  # [H, W, 3] -> [3, H, W]
        if tuple(img.shape) != (3, self.size, self.size):
            raise ValueError(f"the image must be 3 x {self.size} x {self.size} (got {tuple(img.shape)})")
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        return self._batch([(img.numpy(), [])])

    def decode_caption(self, ids) -> str:
        return " ".join(self.vocab.decode(ids))

    # -- life cycle ------------------------------------------------------------------------------
    def _examples(self, rng: random.Random, count: int) -> list[tuple[np.ndarray, list[int]]]:
        out = []
        for _ in range(count):
            image, caption = random_scene(rng, self.size)
            out.append((image, self.vocab.encode(caption.split())))
        return out

    def prepare(self) -> None:
        self._val = self._examples(random.Random(self.seed * 7919 + 53), self.options.val_size)
        sample = self._examples(random.Random(self.seed * 7919 + 59), 2000)
        eos = self.vocab.id("<eos>")
        self._baseline = position_mode_baseline([c + [eos] for _, c in sample], [c + [eos] for _, c in self._val])

    def artifacts(self) -> dict:
        return {"vocab": self.vocab.to_json(), "image_size": self.size, "baseline": self._baseline}

    def restore(self, artifacts: dict) -> None:
        vocab = restore_vocab(artifacts, "vocab")
        if vocab.tokens != self.vocab.tokens:
            raise SpecError("", "the run's caption vocabulary differs from this workbench's captioning task")
        self._baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    def model_io(self) -> ModelIO:
        V = len(self.vocab)
        return ModelIO(input_kind="image", frame_shape=(3, self.size, self.size), output_size=V,
                       output_vocab_size=V, pad_id=0, bos_id=1, eos_id=2)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        if model.input.kind not in ("frames_linear", "frames_conv"):
            raise SpecError("model.input.kind", "captioning reads an image: use the 'frames_linear' or "
                            "'frames_conv' input")
        check_classification_head(model, self.name)

    # -- data --------------------------------------------------------------------------------------
    def _batch(self, examples: Sequence[tuple[np.ndarray, list[int]]]) -> Batch:
        x = torch.from_numpy(np.stack([img for img, _ in examples]))  # [B, 3, H, W]
        T = max(len(c) for _, c in examples) + 1
        y = torch.zeros(len(examples), T, dtype=torch.long)
        y_in = torch.zeros(len(examples), T, dtype=torch.long)
        mask = torch.zeros(len(examples), T, dtype=torch.bool)
        for i, (_, c) in enumerate(examples):
            y[i, :len(c) + 1] = torch.tensor(c + [2])  # caption + <eos>
            y_in[i, :len(c) + 1] = torch.tensor([1] + c)  # <bos> + caption
            mask[i, :len(c) + 1] = True
        return Batch(x=x, y=y, y_in=y_in, mask=mask)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        while True:
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
            yield self._batch(self._examples(rng, batch_size))

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        if self._val is None:
            self.prepare()
        for b in range(0, min(len(self._val), batch_size * max_batches), batch_size):
            yield self._batch(self._val[b:b + batch_size])

    # -- loss and metrics -----------------------------------------------------------------------------
    # loss, metric_sums, decode_metrics, baseline: GeneratedTokensTask
