"""Part-of-speech tagging (many-to-many): one tag per word.

Data: ``data.path`` = a CoNLL-U file (Universal Dependencies; word forms and the UPOS
column; multiword-token and empty-node lines skipped as the format defines, see
workbench.io.conllu). Validation: ``val_path`` (e.g. the treebank's dev file), else the
last ``val_fraction`` of the sentences. Left empty, the data is generated from a small
English grammar with word classes (``train_size`` + ``val_size`` sentences, seeded by the
run's seed) in which many words belong to several classes ("they saw the saw", "the
light light", "that dog ate that"), so a tag depends on the context, not on the word.

Input: with the 'embedding' input x is word ids [B, T]; with 'embedding_chars' it is
[B, T, 1 + C]: the word id, then the word's characters (up to ``max_chars``, keeping its
start and end) between <bow> and <eow> markers, so the model sees the spelling of rare
and unknown words (suffixes, capitals, digits). ``check_model`` tells the task which
input the model has. Words are looked up lowercased (``lowercase``) and with every digit
as 0 (``digits_to_zero``); the characters keep both. Words seen fewer than ``min_freq``
times are <unk>; with ``word_dropout`` > 0, words seen once in training become <unk>
with that probability in each training batch, so the <unk> vector learns to stand for
unknown words (whose characters still show).

Batches are bucketed by length (sentences of similar length together) so padding
stays low; padded positions never count (``mask``). Metrics: tag accuracy over real
words, and ``oov_accuracy`` over words the vocabulary does not know. Baseline: the
most-frequent-tag tagger (each known word's most frequent training tag, the overall
most frequent tag for unknown words).

Inference helpers (after ``restore``): ``encode_sentence("The dog barks .")`` or a list
of words -> Batch [1, T(, 1 + C)], ``decode_tags(output) -> list[str]`` (output [1, T, K]
or [T, K]), ``tag_names``.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench.io.conllu import TaggedSentence, read_conllu
from workbench.io.errors import DataError
from workbench.io.vocab import (
    BOW,
    EOW,
    PAD,
    UNK,
    Vocab,
    bucketed_batches,
    char_matrix,
    length_mask,
    pad_words_with_chars,
)
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch, Task
from workbench.tasks.textutil import check_classification_head, check_float, check_int, check_token_input, restore_vocab

# ----------------------------------------------------------------------------- the grammar

# Word classes (UPOS). Words listed under several classes are the point of the task.
LEXICON: dict[str, list[str]] = {
    "DET": ["the", "a", "this", "that", "every", "some", "no"],
    "NOUN": ["dog", "cat", "man", "woman", "park", "ball", "house", "book", "telescope", "garden", "river",
             "saw", "run", "walk", "light", "play", "fish", "watch", "duck", "bank", "can", "train", "plant",
             "record", "fly", "bear", "ring"],
    "VERB": ["saw", "sees", "run", "runs", "walk", "walks", "watch", "watches", "likes", "play", "plays", "fish",
             "duck", "light", "reads", "found", "train", "plant", "record", "book", "fly", "bear", "ring", "ate",
             "sleeps", "knows"],
    "ADJ": ["big", "small", "red", "old", "light", "happy", "quick", "fast", "green", "quiet", "clean"],
    "ADV": ["quickly", "slowly", "fast", "well", "often", "there", "today", "clean"],
    "ADP": ["in", "on", "with", "near", "under", "by", "over", "behind"],
    "PRON": ["she", "he", "they", "it", "we", "that", "someone"],
    "PROPN": ["Alice", "Bob", "Paris", "Rex", "Maria", "London"],
    "AUX": ["can", "will", "must", "might", "should"],
    "COP": ["is", "was"],  # tagged AUX (UD tags the copula AUX)
    "CCONJ": ["and", "but", "or"],
    "SCONJ": ["because", "while", "that", "if", "although"],
    "PART": ["not"],
    "NUM": ["two", "three", "seven", "12", "100"],
}
_TAG_OF_CLASS = {"COP": "AUX"}


class _Grammar:
    """S -> Clause [(CCONJ | SCONJ) Clause] PUNCT; Clause -> NP VP;
    NP -> DET ADJ* NOUN [PP] | PRON | PROPN | NUM NOUN; PP -> ADP NP;
    VP -> VERB NP [PP] [ADV] | AUX [PART] VERB [NP] [ADV] | COP [PART] ADJ | VERB ADV."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self, cls: str) -> tuple[str, str]:
        return self.rng.choice(LEXICON[cls]), _TAG_OF_CLASS.get(cls, cls)

    def np(self, depth: int, subject: bool) -> list[tuple[str, str]]:
        r = self.rng.random()
        if r < 0.15:
            return [self.word("PRON")] if subject or self.rng.random() < 0.5 else [self.word("PROPN")]
        if r < 0.27:
            return [self.word("PROPN")]
        if r < 0.33:
            return [self.word("NUM"), self.word("NOUN")]
        out = [self.word("DET")]
        for _ in range(self.rng.choice((0, 0, 1, 1, 2))):
            out.append(self.word("ADJ"))
        out.append(self.word("NOUN"))
        if depth < 2 and self.rng.random() < 0.2:
            out += self.pp(depth + 1)
        return out

    def pp(self, depth: int) -> list[tuple[str, str]]:
        return [self.word("ADP")] + self.np(depth, subject=False)

    def vp(self) -> list[tuple[str, str]]:
        r = self.rng.random()
        if r < 0.45:
            out = [self.word("VERB")] + self.np(0, subject=False)
            if self.rng.random() < 0.3:
                out += self.pp(1)
        elif r < 0.7:
            out = [self.word("AUX")]
            if self.rng.random() < 0.3:
                out.append(self.word("PART"))
            out.append(self.word("VERB"))
            if self.rng.random() < 0.6:
                out += self.np(0, subject=False)
        elif r < 0.85:
            out = [self.word("COP")]
            if self.rng.random() < 0.3:
                out.append(self.word("PART"))
            out.append(self.word("ADJ"))
            return out
        else:
            out = [self.word("VERB")]
        if self.rng.random() < 0.3:
            out.append(self.word("ADV"))
        return out

    def sentence(self) -> list[tuple[str, str]]:
        out = self.np(0, subject=True) + self.vp()
        r = self.rng.random()
        if r < 0.2:
            out += [self.word("CCONJ")] + self.np(0, subject=True) + self.vp()
        elif r < 0.35:
            out += [self.word("SCONJ")] + self.np(0, subject=True) + self.vp()
        out.append((self.rng.choice([".", ".", ".", "!"]), "PUNCT"))
        if out[0][1] != "PROPN":
            out[0] = (out[0][0].capitalize(), out[0][1])
        return out


def generate_sentences(count: int, seed: int, max_len: int) -> list[TaggedSentence]:
    rng = random.Random(seed)
    grammar = _Grammar(rng)
    out = []
    while len(out) < count:
        pairs = grammar.sentence()
        if len(pairs) <= max_len:
            out.append(TaggedSentence([w for w, _ in pairs], [t for _, t in pairs], 0))
    return out


# ----------------------------------------------------------------------------- the task

_DIGITS = re.compile(r"[0-9]")


@dataclass
class TaggingOptions:
    val_path: str = ""  # CoNLL-U validation file (else the last val_fraction of data.path)
    val_fraction: float = 0.1
    lowercase: bool = True  # look words up lowercased (characters keep their case)
    digits_to_zero: bool = True  # look words up with every digit as 0 ("1984" and "2001" share a vector)
    min_freq: int = 1
    word_dropout: float = 0.0  # training: words seen once -> <unk> with this probability
    max_chars: int = 16  # 'embedding_chars': characters per word kept
    train_size: int = 4000  # generated data: sentences
    val_size: int = 400
    max_len: int = 30  # generated data: longest sentence


class TaggingTask(Task):
    name = "tagging"
    title = "Part-of-speech tagging (a tag per word)"
    topologies = ("many_to_many",)
    Options = TaggingOptions
    main_metric = "accuracy"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        check_float(o, "val_fraction", 0.0, 0.9)
        check_int(o, "min_freq", 1, 1_000_000)
        check_float(o, "word_dropout", 0.0, 1.0)
        check_int(o, "max_chars", 1, 256)
        check_int(o, "train_size", 1, 10_000_000)
        check_int(o, "val_size", 1, 1_000_000)
        check_int(o, "max_len", 3, 10_000)
        if path and not o.val_path and o.val_fraction <= 0:
            raise SpecError("data.options.val_fraction", "must be above 0 unless val_path names a validation file")
        if o.val_path and not path:
            raise SpecError("data.options.val_path", "a validation file needs a training file in data.path")
        self.char_input = False
        self.words: Vocab | None = None
        self.chars: Vocab | None = None
        self.tags: Vocab | None = None
        self._baseline: dict[str, float] = {}
        self.train_set: list[tuple[list[int], list[int], list[int]]] = []  # (word ids, form ids, tag ids)
        self.val_set: list[tuple[list[int], list[int], list[int]]] = []
        self._char_table = torch.zeros(1, 1, dtype=torch.long)  # [forms, C]
        self._singleton = torch.zeros(1, dtype=torch.bool)

    @property
    def tag_names(self) -> list[str]:
        return list(self.tags.tokens)

    # -- life cycle --------------------------------------------------------------------------
    def _read(self) -> tuple[list[TaggedSentence], list[TaggedSentence]]:
        o = self.options
        if not self.path:
            train = generate_sentences(o.train_size, self.seed * 1_000_003 + 11, o.max_len)
            val = generate_sentences(o.val_size, self.seed * 1_000_003 + 12, o.max_len)
            return train, val
        sentences = read_conllu(self.path)
        if o.val_path:
            return sentences, read_conllu(o.val_path)
        cut = min(max(int(round(len(sentences) * (1 - o.val_fraction))), 1), len(sentences) - 1)
        if cut < 1:
            raise DataError(self.path, f"holds {len(sentences)} sentence(s); a train/validation split needs at "
                                       "least 2 (or set data.options.val_path)")
        return sentences[:cut], sentences[cut:]

    def _key(self, word: str) -> str:
        """The form a word is looked up by in the word vocabulary."""
        if self.options.lowercase:
            word = word.lower()
        if self.options.digits_to_zero:
            word = _DIGITS.sub("0", word)
        return word

    def prepare(self) -> None:
        o = self.options
        train, val = self._read()
        counts = Counter(self._key(w) for s in train for w in s.words)
        if self.words is None:  # keep restored vocabularies (evaluating a finished run)
            self.words = Vocab.build(counts, specials=(PAD, UNK), min_freq=o.min_freq)
            self.chars = Vocab.build(Counter(c for s in train for w in s.words for c in w),
                                     specials=(PAD, UNK, BOW, EOW))
            self.tags = Vocab.build(Counter(t for s in train + val for t in s.tags), specials=(PAD, UNK))
        self._forms: dict[str, int] = {}
        self.train_set = self._encode(train)
        self.val_set = self._encode(val)
        self._build_char_table()
        self._singleton = torch.zeros(len(self.words), dtype=torch.bool)
        for w, c in counts.items():
            if c == 1 and w in self.words:
                self._singleton[self.words.id(w)] = True
        self._baseline = {"accuracy": self._most_frequent_tag_accuracy(train, val)}

    def _encode(self, sentences: Sequence[TaggedSentence]) -> list[tuple[list[int], list[int], list[int]]]:
        out = []
        forms = self._forms
        for s in sentences:
            form_ids = [forms.setdefault(w, len(forms)) for w in s.words]
            out.append((self.words.encode(self._key(w) for w in s.words), form_ids, self.tags.encode(s.tags)))
        return out

    def _build_char_table(self) -> None:
        forms = sorted(self._forms, key=self._forms.get)
        rows = char_matrix(forms, self.chars, self.options.max_chars)
        table = torch.zeros(max(len(rows), 1), max((len(r) for r in rows), default=1), dtype=torch.long)
        for i, r in enumerate(rows):
            table[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        self._char_table = table  # [forms, C]

    def _most_frequent_tag_accuracy(self, train: Sequence[TaggedSentence], val: Sequence[TaggedSentence]) -> float:
        by_word: dict[str, Counter] = defaultdict(Counter)
        overall: Counter = Counter()
        for s in train:
            for w, t in zip(s.words, s.tags):
                by_word[self._key(w)][t] += 1
                overall[t] += 1
        fallback = overall.most_common(1)[0][0]
        best = {w: c.most_common(1)[0][0] for w, c in by_word.items()}
        hits = total = 0
        for s in val:
            for w, t in zip(s.words, s.tags):
                hits += best.get(self._key(w), fallback) == t
                total += 1
        return hits / max(total, 1)

    def artifacts(self) -> dict:
        return {"words": self.words.to_json(), "chars": self.chars.to_json(), "tags": self.tags.to_json(),
                "baseline": self._baseline}

    def restore(self, artifacts: dict) -> None:
        self.words = restore_vocab(artifacts, "words")
        self.chars = restore_vocab(artifacts, "chars")
        self.tags = restore_vocab(artifacts, "tags")
        self._baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    def use_eval_file(self, path: str) -> None:
        self._forms = {}
        self.val_set = self._encode(read_conllu(path))
        self._build_char_table()

    # -- shapes --------------------------------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="tokens", vocab_size=len(self.words), char_vocab_size=len(self.chars),
                       output_size=len(self.tags))

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        check_token_input(model, self.name, allow_chars=True)
        check_classification_head(model, self.name)
        self.char_input = model.input.kind == "embedding_chars"

    # -- inference helpers -----------------------------------------------------------------------
    def encode_sentence(self, sentence: str | Sequence[str]) -> Batch:
        """A user's sentence (split on spaces, or a list of words) -> Batch of one row."""
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        if not words:
            raise ValueError("the sentence has no words")
        ids = [self.words.encode(self._key(w) for w in words)]
        if self.char_input:
            x, lengths = pad_words_with_chars(ids, [char_matrix(words, self.chars, self.options.max_chars)])
        else:
            x = torch.tensor(ids, dtype=torch.long)
            lengths = torch.tensor([len(words)])
        T = x.shape[1]
        return Batch(x=x, y=torch.zeros(1, T, dtype=torch.long), lengths=lengths, mask=length_mask(lengths, T))

    def decode_tags(self, output: torch.Tensor) -> list[str]:
        logits = output[0] if output.dim() == 3 else output  # [T, K]
        return [self.tags.tokens[i] for i in logits.argmax(dim=-1).tolist()]

    # -- data -------------------------------------------------------------------------------------
    def _batch(self, rows: Sequence[tuple[list[int], list[int], list[int]]],
               generator: torch.Generator | None = None) -> Batch:
        B = len(rows)
        lengths = torch.tensor([len(r[0]) for r in rows], dtype=torch.long)
        T = int(lengths.max())
        words = torch.zeros(B, T, dtype=torch.long)
        forms = torch.zeros(B, T, dtype=torch.long)
        tags = torch.zeros(B, T, dtype=torch.long)
        for i, (w, f, t) in enumerate(rows):
            n = len(w)
            words[i, :n] = torch.tensor(w)
            forms[i, :n] = torch.tensor(f)
            tags[i, :n] = torch.tensor(t)
        mask = length_mask(lengths, T)  # [B, T]
        if generator is not None and self.options.word_dropout > 0:
            drop = self._singleton[words] & (torch.rand(B, T, generator=generator) < self.options.word_dropout)
            words = words.masked_fill(drop, self.words.unk_id)
        if self.char_input:
            chars = self._char_table[forms].masked_fill(~mask[..., None], 0)  # [B, T, C]
            x = torch.cat([words[..., None], chars], dim=-1)  # [B, T, 1 + C]
        else:
            x = words
        return Batch(x=x, y=tags, lengths=lengths, mask=mask)

    def epoch_size(self, batch_size: int) -> int | None:
        return max(math.ceil(len(self.train_set) / batch_size), 1)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        lengths = [len(r[0]) for r in self.train_set]
        for idx in bucketed_batches(lengths, batch_size, generator):
            yield self._batch([self.train_set[i] for i in idx], generator)

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        lengths = [len(r[0]) for r in self.val_set]
        batches = bucketed_batches(lengths, batch_size)
        if max_batches < len(batches):
            # A periodic eval sees a spread of lengths, not only the shortest sentences.
            step = len(batches) / max_batches
            batches = [batches[int(i * step)] for i in range(max_batches)]
        for idx in batches:
            yield self._batch([self.val_set[i] for i in idx])

    # -- loss and metrics ---------------------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.masked_cross_entropy(output, batch.y, batch.mask)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        correct = (output.argmax(dim=-1) == batch.y) & batch.mask  # [B, T]
        word_ids = batch.x[..., 0] if batch.x.dim() == 3 else batch.x
        oov = (word_ids == self.words.unk_id) & batch.mask
        sums = {"accuracy": (float(correct.sum()), float(batch.mask.sum()))}
        if self.path:  # generated sentences use a closed vocabulary: no unknown words
            sums["oov_accuracy"] = (float((correct & oov).sum()), float(oov.sum()))
        return sums

    def baseline(self) -> dict[str, float]:
        return dict(self._baseline)
