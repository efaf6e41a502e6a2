"""Vocabularies, padding and bucketing: deterministic ids, specials in place, padding low."""
from __future__ import annotations

from collections import Counter

import torch

from workbench.io.vocab import (
    ALL_SPECIALS,
    PAD,
    UNK,
    Vocab,
    bucketed_batches,
    char_matrix,
    length_mask,
    pad_sequences,
    pad_words_with_chars,
    padding_fraction,
    tokenize_words,
)


def test_vocab_order_is_specials_then_frequency_then_alphabet():
    v = Vocab.build(Counter({"b": 3, "a": 3, "c": 5, "rare": 1}), min_freq=2)
    assert v.tokens == list(ALL_SPECIALS) + ["c", "a", "b"]
    assert v.id("<pad>") == 0 and v.id("<bos>") == 1 and v.id("<eos>") == 2 and v.unk_id == 3
    assert v.encode(["a", "rare", "zzz"]) == [v.id("a"), 3, 3]
    assert v.decode([1, v.id("c"), v.id("a"), 2, v.id("b")]) == ["c", "a"]  # bos dropped, stops at eos
    assert v.decode([0, v.id("b")], strip_specials=False) == ["<pad>", "b"]
    again = Vocab.from_json(v.to_json())
    assert again.tokens == v.tokens
    capped = Vocab.build(Counter({"x": 9, "y": 8, "z": 7}), specials=(PAD, UNK), max_size=3)
    assert capped.tokens == [PAD, UNK, "x"]


def test_tokenize_words_splits_punctuation():
    assert tokenize_words("Don't stop, NOW!", lowercase=True) == ["don", "'", "t", "stop", ",", "now", "!"]


def test_padding_and_masks():
    x, lengths = pad_sequences([[5, 6, 7], [8]], pad_id=0)
    assert x.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]
    assert length_mask(lengths, 3).tolist() == [[True, True, True], [True, False, False]]


def test_words_with_characters_layout():
    chars = Vocab([PAD, UNK, "a", "b", "c"])
    rows = char_matrix(["abc", "abcabcab"], chars, max_chars=4)
    assert rows[0] == [2, 3, 4] and rows[1] == chars.encode("abab")  # keeps start and end: "ab" + "ab"
    marked = Vocab([PAD, UNK, "<bow>", "<eow>", "a"])
    assert char_matrix(["aa"], marked, max_chars=4) == [[2, 4, 4, 3]]  # word boundaries when the vocab has them
    x, lengths = pad_words_with_chars([[7, 9], [4]], [rows, [[2]]])
    assert x.shape == (2, 2, 5) and lengths.tolist() == [2, 1]
    assert x[0, 0].tolist() == [7, 2, 3, 4, 0] and x[1, 1].tolist() == [0, 0, 0, 0, 0]


def test_bucketing_covers_every_item_once_and_keeps_padding_low():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 60, (2000,), generator=g).tolist()
    batches = bucketed_batches(lengths, 32, generator=g)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(2000))
    random_batches = [list(range(i, min(i + 32, 2000))) for i in range(0, 2000, 32)]
    assert padding_fraction(lengths, batches) < 0.1 < padding_fraction(lengths, random_batches)
    # the same seed gives the same batches; validation batches need no generator and repeat
    assert bucketed_batches(lengths, 32, torch.Generator().manual_seed(5)) == \
        bucketed_batches(lengths, 32, torch.Generator().manual_seed(5))
    assert bucketed_batches(lengths, 32) == bucketed_batches(lengths, 32)
