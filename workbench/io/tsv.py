"""Tab-separated sentence pairs: ``source<TAB>target`` per line.

The format of the widely used translation tutorials (the Tatoeba/Anki files such as
``fra.txt``: "Go.<TAB>Va !<TAB>CC-BY 2.0 (France) Attribution: ...") and of chatbot
question/answer lists. The first two columns are the pair; further columns (the
attribution) are ignored. Blank lines and lines starting with '#' are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workbench.io.errors import DataError
from workbench.io.text import read_text_file


@dataclass
class Pair:
    source: str
    target: str
    line: int


def parse_pairs(text: str, path: str | Path = "<text>") -> list[Pair]:
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(path, "expected two tab-separated columns, source<TAB>target, found one "
                                  "(is the file comma- or space-separated?)", number)
        source, target = cols[0].strip(), cols[1].strip()
        if not source:
            raise DataError(path, "the source (column 1) is empty", number)
        if not target:
            raise DataError(path, "the target (column 2) is empty", number)
        pairs.append(Pair(source, target, number))
    return pairs


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pairs file; one without a single pair is refused."""
    pairs = parse_pairs(read_text_file(path, "sentence-pairs file"), path)
    if not pairs:
        raise DataError(path, "holds no source<TAB>target pairs")
    return pairs
