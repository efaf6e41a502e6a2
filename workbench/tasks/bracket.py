"""Grammaticality of bracket strings (many-to-one): is the string well nested?

A sequence of brackets over ``kinds`` bracket pairs, "()", "[]", "{}", "<>", is
grammatical when every bracket closes the last one still open, of its own kind, and
nothing stays open: "([]{})" yes, "([)]" no. It is the "is this sentence grammatical"
classifier in miniature: it needs a stack, which a recurrent state must hold across
the whole string, so raising the length tells the vanishing-gradient story again.

The negatives are near misses, never random strings: each is a well-nested string of
the same length with one swap of two brackets (two closers of different kinds, an
adjacent opener-closer pair, or any two positions), kept only if the result is not
well nested. Swaps keep the count of every bracket character, so counting cannot
tell the classes apart; only tracking the nesting can. Half the examples are
positive, so the trivial baseline (always one class) is 50% accuracy.

Every batch holds strings of one length (an even length drawn from [min_len, max_len]),
so nothing is padded; the validation set (``val_size`` strings, seeded by the run's
seed) covers every length equally.

Inference helpers: ``encode_text("([])") -> Batch`` (x [1, T], lengths),
``class_names`` (index = class id), ``is_well_nested(text) -> bool``.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from workbench.io.vocab import PAD, Vocab
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task
from workbench.tasks.textutil import check_classification_head, check_int, check_token_input, restore_vocab

PAIRS = ("()", "[]", "{}", "<>")
CLASS_NAMES = ["not well nested", "well nested"]


@dataclass
class BracketOptions:
    kinds: int = 3  # bracket pairs used, 1..4
    min_len: int = 2
    max_len: int = 20
    val_size: int = 1000


def is_well_nested(text: str, pairs: tuple[str, ...] = PAIRS) -> bool:
    closer_of = {p[1]: p[0] for p in pairs}
    openers = {p[0] for p in pairs}
    stack: list[str] = []
    for ch in text:
        if ch in openers:
            stack.append(ch)
        elif ch in closer_of:
            if not stack or stack.pop() != closer_of[ch]:
                return False
        else:
            return False
    return not stack


def random_well_nested(rng: random.Random, length: int, pairs: tuple[str, ...]) -> str:
    """A random well-nested string of even ``length``: open or close with equal odds
    while both are possible (a random walk on the depth, ending at 0)."""
    out, stack = [], []
    for remaining in range(length, 0, -1):
        depth = len(stack)
        if depth == 0 or (depth < remaining and rng.random() < 0.5):
            pair = rng.choice(pairs)
            stack.append(pair[1])
            out.append(pair[0])
        else:
            out.append(stack.pop())
    return "".join(out)


def near_miss(rng: random.Random, positive: str, pairs: tuple[str, ...]) -> str | None:
    """One swap of two brackets that breaks the nesting (None if none was found)."""
    closers = {p[1] for p in pairs}
    chars = list(positive)
    n = len(chars)
    for _attempt in range(50):
        how = rng.randrange(3)
        if how == 0:  # two closers of different kinds: "([])" -> "([)]"
            idx = [i for i, c in enumerate(chars) if c in closers]
            i, j = rng.sample(idx, 2) if len(idx) >= 2 else (0, 0)
        elif how == 1:  # an adjacent opener-closer pair turned round: "()" -> ")("
            idx = [i for i in range(n - 1) if chars[i] not in closers and chars[i + 1] in closers]
            i = rng.choice(idx)
            j = i + 1
        else:  # any two positions
            i, j = rng.sample(range(n), 2)
        if chars[i] == chars[j]:
            continue
        swapped = chars.copy()
        swapped[i], swapped[j] = swapped[j], swapped[i]
        candidate = "".join(swapped)
        if not is_well_nested(candidate, pairs):
            return candidate
    return None


def make_examples(rng: random.Random, count: int, length: int, pairs: tuple[str, ...]) -> list[tuple[str, int]]:
    out = []
    while len(out) < count:
        positive = random_well_nested(rng, length, pairs)
        if rng.random() < 0.5:
            out.append((positive, 1))
        else:
            negative = near_miss(rng, positive, pairs)
            if negative is not None:  # "()" with one kind has no near miss: draw again
                out.append((negative, 0))
    return out


class BracketTask(Task):
    name = "brackets"
    title = "Bracket grammaticality (well nested or not)"
    topologies = ("many_to_one",)
    Options = BracketOptions
    main_metric = "accuracy"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        if path:
            raise SpecError("data.path", "the bracket task generates its own strings; leave the path empty")
        check_int(o, "kinds", 1, len(PAIRS))
        check_int(o, "min_len", 2, 100_000)
        check_int(o, "max_len", 2, 100_000)
        check_int(o, "val_size", 1, 1_000_000)
        if o.max_len < o.min_len:
            raise SpecError("data.options.max_len", f"must be at least min_len ({o.min_len}), got {o.max_len}")
        self.lengths = [n for n in range(o.min_len, o.max_len + 1) if n % 2 == 0]
        if not self.lengths:
            raise SpecError("data.options.max_len", "the range min_len..max_len holds no even length "
                            "(a well-nested string has an even length)")
        self.pairs = PAIRS[:o.kinds]
        self.vocab = Vocab([PAD] + [c for p in self.pairs for c in p])
        self.class_names = list(CLASS_NAMES)
        self._val: list[tuple[str, int]] | None = None

    # -- inference helpers -------------------------------------------------------------------
    def encode_text(self, text: str) -> Batch:
        text = "".join(text.split())
        bad = [c for c in text if c not in self.vocab or c == PAD]
        if bad or not text:
            raise ValueError(f"use only the brackets {' '.join(self.pairs)}" + (f" (found {bad[0]!r})" if bad else ""))
        x = torch.tensor([self.vocab.encode(text)], dtype=torch.long)
        return Batch(x=x, y=torch.tensor([int(is_well_nested(text, self.pairs))]),
                     lengths=torch.tensor([len(text)]))

    def is_well_nested(self, text: str) -> bool:
        return is_well_nested(text, self.pairs)

    # -- life cycle ----------------------------------------------------------------------------
    def artifacts(self) -> dict:
        return {"vocab": self.vocab.to_json(), "classes": self.class_names}

    def restore(self, artifacts: dict) -> None:
        vocab = restore_vocab(artifacts, "vocab")
        if vocab.tokens != self.vocab.tokens:
            raise SpecError("data.options.kinds", "the run's vocabulary does not match its bracket kinds")
        self.prepared = True

    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="tokens", vocab_size=len(self.vocab), output_size=2)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        check_token_input(model, self.name)
        check_classification_head(model, self.name)

    # -- data ------------------------------------------------------------------------------------
    def _batch(self, examples: list[tuple[str, int]]) -> Batch:
        x = torch.tensor([self.vocab.encode(s) for s, _ in examples], dtype=torch.long)  # [B, T]
        y = torch.tensor([label for _, label in examples], dtype=torch.long)  # [B]
        return Batch(x=x, y=y, lengths=torch.full((len(examples),), x.shape[1], dtype=torch.long))

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        while True:
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
            length = rng.choice(self.lengths)
            yield self._batch(make_examples(rng, batch_size, length, self.pairs))

    def validation_examples(self) -> list[tuple[str, int]]:
        if self._val is None:
            rng = random.Random(self.seed * 7919 + 104_729)
            n, k = self.options.val_size, len(self.lengths)
            self._val = []
            for i, length in enumerate(self.lengths):
                count = n // k + (1 if i < n % k else 0)
                self._val += make_examples(rng, count, length, self.pairs)
        return self._val

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        """Batches of one length each, taking the lengths in turn, so that the first
        few batches (a periodic eval) already cover short and long strings alike."""
        by_length: dict[int, list[tuple[str, int]]] = {}
        for example in self.validation_examples():
            by_length.setdefault(len(example[0]), []).append(example)
        chunks = [[group[i:i + batch_size] for i in range(0, len(group), batch_size)] for group in by_length.values()]
        order = [c[r] for r in range(max(map(len, chunks))) for c in chunks if r < len(c)]
        for examples in order[:max_batches]:
            yield self._batch(examples)

    # -- loss and metrics ------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.masked_cross_entropy(output, batch.y, None)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        return {"accuracy": self.accuracy_sums(output, batch.y, None)}

    def baseline(self) -> dict[str, float]:
        return {"accuracy": 0.5}
