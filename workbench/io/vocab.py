"""Vocabularies, tokenising, padding and length bucketing, shared by every text task.

Special tokens always come first and in this order, so that the ids a model was built
with (ModelIO.pad_id / bos_id / eos_id = 0 / 1 / 2) hold for every task:

    0 <pad>   padding: never counted in a loss or a metric (masks select real positions)
    1 <bos>   start of a generated sequence (decoder input at step 0)
    2 <eos>   end of a generated sequence
    3 <unk>   anything not in the vocabulary

A vocabulary may leave out the ones it does not need (``specials=``), but the ones it
keeps keep their order. ``to_json``/``from_json`` carry it in a run's task.json.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
ALL_SPECIALS = (PAD, BOS, EOS, UNK)

# Words and single punctuation marks: "Don't stop." -> ["Don", "'", "t", "stop", "."]
_WORD_RE = re.compile(r"\w+|[^\w\s]")


def tokenize_words(text: str, lowercase: bool = False) -> list[str]:
    """Word-level tokens: runs of letters/digits, and each other non-space character."""
    if lowercase:
        text = text.lower()
    return _WORD_RE.findall(text)


# Detokenising: marks written against the word before them, and ones the next word is
# written against (what tokenize_words split off, put back as English and French print it).
_CLOSING = frozenset(".,!?;:%)]}…")
_OPENING = frozenset("([{$")
_APOSTROPHES = frozenset("'’")
_JOINERS = frozenset("-/")  # "well - known" -> "well-known", "and / or" -> "and/or"


def _space_before(tokens: Sequence[str], i: int, quotes_open: bool) -> bool:
    """Whether tokens[i] is written with a space before it. Looks only behind, so a text
    grows by whole pieces as tokens arrive (streamed replies): see detokenize_words."""
    tok, prev = tokens[i], tokens[i - 1]
    before = tokens[i - 2] if i >= 2 else ""
    word, prev_word = tok[:1].isalnum(), prev[-1:].isalnum()
    if tok in _CLOSING or prev in _OPENING:
        return False
    if tok in _APOSTROPHES:  # "don ' t" -> "don't"; after a space it opens a quote
        return not prev_word
    if prev in _APOSTROPHES:  # the rest of "don't", "l'homme", or a quoted word
        return False
    if tok == '"':  # the opening one of a pair takes the space, the closing one none
        return not quotes_open
    if prev == '"' and quotes_open:
        return False
    if (tok in _JOINERS and prev_word) or (prev in _JOINERS and before[-1:].isalnum() and word):
        return False
    if before.isdigit() and tok.isdigit() and (prev == "." or prev == "," and len(tok) == 3):
        return False  # "3 . 14" -> "3.14", "1 , 000" -> "1,000"
    return True


def detokenize_words(tokens: Sequence[str]) -> str:
    """Word tokens (tokenize_words) -> text: "hello , how are you ?" -> "hello, how are
    you?", "i don ' t know" -> "i don't know". Undoes tokenize_words except where the
    original spacing is lost ("a - b" comes back as "a-b"). A prefix of the tokens gives
    a prefix of the text."""
    parts: list[str] = []
    quotes_open = False
    for i, tok in enumerate(tokens):
        if i and _space_before(tokens, i, quotes_open):
            parts.append(" ")
        parts.append(tok)
        if tok == '"':
            quotes_open = not quotes_open
    return "".join(parts)


class Vocab:
    """token <-> id. Unknown tokens map to <unk> when the vocabulary has one."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a vocabulary cannot hold the same token twice")
        self.unk_id = self.index.get(UNK)
        self.pad_id = self.index.get(PAD)

    @classmethod
    def build(cls, counts: Counter | Iterable[str], specials: Sequence[str] = ALL_SPECIALS, min_freq: int = 1,
              max_size: int = 0) -> Vocab:
        """Specials first, then tokens by falling frequency (ties alphabetical, so the
        same data always gives the same ids). ``max_size`` counts the specials too."""
        if not isinstance(counts, Counter):
            counts = Counter(counts)
        ordered = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                         key=lambda t: (-counts[t], t))
        tokens = list(specials) + ordered
        if max_size:
            tokens = tokens[:max(max_size, len(specials))]
        return cls(tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def id(self, token: str) -> int:
        found = self.index.get(token)
        if found is not None:
            return found
        if self.unk_id is None:
            raise KeyError(token)
        return self.unk_id

    def encode(self, tokens: Iterable[str]) -> list[int]:
        index, unk = self.index, self.unk_id
        if unk is None:
            return [index[t] for t in tokens]
        return [index.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int], strip_specials: bool = True) -> list[str]:
        """ids -> tokens; with strip_specials, stop at <eos> and drop <pad>/<bos>."""
        out = []
        for i in ids:
            i = int(i)
            token = self.tokens[i] if 0 <= i < len(self.tokens) else UNK
            if strip_specials:
                if token == EOS:
                    break
                if token in (PAD, BOS):
                    continue
            out.append(token)
        return out

    def to_json(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def from_json(cls, raw, what: str = "vocabulary") -> Vocab:
        if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
            raise ValueError(f"the {what} in task.json must be a list of strings")
        return cls(raw)


# ----------------------------------------------------------------------------- padding


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0, min_len: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Lists of ids -> (ids [B, T] padded with pad_id, lengths [B])."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    T = max(int(lengths.max()) if len(seqs) else 0, min_len)
    out = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """[B] -> [B, T] bool, True at real positions."""
    return torch.arange(T)[None, :] < lengths[:, None]


BOW, EOW = "<bow>", "<eow>"  # word boundaries in character sequences


def char_matrix(words: Sequence[str], char_vocab: Vocab, max_chars: int) -> list[list[int]]:
    """Each word's character ids, cut to max_chars (keeping the start and the end, where
    prefixes and suffixes live). When the vocabulary holds <bow> and <eow>, they wrap
    each word, so that a character window can tell an ending ("ed<eow>") or a capital
    at the start ("<bow>Th") from the same letters inside a word."""
    bow, eow = char_vocab.index.get(BOW), char_vocab.index.get(EOW)
    out = []
    for w in words:
        if len(w) > max_chars:
            head = (max_chars + 1) // 2
            w = w[:head] + w[len(w) - (max_chars - head):]
        ids = char_vocab.encode(w)
        out.append([bow, *ids, eow] if bow is not None and eow is not None else ids)
    return out


def pad_words_with_chars(word_ids: Sequence[Sequence[int]], char_ids: Sequence[Sequence[Sequence[int]]]
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The 'embedding_chars' input: -> (x [B, T, 1 + C] long, lengths [B]); x[..., 0] is
    the word id, x[..., 1:] its character ids; 0 pads words and characters."""
    lengths = torch.tensor([len(s) for s in word_ids], dtype=torch.long)
    T = max(int(lengths.max()), 1)
    C = max((len(c) for sent in char_ids for c in sent), default=1)
    x = torch.zeros(len(word_ids), T, 1 + max(C, 1), dtype=torch.long)
    for i, (ws, cs) in enumerate(zip(word_ids, char_ids)):
        if ws:
            x[i, :len(ws), 0] = torch.as_tensor(ws, dtype=torch.long)
        for t, c in enumerate(cs):
            if c:
                x[i, t, 1:1 + len(c)] = torch.as_tensor(c, dtype=torch.long)
    return x, lengths


# ----------------------------------------------------------------------------- bucketing


def bucketed_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                     pool_batches: int = 50) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding stays low.

    With a generator (training): shuffle, cut into pools of ``pool_batches`` batches,
    sort each pool by length, cut it into batches, and shuffle the batches. Without
    (validation): sorted by length, the same every call."""
    n = len(lengths)
    if n == 0:
        return []
    if generator is None:
        order = sorted(range(n), key=lambda i: (lengths[i], i))
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    perm = torch.randperm(n, generator=generator).tolist()
    pool = batch_size * pool_batches
    batches = []
    for start in range(0, n, pool):
        chunk = sorted(perm[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def padding_fraction(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Share of padded positions over all batches (0 = no waste)."""
    real = sum(lengths)
    total = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    return 1.0 - real / total if total else 0.0
