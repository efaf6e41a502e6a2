"""Sequence transduction (encoder-decoder): read a source sequence, write a target.

Built-in data (``kind``), generated without end and seeded; character level except "phrases":
  "dates":   a date written in one of a dozen forms -> ISO 8601:
             "tuesday, march 5, 2024", "5th of March 2024", "05.03.2024" (day first),
             "03/05/2024" (month first), "mar 5 2024", ... -> "2024-03-05"
  "numbers": a number in English words -> digits:
             "three hundred forty-two thousand one hundred and five" -> "342105"
  "phrases": short English sentences -> French, word level, from a small grammar
             (workbench.tasks.phrases): "she is not tired ." -> "elle n ' est pas fatiguée ."
Input and output lengths differ and the mapping has structure (reordering, counting
words into digit places, month names, a weekday to ignore). Validation items are
held out from training by a fixed rule (every tenth date or number by a hash), so the
exact match measures generalisation, not recall.

File data: ``data.path`` = tab-separated pairs ``source<TAB>target`` (the translation
tutorials' format, e.g. Tatoeba's fra.txt; see workbench.io.tsv); further columns are
ignored, ``source_column`` / ``target_column`` (1-based) choose others. Word level by
default for files (``level``: "word" or "char"), lowercased (``lowercase``); the pairs
are shuffled with a fixed seed, then the last ``val_fraction`` is held out (the tutorial
files are sorted by length), or ``val_path`` names a validation pairs file. Training
batches are bucketed by source length.

Batches: x [B, S] source ids (padded), lengths [B]; y_in [B, T] = <bos> + target;
y [B, T] = target + <eos>; mask [B, T] True on real target positions.

Metrics: token accuracy (teacher-forced), exact match (teacher-forced, which equals
greedy decoding's exact match: see textutil.sequence_metric_sums), and in
``workbench eval`` also ``greedy_exact_match`` from real greedy decoding
(model.generate). Baseline: the token most often seen at each output position.
For file data ``workbench eval`` also scores the decoded text with sacrebleu (the
field's standard scorer): ``bleu``/``chrf`` from greedy decoding and
``bleu_beam``/``chrf_beam`` from beam search, beside the copy-the-source baseline
(the source itself as the output). Outputs are detokenised (``detokenize``: "i don ' t know ." -> "i don't
know."), references and baselines are the text as read (lowercased per ``lowercase``;
rare words kept, no <unk>), and sacrebleu tokenises both alike with its own tokenizer.

Inference helpers (after ``restore``): ``encode_source("march 5, 2024") -> Batch``
(x [1, S], lengths), ``decode_target(ids) -> str`` (stops at <eos>).
"""
from __future__ import annotations

import calendar
import datetime
import math
import random
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from workbench.io.errors import DataError
from workbench.io.tsv import read_pairs
from workbench.io.vocab import (
    ALL_SPECIALS,
    BOS,
    EOS,
    PAD,
    UNK,
    Vocab,
    bucketed_batches,
    detokenize_words,
    pad_sequences,
    tokenize_words,
)
from workbench.spec import ModelIO, ModelSpec, SpecError
from workbench.tasks.base import Batch
from workbench.tasks.phrases import all_phrases, sample_phrase
from workbench.tasks.textutil import (
    GeneratedTokensTask,
    check_choice,
    check_classification_head,
    check_float,
    check_int,
    check_token_input,
    position_mode_baseline,
    restore_vocab,
)

# ----------------------------------------------------------------------------- dates

_MONTHS = [calendar.month_name[i].lower() for i in range(1, 13)]
_MONTHS_SHORT = [calendar.month_abbr[i].lower() for i in range(1, 13)]
_WEEKDAYS = [calendar.day_name[i].lower() for i in range(7)]
_FIRST_DAY = datetime.date(1900, 1, 1).toordinal()
_LAST_DAY = datetime.date(2099, 12, 31).toordinal()


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def write_date(date: datetime.date, form: int) -> str:
    d, m, y = date.day, date.month, date.year
    month, short, weekday = _MONTHS[m - 1], _MONTHS_SHORT[m - 1], _WEEKDAYS[date.weekday()]
    if form // 12 % 2:  # half the time names are capitalised: "March", "Tuesday"
        month, short, weekday = month.capitalize(), short.capitalize(), weekday.capitalize()
    forms = [
        f"{d} {month} {y}",
        f"{month} {d}, {y}",
        f"{short} {d} {y}",
        f"{d} {short} {y}",
        f"{_ordinal(d)} of {month} {y}",
        f"{month} {_ordinal(d)}, {y}",
        f"{weekday}, {month} {d}, {y}",
        f"{weekday} {d} {month} {y}",
        f"{d:02d}.{m:02d}.{y}",  # day first, dotted (European)
        f"{m:02d}/{d:02d}/{y}",  # month first, slashed (US)
        f"{y}/{m:02d}/{d:02d}",
        f"{d}-{short}-{y}",
    ]
    return forms[form % len(forms)]


DATE_FORMS = 24  # 12 forms x (lower case, Title Case)


def _held_out(n: int) -> bool:
    """Fixed train/validation split of dates (ordinals) and numbers: ~10% held out."""
    return (n * 2654435761) % 1000 < 100


def sample_date(rng: random.Random, validation: bool) -> tuple[str, str]:
    while True:
        ordinal = rng.randint(_FIRST_DAY, _LAST_DAY)
        if _held_out(ordinal) == validation:
            break
    date = datetime.date.fromordinal(ordinal)
    return write_date(date, rng.randrange(DATE_FORMS)), date.isoformat()


# ----------------------------------------------------------------------------- numbers

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _below_thousand(n: int, use_and: bool) -> list[str]:
    words = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
        if rest and use_and:
            words.append("and")
    if rest:
        if rest < 20:
            words.append(_ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            words.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    return words


def number_in_words(n: int, use_and: bool = False) -> str:
    """0 <= n < 10**9 in English words: 342105 -> "three hundred forty-two thousand one
    hundred five" ("... one hundred and five" with use_and, the British style)."""
    if n == 0:
        return "zero"
    words = []
    for scale, name in ((10**6, "million"), (10**3, "thousand"), (1, "")):
        part, n = divmod(n, scale)
        if part:
            words += _below_thousand(part, use_and) + ([name] if name else [])
    return " ".join(words)


def sample_number(rng: random.Random, validation: bool, max_digits: int = 6) -> tuple[str, str]:
    while True:
        digits = rng.randint(1, max_digits)  # every magnitude equally often
        n = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
        if _held_out(n) == validation or digits == 1 and not validation:
            break
    return number_in_words(n, use_and=rng.random() < 0.5), str(n)


# ----------------------------------------------------------------------------- the task

_BUILTIN_SOURCE_CHARS = string.ascii_letters + string.digits + " ,./-"
_BUILTIN_TARGET_CHARS = string.digits + "-"


@dataclass
class TransductionOptions:
    kind: str = "dates"  # built-in data: "dates", "numbers" or "phrases"
    level: str = "auto"  # "char" or "word"; auto: char for built-in data, word for files
    lowercase: bool = True  # files: lowercase both sides
    val_path: str = ""  # files: a validation pairs file
    val_fraction: float = 0.1
    val_size: int = 1000  # built-in: validation pairs
    min_freq: int = 1  # files, word level: rarer tokens become <unk>
    max_len: int = 60  # files: pairs with a longer source or target (in tokens) are left out
    source_column: int = 1  # files: the source's column (1-based)
    target_column: int = 2  # files: the target's column (1-based)
    length_penalty: float = 1.0  # beam search ranks by log-probability / length**length_penalty
    no_repeat_ngram: int = 0  # greedy and beam search: n > 0 writes no n-gram twice in one output
    min_length: int = 0  # decoding writes at least this many tokens before <eos>
    no_unk: bool = False  # decoding never writes <unk> (a copy model still copies unknown words)
    no_repeat_word: bool = False  # decoding never writes a token twice in a row (punctuation may repeat)


class TransductionTask(GeneratedTokensTask):
    name = "transduction"
    title = "Transduction (dates to ISO, numbers in words to digits, or sentence pairs)"
    topologies = ("encoder_decoder",)
    option_choices = {"kind": ("dates", "numbers", "phrases"), "level": ("auto", "char", "word")}
    Options = TransductionOptions
    main_metric = "exact_match"
    lower_is_better = False

    def __init__(self, options: dict, path: str = "", seed: int = 0):
        super().__init__(options, path, seed)
        o = self.options
        for name in self.option_choices:
            check_choice(o, name, self.option_choices[name])
        check_float(o, "val_fraction", 0.0, 0.9)
        check_int(o, "val_size", 1, 1_000_000)
        check_int(o, "min_freq", 1, 1_000_000)
        check_int(o, "max_len", 1, 100_000)
        check_beam_options(o)
        check_int(o, "source_column", 1, 1000)
        check_int(o, "target_column", 1, 1000)
        if o.source_column == o.target_column:
            raise SpecError("data.options.target_column", f"is the source's column too ({o.source_column}); "
                                                          "choose two columns")
        if o.val_path and not path:
            raise SpecError("data.options.val_path", "a validation file needs a training file in data.path")
        if path and not o.val_path and o.val_fraction <= 0:
            raise SpecError("data.options.val_fraction", "must be above 0 unless val_path names a validation file")
        self.level = o.level if o.level != "auto" else ("word" if path or o.kind == "phrases" else "char")
        self.source_vocab: Vocab | None = None
        self.target_vocab: Vocab | None = None
        self.train_pairs: list[tuple[list[int], list[int]]] = []
        self.val_pairs: list[tuple[list[int], list[int]]] = []
        self.val_texts: list[tuple[str, str]] = []  # the validation pairs as read (for BLEU/chrF)
        self._baseline: dict[str, float] = {}

    # -- tokens --------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        if self.reads_pairs() and self.options.lowercase:
            text = text.lower()
        if self.level == "char":
            return list(text)
        return tokenize_words(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Tokens -> text as it is shown and scored: words rejoined with their punctuation
        ("hello , how are you ?" -> "hello, how are you?"; workbench.io.vocab.detokenize_words)."""
        return "".join(tokens) if self.level == "char" else detokenize_words(tokens)

    def encode_source(self, text: str) -> Batch:
        """A user's source text -> Batch (x [1, S], lengths); y/y_in hold only <eos>/<bos>."""
        ids, _ = self._source_ids(self.tokenize(text))
        if not ids:
            raise ValueError("the source text is empty")
        return self._batch([(ids, [])])

    # -- the extended vocabulary of a copy model (model.copy; See et al. 2017) ------------------
    # A copy model reads the source words its vocabulary lacks as <unk> but can copy them: the
    # j-th distinct such word of a source has the id Vs + j (Vs = the source vocabulary's
    # size), the copy writes it as Vt + j (Vt = the target vocabulary's), and the output is
    # turned back into text with the source's own words (target_tokens). Targets use Vt + j
    # where their word is one of the source's, so training learns to copy words it never
    # saw. Other models read the plain ids (<unk>). The model's side: RecurrentModel._build.
    extended_vocab = False  # set by check_model for a copy model

    def source_oovs(self, tokens: Sequence[str]) -> list[str]:
        """The source's words the source vocabulary lacks, in order of first appearance."""
        return list(dict.fromkeys(t for t in tokens if t not in self.source_vocab.index))

    def _source_ids(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
        """Source tokens -> (ids, the extended words): plain ids (<unk>) unless the model copies."""
        if not self.extended_vocab:
            return self.source_vocab.encode(tokens), []
        oovs = self.source_oovs(tokens)
        Vs, where = len(self.source_vocab), {w: j for j, w in enumerate(oovs)}
        return [self.source_vocab.index[t] if t not in where else Vs + where[t] for t in tokens], oovs

    def target_tokens(self, ids: Sequence[int], source: str = "") -> list[str]:
        """Output ids -> tokens, an extended id (>= the target vocabulary) as the source's word."""
        Vt, tokens = len(self.target_vocab), self.target_vocab.tokens
        oovs = self.source_oovs(self.tokenize(source)) if any(i >= Vt for i in ids) else []
        return [tokens[i] if i < Vt else (oovs[i - Vt] if i - Vt < len(oovs) else UNK) for i in ids]

    def decode_target(self, ids, source: str = "") -> str:
        """Output ids -> text, stopping at <eos>; ``source``: the text the ids answer (a copy
        model's extended ids are its words)."""
        words = []
        for token in self.target_tokens([int(i) for i in ids], source):
            if token == EOS:
                break
            if token not in (PAD, BOS):
                words.append(token)
        return self.detokenize(words)

    def decode_rules(self) -> dict:
        """The rules every decoding of this task's outputs obeys (model.decoding_rules'
        arguments, eos aside): greedy, sampled, beam search and a streamed reply alike."""
        o = self.options
        # <pad> and <bos> are never a next token (a sampled reply could write them); <unk> on request
        never = (PAD, BOS, UNK) if o.no_unk else (PAD, BOS)
        banned = [self.target_vocab.index[t] for t in never if t in self.target_vocab]
        rules = {"no_repeat_ngram": o.no_repeat_ngram, "min_length": o.min_length, "banned": tuple(banned)}
        if getattr(o, "no_repeat_word", False) and self.level != "char":
            # "color color": a word written twice in a row (no n-gram rule stops it); punctuation
            # may repeat ("...", "!!"), as people write it
            rules["no_repeat_token"] = True
            rules["repeatable"] = tuple(i for i, t in enumerate(self.target_vocab.tokens)
                                        if t and not (t[0].isalnum() or t[0] == "_"))
        return rules

    @torch.no_grad()
    def mbr_decode(self, model, x: torch.Tensor, lengths: torch.Tensor | None, sources: Sequence[str], samples: int,
                   max_len: int, temperature: float = 1.0, seed: int = 0, beta: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Minimum Bayes risk decoding (Eikema & Aziz 2020): ``samples`` replies per source
        drawn from the model at ``temperature`` by model.generate (the one decoding path,
        under decode_rules), and per source the one with the highest mean chrF to the
        others (mbr_choice, chrF's ``beta``). x [B, S], lengths [B], ``sources``: the B source texts (a
        copy model's extended ids are their words). Returns like model.generate: (tokens
        [B, L], attention [B, L, S] or None) of the chosen samples."""
        B, N = x.shape[0], samples
        gen = torch.Generator(device=x.device).manual_seed(seed)
        rows = torch.arange(B, device=x.device).repeat_interleave(N)  # source b's samples: rows b*N .. b*N+N-1
        tokens, attention = model.generate(x[rows], max_len, lengths[rows] if lengths is not None else None,
                                           temperature=temperature, generator=gen, **self.decode_rules())
        ids = tokens.tolist()
        texts = [self.decode_target(row, sources[i // N] if i // N < len(sources) else "") for i, row in enumerate(ids)]
        chosen = torch.tensor([b * N + mbr_choice(texts[b * N:(b + 1) * N], beta) for b in range(B)], device=x.device)
        return tokens[chosen], attention[chosen] if attention is not None else None

    def beam_options(self) -> dict:
        """The options of model.beam_search this task's outputs are decoded with."""
        return {"length_penalty": self.options.length_penalty, **self.decode_rules()}

    # -- life cycle ----------------------------------------------------------------------------
    def _generate(self, rng: random.Random, count: int, validation: bool) -> list[tuple[str, str]]:
        sample = {"dates": sample_date, "numbers": sample_number, "phrases": sample_phrase}[self.options.kind]
        return [sample(rng, validation) for _ in range(count)]

    def _encode_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
        out = []
        for s, t in pairs:
            source, oovs = self._source_ids(self.tokenize(s))
            target = self.target_vocab.encode(self.tokenize(t))
            if oovs:  # a target word the target vocabulary lacks, copied from the source: Vt + j
                Vt, where = len(self.target_vocab), {w: j for j, w in enumerate(oovs)}
                target = [Vt + where[w] if w not in self.target_vocab.index and w in where else i
                          for i, w in zip(target, self.tokenize(t))]
            out.append((source, target))
        return out

    def _read_file_pairs(self, path: str) -> list[tuple[str, str]]:
        o = self.options
        return self._within_max_len(path, [(p.source, p.target)
                                           for p in read_pairs(path, o.source_column, o.target_column)])

    def _within_max_len(self, path: str, items: list, pair_of=None) -> list:
        """The items whose (source, target) pair, ``pair_of(item)`` (default: the item
        itself), is at most data.options.max_len tokens on each side; refuses ``path`` when
        none is."""
        limit = self.options.max_len
        pair_of = pair_of or (lambda item: item)
        kept = [item for item in items if all(len(self.tokenize(side)) <= limit for side in pair_of(item))]
        if not kept:
            raise DataError(path, f"every pair is longer than data.options.max_len = {limit} tokens")
        return kept

    def _split_file(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(training pairs, validation pairs) as text, from data.path (and val_path)."""
        o = self.options
        pairs = self._read_file_pairs(self.path)
        if o.val_path:
            return pairs, self._read_file_pairs(o.val_path)
        if len(pairs) < 2:
            raise DataError(self.path, "holds one pair; a train/validation split needs at least 2 "
                                       "(or set data.options.val_path)")
        random.Random(0).shuffle(pairs)  # fixed: the same split for every seed
        cut = min(max(int(round(len(pairs) * (1 - o.val_fraction))), 1), len(pairs) - 1)
        return pairs[:cut], pairs[cut:]

    def reads_pairs(self) -> bool:
        """Whether the data is a fixed set of pairs (a file: epochs, shuffled batches)
        rather than generated without end."""
        return bool(self.path)

    def prepare(self) -> None:
        o = self.options
        if not self.reads_pairs():
            if self.source_vocab is None and o.kind == "phrases":
                every = all_phrases()  # the grammar's whole vocabulary (or its characters)
                self.source_vocab = Vocab.build(Counter(t for s, _ in every for t in self.tokenize(s)),
                                                specials=(PAD, UNK))
                self.target_vocab = Vocab.build(Counter(t for _, s in every for t in self.tokenize(s)),
                                                specials=ALL_SPECIALS)
            elif self.source_vocab is None:
                self.source_vocab = Vocab([PAD, UNK] + list(_BUILTIN_SOURCE_CHARS))
                self.target_vocab = Vocab(list(ALL_SPECIALS) + list(_BUILTIN_TARGET_CHARS))
            val = self._generate(random.Random(self.seed * 7919 + 31), o.val_size, validation=True)
            sample = self._generate(random.Random(self.seed * 7919 + 37), 2000, validation=False)
            self.val_pairs = self._encode_pairs(val)
            if o.kind == "phrases":
                self.val_texts = list(val)  # sentences: scored by BLEU/chrF in `workbench eval`
            train_sample = self._encode_pairs(sample)
        else:
            train, val = self._split_file()
            if self.source_vocab is None:
                self.source_vocab = Vocab.build(Counter(t for s, _ in train for t in self.tokenize(s)),
                                                specials=(PAD, UNK), min_freq=o.min_freq)
                self.target_vocab = Vocab.build(Counter(t for _, s in train for t in self.tokenize(s)),
                                                specials=ALL_SPECIALS, min_freq=o.min_freq)
            self.train_pairs = self._encode_pairs(train)
            self.val_pairs = self._encode_pairs(val)
            self.val_texts = list(val)
            train_sample = self.train_pairs
        eos = self.target_vocab.id("<eos>")
        self._baseline = position_mode_baseline([t + [eos] for _, t in train_sample],
                                                [t + [eos] for _, t in self.val_pairs])

    def artifacts(self) -> dict:
        return {"source_vocab": self.source_vocab.to_json(), "target_vocab": self.target_vocab.to_json(),
                "level": self.level, "baseline": self._baseline}

    def restore(self, artifacts: dict) -> None:
        self.source_vocab = restore_vocab(artifacts, "source_vocab")
        self.target_vocab = restore_vocab(artifacts, "target_vocab")
        self.level = artifacts.get("level", self.level)
        self._baseline = dict(artifacts.get("baseline", {}))
        self.prepared = True

    def use_eval_file(self, path: str) -> None:
        self.val_texts = self._read_file_pairs(path)
        self.val_pairs = self._encode_pairs(self.val_texts)

    # -- decoded text scored with sacrebleu (`workbench eval`) ------------------------------
    def _as_compared(self, text: str) -> str:
        """A reference or a baseline's output as it is scored: the text itself, lowercased
        when the model reads lowercased text, runs of spaces made one. Outputs are the
        detokenised tokens; sacrebleu tokenises both sides alike (its 13a tokenizer)."""
        if self.reads_pairs() and self.options.lowercase:
            text = text.lower()
        return " ".join(text.split())

    def decode_outputs(self, model, device, batch_size: int, max_items: int, beam: int = 0, mbr: int = 0) -> list[str]:
        """The validation sources decoded greedily (beam 0 or 1), by beam search, or by
        minimum Bayes risk over ``mbr`` > 1 samples (mbr_decode), as text."""
        outputs = []
        for b in range(0, min(len(self.val_pairs), max_items), batch_size):
            batch = self._batch(self.val_pairs[b:b + batch_size]).to(device)
            max_len = int(batch.y.shape[1]) * 2 + 10
            sources = [s for s, _ in self.val_texts[b:b + batch.x.shape[0]]] if self.val_texts else []
            if mbr > 1:
                tokens, _ = self.mbr_decode(model, batch.x, batch.lengths, sources, mbr, max_len, seed=b)
            elif beam > 1:
                tokens, _ = model.beam_search(batch.x, beam, max_len, batch.lengths, **self.beam_options())
            else:
                tokens, _ = model.generate(batch.x, max_len, batch.lengths, **self.decode_rules())
            outputs += [self.decode_target(row, sources[i] if i < len(sources) else "")
                        for i, row in enumerate(tokens.tolist())]
        return outputs

    def corpus_metrics(self, model, device, batch_size: int, max_items: int, beam: int, mbr: int = 0) -> dict:
        """BLEU and chrF (sacrebleu) of greedy and beam decoding over the validation pairs,
        and of the copy-the-source baseline: {"metrics": {...}, "baseline": {...}}.
        For sentences (files, generated phrases); dates and numbers are judged by exact match."""
        if not self.val_texts:
            return {}
        texts = self.val_texts[:max_items]
        refs = [self._as_compared(t) for _, t in texts]
        metrics = self.decoded_scores(model, device, batch_size, max_items, beam, mbr,
                                      lambda outputs: text_scores(outputs, refs))
        return {"metrics": metrics, "baseline": text_scores([self._as_compared(s) for s, _ in texts], refs)}

    def decoded_scores(self, model, device, batch_size: int, max_items: int, beam: int, mbr: int, score) -> dict:
        """``score`` (output texts -> {name: value}) of greedy decoding, of beam search
        (names + "_beam") when beam > 1 and of minimum Bayes risk over ``mbr`` > 1 samples
        (names + "_mbr", mbr_decode) over the first ``max_items`` validation sources."""
        metrics = score(self.decode_outputs(model, device, batch_size, max_items))
        if beam > 1:
            scores = score(self.decode_outputs(model, device, batch_size, max_items, beam))
            metrics.update({f"{k}_beam": v for k, v in scores.items()})
            metrics["beam_width"] = float(beam)
        if mbr > 1:
            scores = score(self.decode_outputs(model, device, batch_size, max_items, mbr=mbr))
            metrics.update({f"{k}_mbr": v for k, v in scores.items()})
            metrics["mbr_samples"] = float(mbr)
        return metrics

    # -- shapes ----------------------------------------------------------------------------------
    def model_io(self) -> ModelIO:
        return ModelIO(input_kind="tokens", vocab_size=len(self.source_vocab), output_size=len(self.target_vocab),
                       output_vocab_size=len(self.target_vocab), pad_id=0, bos_id=1, eos_id=2,
                       source_to_target=self.source_to_target(), unk_id=self.source_vocab.unk_id or 0)

    def source_to_target(self) -> tuple[int, ...]:
        """Per source id, the target id of the same token (<unk> where absent; <pad> to
        <pad>): what a copy model (model.copy) writes when it copies a source token."""
        unk = self.target_vocab.unk_id if self.target_vocab.unk_id is not None else 0
        return tuple(self.target_vocab.index.get(t, unk) for t in self.source_vocab.tokens)

    def check_model(self, model: ModelSpec) -> None:
        super().check_model(model)
        check_token_input(model, self.name)
        check_classification_head(model, self.name)
        self.extended_vocab = bool(model.copy)  # see source_oovs: a copy model copies unknown words

    # -- data --------------------------------------------------------------------------------------
    def _batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> Batch:
        x, lengths = pad_sequences([s for s, _ in pairs])  # [B, S], [B]
        y, _ = pad_sequences([t + [2] for _, t in pairs])  # target + <eos>   [B, T]
        y_in, _ = pad_sequences([[1] + t for _, t in pairs])  # <bos> + target  [B, T]
        mask = torch.arange(y.shape[1])[None, :] < torch.tensor([len(t) + 1 for _, t in pairs])[:, None]
        return Batch(x=x, y=y, lengths=lengths, y_in=y_in, mask=mask)

    def epoch_size(self, batch_size: int) -> int | None:
        return math.ceil(len(self.train_pairs) / batch_size) if self.reads_pairs() else None

    def train_batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        if self.reads_pairs():
            lengths = [len(s) for s, _ in self.train_pairs]
            for idx in bucketed_batches(lengths, batch_size, generator):
                yield self._batch([self.train_pairs[i] for i in idx])
            return
        pool = 16  # generate 16 batches' worth, then bucket them by source length
        while True:
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=generator)))
            pairs = self._encode_pairs(self._generate(rng, batch_size * pool, validation=False))
            lengths = [len(s) for s, _ in pairs]
            for idx in bucketed_batches(lengths, batch_size, generator, pool_batches=pool):
                yield self._batch([pairs[i] for i in idx])

    def val_batches(self, batch_size: int, max_batches: int) -> Iterator[Batch]:
        # In file order (built-in: random order), so the first batches are a fair sample.
        for b in range(0, min(len(self.val_pairs), batch_size * max_batches), batch_size):
            chunk = self.val_pairs[b:b + batch_size]
            yield self._batch(chunk)

    # -- loss and metrics -------------------------------------------------------------------------
    # loss, metric_sums, decode_metrics, baseline: GeneratedTokensTask


def check_beam_options(o) -> None:
    check_float(o, "length_penalty", 0.0, 10.0)
    check_int(o, "no_repeat_ngram", 0, 100)
    check_int(o, "min_length", 0, 1000)


def text_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu's defaults, one reference per output), 0-100, and
    the outputs' length in BLEU's tokens over the references' (chrF weighs recall twice
    as much as precision, so outputs longer than the references gain chrF)."""
    import sacrebleu

    bleu = sacrebleu.corpus_bleu(list(hypotheses), [list(references)], force=True)
    return {"bleu": float(bleu.score), "chrf": float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score),
            "length_ratio": bleu.sys_len / max(bleu.ref_len, 1)}


class CorpusStatistics:
    """sacrebleu's sufficient statistics of BLEU and chrF per output, [N, d] each: the
    corpus score of any selection of the outputs (a resampling, a choice per message) is
    the score of their summed statistics, exactly sacrebleu's corpus score of that
    selection, without scoring the texts again."""

    NAMES = ("bleu", "chrf")

    def __init__(self, hypotheses: Sequence[str], references: Sequence[str]):
        import numpy as np
        from sacrebleu.metrics import BLEU, CHRF

        self.metrics = {"bleu": BLEU(force=True), "chrf": CHRF()}
        self.stats = {name: np.array(metric._extract_corpus_statistics(list(hypotheses), [list(references)]),
                                     dtype=np.float64) for name, metric in self.metrics.items()}  # each [N, d]

    def score(self, name: str, rows) -> float:
        """The corpus score ("bleu" or "chrf", 0-100) of the outputs at ``rows`` (indices, repeats allowed)."""
        total = self.stats[name][rows].sum(0)
        return float(self.metrics[name]._compute_score_from_stats([round(v) for v in total]).score)


def paired_bootstrap(hyps_a: Sequence[str], hyps_b: Sequence[str], references: Sequence[str],
                     resamples: int = 1000, seed: int = 0, groups: Sequence[int] | None = None
                     ) -> dict[str, tuple[float, float, float]]:
    """Paired bootstrap over outputs (Koehn 2004): the corpus BLEU and chrF of system A
    minus system B on the same references, and its 95% interval over ``resamples``
    resamplings of the outputs with replacement (the same resampled items for both).
    ``groups`` (one id per output): resample whole groups instead (a cluster bootstrap:
    the exchanges of one conversation are not independent, so resampling them one by one
    gives too narrow an interval). Returns {"bleu": (difference, low, high), "chrf":
    (...)}, 0-100 points; an interval that excludes 0 is a difference significant at the
    5% level (two-sided)."""
    import numpy as np

    if not (len(hyps_a) == len(hyps_b) == len(references)) or not references:
        raise ValueError("the paired bootstrap needs as many outputs of each system as references (and some)")
    if groups is not None and len(groups) != len(references):
        raise ValueError("the paired bootstrap needs one group id per output")
    rng = np.random.default_rng(seed)
    if groups is None:
        idx = list(rng.integers(0, len(references), size=(resamples, len(references))))  # R x [N]
    else:
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        clusters = [np.array(m) for m in members.values()]
        picks = rng.integers(0, len(clusters), size=(resamples, len(clusters)))  # [R, G]
        idx = [np.concatenate([clusters[c] for c in row]) for row in picks]  # R x [about N]
    a, b = CorpusStatistics(hyps_a, references), CorpusStatistics(hyps_b, references)
    out = {}
    for name in CorpusStatistics.NAMES:
        every = np.arange(len(references))
        diff = a.score(name, every) - b.score(name, every)
        diffs = np.array([a.score(name, i) - b.score(name, i) for i in idx])  # [R]
        low, high = np.percentile(diffs, [2.5, 97.5])
        out[name] = (diff, float(low), float(high))
    return out


def mbr_choice(candidates: Sequence[str], beta: float = 1.0) -> int:
    """Minimum Bayes risk selection (Eikema & Aziz 2020): the index of the candidate with
    the highest mean sentence chrF to the other candidates (samples from the model stand
    for its distribution over outputs, so the choice is the consensus one, not the most
    probable); ties go to the first. One candidate: 0. ``beta`` 1 weighs the character
    n-grams' precision and recall alike (symmetric: a candidate gains nothing by being
    long; sacrebleu's default chrF, beta 2, favours long candidates: on the chatbot's dev
    split 1.6-1.8 times the references' length)."""
    from sacrebleu.metrics import CHRF

    n = len(candidates)
    if n < 2:
        return 0
    chrf = CHRF(beta=beta)
    utility = [0.0] * n
    for i in range(n):
        for j in range(n):
            if i != j:
                utility[i] += chrf.sentence_score(candidates[i], [candidates[j]]).score
    return max(range(n), key=lambda i: (utility[i], -i))
