"""Text classification (many-to-one): one label for a whole text.

File data: ``data.path`` = a CSV or TSV file with a header row; ``text_column`` names
the column holding the text and ``label_column`` the one holding its label (any
strings: "pos"/"neg", "spam"/"ham", 1..5 stars). See workbench.io.labelled_text. The
rows are shuffled with a fixed seed (files are often sorted by label), then the last
``val_fraction`` is held out, or ``val_path`` names a validation file of the same
columns. Word level (lowercased) by default, or ``level`` "char".

Built-in data (path empty): generated movie-review sentences whose sentiment needs the
word order: negation ("the plot was not good" is negative), intensifiers, and contrast
("the acting was great but the story was dull" takes the second clause's side).
A bag of words cannot score perfectly here; a recurrent state that keeps the
negation and the clause boundary can. ``train_size`` / ``val_size`` sentences from
the run's seed.

Batches are bucketed by length; x [B, T] ids, lengths [B] (the model summarises at the
last real step), y [B] class ids. Metric: accuracy; baseline: always the training
set's most frequent label.

Inference helpers (after ``restore``): ``encode_text(text) -> Batch`` (x [1, T],
lengths), ``class_names`` (index = class id).
"""
from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench.io.errors import DataError
from workbench.io.labelled_text import read_labelled_text
from workbench.io.vocab import PAD, UNK, Vocab, bucketed_batches, pad_sequences, tokenize_words
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task
from workbench.tasks.textutil import (
    check_choice,
    check_classification_head,
    check_float,
    check_int,
    check_token_input,
    restore_vocab,
)

# ----------------------------------------------------------------------------- built-in reviews

_SUBJECTS = ["the film", "the plot", "the acting", "the music", "the story", "the ending", "the cast", "it",
             "the script", "the camera work"]
_VERBS = ["was", "is", "seemed", "felt"]
_POSITIVE = ["good", "great", "wonderful", "brilliant", "moving", "funny", "superb", "charming", "fresh"]
_NEGATIVE = ["bad", "boring", "awful", "dull", "weak", "clumsy", "tedious", "silly", "bland"]
_NEGATIONS = ["not", "never", "hardly"]
_INTENSIFIERS = ["very", "really", "quite", "truly", "rather"]
_OPENERS = ["", "", "", "honestly ,", "i think", "to be fair ,", "overall ,", "in the end"]


def _clause(rng: random.Random, polarity: int) -> str:
    negate = rng.random() < 0.4
    adjective = rng.choice(_POSITIVE if (polarity > 0) != negate else _NEGATIVE)
    words = [rng.choice(_SUBJECTS), rng.choice(_VERBS)]
    if negate:
        words.append(rng.choice(_NEGATIONS))
    if rng.random() < 0.3:
        words.append(rng.choice(_INTENSIFIERS))
    words.append(adjective)
    return " ".join(words)


def review(rng: random.Random) -> tuple[str, str]:
    """One generated review sentence and its label ("positive" / "negative")."""
    polarity = rng.choice((1, -1))
    r = rng.random()
    if r < 0.4:
        body = _clause(rng, polarity)
    elif r < 0.7:  # contrast: the clause after "but" decides
        body = f"{_clause(rng, -polarity)} but {_clause(rng, polarity)}"
    else:
        body = f"{_clause(rng, polarity)} and {_clause(rng, polarity)}"
    opener = rng.choice(_OPENERS)
    text = f"{opener} {body} ." if opener else f"{body} ."
    return text, ("positive" if polarity > 0 else "negative")


# ----------------------------------------------------------------------------- the task


@dataclass
class TextClassOptions:
    text_column: str = "text"
    label_column: str = "label"
    val_path: str = ""
    val_fraction: float = 0.1
    level: str = "word"  # "word" or "char"
    lowercase: bool = True
    min_freq: int = 1
    max_vocab: int = 50000
    max_len: int = 400  # tokens kept from the start of each text
    train_size: int = 4000  # built-in data
    val_size: int = 500


class TextClassTask(Task):
    name = "textclass"
    title = "Text classification (a label per text)"
    topologies = ("many_to_one",)
    option_choices = {"level": ("word", "char")}
    Options = TextClassOptions
    main_metric = "accuracy"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        check_choice(o, "level", self.option_choices["level"])
        check_float(o, "val_fraction", 0.0, 0.9)
        check_int(o, "min_freq", 1, 1_000_000)
        check_int(o, "max_vocab", 3, 10_000_000)
        check_int(o, "max_len", 1, 1_000_000)
        check_int(o, "train_size", 2, 10_000_000)
        check_int(o, "val_size", 1, 1_000_000)
        for name in ("text_column", "label_column"):
            if not getattr(o, name).strip():
                raise SpecError(f"data.options.{name}", "must name a column of the file")
        if o.text_column == o.label_column:
            raise SpecError("data.options.label_column", "the text and the label must be different columns")
        if o.val_path and not path:
            raise SpecError("data.options.val_path", "a validation file needs a training file in data.path")
        if path and not o.val_path and o.val_fraction <= 0:
            raise SpecError("data.options.val_fraction", "must be above 0 unless val_path names a validation file")
        self.vocab: Vocab | None = None
        self.class_names: list[str] = []
        self.train_set: list[tuple[list[int], int]] = []
        self.val_set: list[tuple[list[int], int]] = []
        self._baseline: dict[str, float] = {}

    # -- tokens --------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        if self.options.lowercase:
            text = text.lower()
        tokens = list(text) if self.options.level == "char" else tokenize_words(text)
        return tokens[:self.options.max_len]

    def encode_text(self, text: str) -> Batch:
        ids = self.vocab.encode(self.tokenize(text))
        if not ids:
            raise ValueError("the text has no words")
        return self._batch([(ids, 0)])

    # -- life cycle --------------------------------------------------------------------------------
    def _read(self, path: str) -> list[tuple[str, str]]:
        o = self.options
        return [(r.text, r.label) for r in read_labelled_text(path, o.text_column, o.label_column)]

    def prepare(self) -> None:
        o = self.options
        if not self.path:
            rng_t, rng_v = random.Random(self.seed * 7919 + 71), random.Random(self.seed * 7919 + 73)
            train = [review(rng_t) for _ in range(o.train_size)]
            val = [review(rng_v) for _ in range(o.val_size)]
        else:
            rows = self._read(self.path)
            if o.val_path:
                train, val = rows, self._read(o.val_path)
            else:
                if len(rows) < 2:
                    raise DataError(self.path, "holds one row; a train/validation split needs at least 2 "
                                               "(or set data.options.val_path)")
                random.Random(0).shuffle(rows)  # fixed: the same split for every seed
                cut = min(max(int(round(len(rows) * (1 - o.val_fraction))), 1), len(rows) - 1)
                train, val = rows[:cut], rows[cut:]
        if self.vocab is None:  # keep restored vocabularies (evaluating a finished run)
            self.vocab = Vocab.build(Counter(t for text, _ in train for t in self.tokenize(text)),
                                     specials=(PAD, UNK), min_freq=o.min_freq, max_size=o.max_vocab)
            labels = Counter(label for _, label in train)
            if len(labels) < 2:
                raise DataError(self.path or "generated data", f"the training part has a single label "
                                f"({next(iter(labels))!r}); a classifier needs at least two")
            self.class_names = sorted(labels)
        self.train_set = self._encode(train, self.path)
        self.val_set = self._encode(val, o.val_path or self.path)
        majority = Counter(label for _, label in train).most_common(1)[0][0]
        self._baseline = {"accuracy": sum(label == majority for _, label in val) / len(val)}

    def _encode(self, rows: Sequence[tuple[str, str]], path: str) -> list[tuple[list[int], int]]:
        index = {name: i for i, name in enumerate(self.class_names)}
        out = []
        for text, label in rows:
            if label not in index:
                raise DataError(path, f"label {label!r} does not occur in the training data "
                                f"(labels: {', '.join(self.class_names[:10])})")
            ids = self.vocab.encode(self.tokenize(text)) or [self.vocab.unk_id]
            out.append((ids, index[label]))
        return out

    def artifacts(self) -> dict:
        return {"vocab": self.vocab.to_json(), "classes": self.class_names, "baseline": self._baseline}

    def restore(self, artifacts: dict) -> None:
        self.vocab = restore_vocab(artifacts, "vocab")
        classes = artifacts.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise SpecError("", "the run's task.json has no class list")
        self.class_names = [str(c) for c in classes]
        self._baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    def use_eval_file(self, path: str) -> None:
        self.val_set = self._encode(self._read(path), path)

    # -- shapes --------------------------------------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="tokens", vocab_size=len(self.vocab), output_size=len(self.class_names))

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        check_token_input(model, self.name)
        check_classification_head(model, self.name)

    # -- data -------------------------------------------------------------------------------------------
    def _batch(self, rows: Sequence[tuple[list[int], int]]) -> Batch:
        x, lengths = pad_sequences([ids for ids, _ in rows])  # [B, T], [B]
        return Batch(x=x, y=torch.tensor([label for _, label in rows], dtype=torch.long), lengths=lengths)

    def epoch_size(self, batch_size: int) -> int | None:
        return max(math.ceil(len(self.train_set) / batch_size), 1)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        lengths = [len(ids) for ids, _ in self.train_set]
        for idx in bucketed_batches(lengths, batch_size, generator):
            yield self._batch([self.train_set[i] for i in idx])

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        lengths = [len(ids) for ids, _ in self.val_set]
        batches = bucketed_batches(lengths, batch_size)
        if max_batches < len(batches):  # a spread of lengths, not only the shortest texts
            step = len(batches) / max_batches
            batches = [batches[int(i * step)] for i in range(max_batches)]
        for idx in batches:
            yield self._batch([self.val_set[i] for i in idx])

    # -- loss and metrics -------------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.masked_cross_entropy(output, batch.y, None)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        return {"accuracy": self.accuracy_sums(output, batch.y, None)}

    def baseline(self) -> dict[str, float]:
        return dict(self._baseline)
