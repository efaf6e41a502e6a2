"""CoNLL-U (Universal Dependencies) reader: word forms and UPOS tags per sentence.

The format (https://universaldependencies.org/format.html): one token per line with
ten tab-separated columns ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC;
sentences end with a blank line; lines starting with '#' are comments. Two kinds of
lines are not words of the sentence's surface tagging and are skipped, as the format
defines: multiword tokens (ID a range "1-2", e.g. English "don't" = "do" + "n't", whose
parts follow as ordinary lines) and empty nodes of enhanced graphs (ID a decimal "1.1").
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from workbench.io.errors import DataError
from workbench.io.text import read_text_file

_INT = re.compile(r"[1-9][0-9]*$")
_RANGE = re.compile(r"[1-9][0-9]*-[1-9][0-9]*$")
_DECIMAL = re.compile(r"[0-9]+\.[1-9][0-9]*$")


@dataclass
class TaggedSentence:
    words: list[str]
    tags: list[str]
    line: int  # where the sentence starts in its file (for messages)


def parse_conllu(text: str, path: str | Path = "<text>") -> list[TaggedSentence]:
    """Sentences of (FORM, UPOS). Raises DataError naming the file and line for a token
    line without ten columns, a bad ID, an ID out of sequence, or an empty FORM/UPOS."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = 1
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            if words:
                sentences.append(TaggedSentence(words, tags, start))
                words, tags = [], []
            continue
        if line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise DataError(path, f"a CoNLL-U token line needs 10 tab-separated columns "
                                  f"(ID FORM LEMMA UPOS ...), found {len(cols)}", number)
        token_id = cols[0]
        if _RANGE.match(token_id) or _DECIMAL.match(token_id):
            continue  # multiword token or empty node: not a word of the tagged sequence
        if not _INT.match(token_id):
            raise DataError(path, f"column 1 (ID) must be a word index like 1, a range like 1-2 or an "
                                  f"empty node like 1.1, found {token_id!r}", number)
        if int(token_id) != len(words) + 1:
            raise DataError(path, f"word ID {token_id} out of sequence (expected {len(words) + 1}; "
                                  "is a blank line missing between sentences?)", number)
        form, upos = cols[1], cols[3]
        if not form:
            raise DataError(path, "column 2 (FORM) is empty", number)
        if not upos or upos == "_":
            raise DataError(path, f"column 4 (UPOS) has no tag ({upos!r}); a tagger needs UPOS tags", number)
        if not words:
            start = number
        words.append(form)
        tags.append(upos)
    if words:
        sentences.append(TaggedSentence(words, tags, start))
    return sentences


def read_conllu(path: str | Path) -> list[TaggedSentence]:
    """Read and parse a CoNLL-U file; a file without a single sentence is refused."""
    text = read_text_file(path, "CoNLL-U file")
    sentences = parse_conllu(text, path)
    if not sentences:
        raise DataError(path, "holds no sentences (only comments or blank lines)")
    return sentences
