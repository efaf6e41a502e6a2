"""Language model (many-to-many): predict each next character (or word) of a text.

Data: ``data.path`` = any UTF-8 .txt file; left empty, the default corpus is the
documentation text every Python installation carries (``pydoc_data.topics``, about
465 KB of English). The last ``val_fraction`` (10%) of the text is held out for
validation, unshuffled, or ``val_path`` names a separate file.

Batches: training windows of ``seq_len`` tokens, x = text[s : s+L], y = text[s+1 : s+L+1],
one pass over the training text per epoch (non-overlapping windows from a random
offset, in random order). Validation windows overlap: each counts only its last
``seq_len - eval_context`` targets and reads the ``eval_context`` tokens before them
first (masked out), so the state is warmed up as in a stateful evaluation; the first
window counts all of its targets, so every validation target counts exactly once.
These windowed figures (``nats_per_char``) are what training's evaluations report.

Streamed (``stream_metrics``, run by `workbench eval` and bench/quality.py): the whole
validation text read as ONE sequence, in consecutive pieces with the recurrent state
carried from each to the next, every target scored once with all of the text before it
as context: the standard language-model evaluation (char-rnn's), reported beside the
windowed figures as ``nats_per_char_streamed`` etc.

Metrics: nats and bits per character (per word at level "word"), next-token accuracy,
and perplexity (exp of nats, from ``derived_metrics``). Baselines: a uniform guess over
the text's characters (ln 65 = 4.17 for Tiny Shakespeare) and the unigram frequencies.

Vocabulary (``task.json``): level "char" holds every character of the whole text
(train and validation: the character set is not something to generalise to) after
<pad> and <unk>; level "word" holds the training part's words seen ``min_freq`` times.

Inference helpers (no data needed after ``restore``):
  ``encode_text(text) -> LongTensor [1, T]`` (unknown symbols -> <unk>),
  ``decode_ids(ids) -> str``, ``tokenize(text) -> list[str]``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from workbench.io.errors import DataError
from workbench.io.text import read_text_file, split_train_val
from workbench.io.vocab import PAD, UNK, Vocab
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

# Words, single punctuation marks, and line breaks (kept: a text's layout is part of it).
_WORD_LM_RE = re.compile(r"\w+|[^\w\s]|\n")


def default_corpus() -> str:
    """The standard library's documentation topics, joined in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@dataclass
class CharLMOptions:
    level: str = "char"  # "char" or "word"
    seq_len: int = 128  # training window (truncated BPTT length)
    val_fraction: float = 0.1  # held out from the end of the text
    val_path: str = ""  # a separate validation text (then nothing is held out)
    eval_context: int = -1  # warm-up tokens per validation window (-1: seq_len // 2)
    min_freq: int = 2  # word level: rarer words become <unk>
    max_vocab: int = 30000  # word level: vocabulary cap (specials included)
    lowercase: bool = False  # word level


class CharLMTask(Task):
    name = "charlm"
    title = "Language model (next character or word)"
    topologies = ("many_to_many",)
    option_choices = {"level": ("char", "word")}
    Options = CharLMOptions
    main_metric = "nats_per_char"

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        check_choice(o, "level", self.option_choices["level"])
        check_int(o, "seq_len", 1, 100_000)
        check_float(o, "val_fraction", 0.0, 0.9)
        check_int(o, "eval_context", -1, o.seq_len - 1)
        check_int(o, "min_freq", 1, 1_000_000)
        check_int(o, "max_vocab", 3, 10_000_000)
        if not o.val_path and o.val_fraction <= 0:
            raise SpecError("data.options.val_fraction", "must be above 0 unless val_path names a validation file")
        self.unit = "char" if o.level == "char" else "word"
        self.main_metric = f"nats_per_{self.unit}"
        self.vocab: Vocab | None = None
        self.train_ids = torch.zeros(0, dtype=torch.long)
        self.val_ids = torch.zeros(0, dtype=torch.long)
        self._baseline: dict[str, float] = {}

    # -- tokens ----------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        if self.options.level == "char":
            return list(text)
        if self.options.lowercase:
            text = text.lower()
        return _WORD_LM_RE.findall(text)

    def detokenize(self, tokens: list[str]) -> str:
        if self.options.level == "char":
            return "".join(tokens)
        out = []
        for tok in tokens:
            # a space between words, none after a line break or an apostrophe ("isn't")
            if out and tok != "\n" and out[-1] not in ("\n", "'") and (tok[0].isalnum() or tok[0] == "_"):
                out.append(" ")
            out.append(tok)
        return "".join(out)

    def encode_text(self, text: str) -> torch.Tensor:
        """A user's text -> ids [1, T] (unknown symbols -> <unk>)."""
        return torch.tensor([self.vocab.encode(self.tokenize(text))], dtype=torch.long)

    def decode_ids(self, ids) -> str:
        return self.detokenize(self.vocab.decode(ids))

    # -- life cycle ------------------------------------------------------------------------
    def _read(self, path: str) -> str:
        return read_text_file(path, "text file") if path else default_corpus()

    def prepare(self) -> None:
        o = self.options
        source = self.path or "the default corpus (pydoc_data.topics)"
        text = self._read(self.path)
        if o.val_path:
            train_text, val_text = text, read_text_file(o.val_path, "validation text file")
        else:
            train_text, val_text = split_train_val(text, o.val_fraction)
        train_tokens, val_tokens = self.tokenize(train_text), self.tokenize(val_text)
        if self.vocab is None:  # keep a restored vocabulary (evaluating a finished run)
            if o.level == "char":
                self.vocab = Vocab.build(Counter(train_tokens) + Counter(val_tokens), specials=(PAD, UNK))
            else:
                self.vocab = Vocab.build(Counter(train_tokens), specials=(PAD, UNK), min_freq=o.min_freq,
                                         max_size=o.max_vocab)
        self.train_ids = torch.tensor(self.vocab.encode(train_tokens), dtype=torch.long)
        self.val_ids = torch.tensor(self.vocab.encode(val_tokens), dtype=torch.long)
        if len(self.train_ids) < o.seq_len + 1:
            raise DataError(self.path or source, f"the training part has {len(self.train_ids)} {self.unit}s; "
                            f"a training window needs seq_len + 1 = {o.seq_len + 1} (lower data.options.seq_len)")
        if len(self.val_ids) < 2:
            raise DataError(o.val_path or self.path or source,
                            f"the validation part has {len(self.val_ids)} {self.unit}s; it needs at least 2")
        self._baseline = self._baselines()

    def _baselines(self) -> dict[str, float]:
        # Uniform over the symbols the text really uses (the specials are never targets).
        real = len(self.vocab) - 2
        counts = torch.bincount(self.train_ids, minlength=len(self.vocab)).double() + 0.5  # add-half smoothing
        logp = (counts / counts.sum()).log()
        unigram = float(-logp[self.val_ids[1:]].mean())
        return {f"nats_per_{self.unit}": math.log(max(real, 1)), f"unigram_nats_per_{self.unit}": unigram}

    def artifacts(self) -> dict:
        return {"vocab": self.vocab.to_json(), "baseline": self._baseline}

    def restore(self, artifacts: dict) -> None:
        self.vocab = restore_vocab(artifacts, "vocab")
        self._baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    def use_eval_file(self, path: str) -> None:
        text = read_text_file(path, "text file")
        self.val_ids = torch.tensor(self.vocab.encode(self.tokenize(text)), dtype=torch.long)
        if len(self.val_ids) < 2:
            raise DataError(path, f"holds fewer than 2 {self.unit}s")

    # -- shapes ------------------------------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="tokens", vocab_size=len(self.vocab), output_size=len(self.vocab))

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        check_token_input(model, self.name)
        check_classification_head(model, self.name)
        if any(layer.bidirectional for layer in model.layers):
            raise SpecError("model.layers", "a language model predicts the next token, so it must not read ahead: "
                            "bidirectional layers would see the answer")

    # -- data --------------------------------------------------------------------------------
    def epoch_size(self, batch_size: int) -> int | None:
        windows = (len(self.train_ids) - 1) // self.options.seq_len
        return max(math.ceil(windows / batch_size), 1)

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        L = self.options.seq_len
        ids = self.train_ids
        offset = int(torch.randint(0, L, (1,), generator=generator)) if len(ids) > 2 * L + 1 else 0
        starts = torch.arange(offset, len(ids) - L, L)  # every window fits: s + L < len
        if len(starts) == 0:
            starts = torch.zeros(1, dtype=torch.long)
        starts = starts[torch.randperm(len(starts), generator=generator)]
        span = torch.arange(L + 1)
        for i in range(0, len(starts), batch_size):
            windows = ids[starts[i:i + batch_size, None] + span]  # [B, L + 1]
            yield Batch(x=windows[:, :-1], y=windows[:, 1:])

    def _val_windows(self) -> list[tuple[int, int]]:
        """(start, first counted position) of each validation window over val_ids."""
        o = self.options
        L = o.seq_len
        n = len(self.val_ids) - 1  # targets
        context = o.eval_context if o.eval_context >= 0 else L // 2
        context = min(context, L - 1)
        windows = [(0, 0)]
        covered = min(L, n)
        while covered < n:
            start = max(covered - context, 0)
            windows.append((start, covered - start))
            covered = start + L
        return windows

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        L = self.options.seq_len
        ids = self.val_ids
        windows = self._val_windows()
        wanted = batch_size * max_batches
        if wanted < len(windows):
            # A periodic eval: windows spread evenly over the whole held-out text (its
            # end may differ from its start, e.g. another play), not just its beginning.
            step = len(windows) / wanted
            windows = [windows[int(i * step)] for i in range(wanted)]
        pad = self.vocab.pad_id
        for b in range(0, len(windows), batch_size):
            chunk = windows[b:b + batch_size]
            x = torch.full((len(chunk), L), pad, dtype=torch.long)
            y = torch.full((len(chunk), L), pad, dtype=torch.long)
            mask = torch.zeros(len(chunk), L, dtype=torch.bool)
            for r, (start, counted_from) in enumerate(chunk):
                piece = ids[start:start + L + 1]
                n = len(piece) - 1
                x[r, :n] = piece[:-1]
                y[r, :n] = piece[1:]
                mask[r, counted_from:n] = True
            yield Batch(x=x, y=y, mask=mask)

    @torch.no_grad()
    def stream_losses(self, model: torch.nn.Module, piece: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """The validation text read as one stream: x = val_ids[:-1] fed in consecutive
        pieces of ``piece`` tokens (batch of one), the recurrent states carried from each
        piece to the next (the piece length changes only the speed). Returns the loss of
        every target, [N - 1] for N validation tokens, each scored exactly once, and
        whether each was predicted correctly (argmax), [N - 1] bool."""
        device = next(model.parameters()).device
        ids = self.val_ids
        n = len(ids) - 1  # targets
        losses, correct, state = [], [], None
        was_training = model.training
        model.eval()
        try:
            for s in range(0, n, piece):
                e = min(s + piece, n)
                x = ids[s:e].unsqueeze(0).to(device)  # [1, P]
                y = ids[s + 1:e + 1].to(device)  # [P]
                out, state = model(x, initial_states=state, return_states=True)  # out [1, P, V]
                logits = out[0].float()
                losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="none").cpu())
                correct.append((logits.argmax(dim=-1) == y).cpu())
        finally:
            model.train(was_training)
        return torch.cat(losses), torch.cat(correct)

    def stream_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        losses, correct = self.stream_losses(model)
        nats = float(losses.double().mean())
        u = self.unit
        return {f"nats_per_{u}_streamed": nats, f"bits_per_{u}_streamed": nats / math.log(2),
                "accuracy_streamed": float(correct.double().mean()), "perplexity_streamed": math.exp(min(nats, 700.0))}

    # -- loss and metrics ---------------------------------------------------------------------
    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.masked_cross_entropy(output, batch.y, batch.mask)

    def metric_sums(self, output: torch.Tensor, batch: Batch) -> dict[str, tuple[float, float]]:
        logits = output.float()
        losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.y.reshape(-1),
                                                   reduction="none")
        correct = (logits.argmax(dim=-1) == batch.y).reshape(-1)
        if batch.mask is not None:
            m = batch.mask.reshape(-1)
            losses, correct = losses[m], correct[m]
        total, count = float(losses.sum()), float(losses.numel())
        u = self.unit
        return {f"nats_per_{u}": (total, count), f"bits_per_{u}": (total / math.log(2), count),
                "accuracy": (float(correct.sum()), count)}

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        value = metrics.get(f"nats_per_{self.unit}")
        return {"perplexity": math.exp(min(value, 700.0))} if value is not None else {}

    def baseline(self) -> dict[str, float]:
        return dict(self._baseline)
