"""Tab-separated sentence pairs: ``source<TAB>target`` per line.

The format of the widely used translation tutorials (the Tatoeba/Anki files such as
``fra.txt``: "Go.<TAB>Va !<TAB>CC-BY 2.0 (France) Attribution: ...") and of chatbot
message/reply lists. By default the first two columns are the pair and further columns
(the attribution) are ignored; ``source_column`` / ``target_column`` (1-based) pick
others, e.g. 2 and 1 to translate the other way. Blank lines and lines starting with
'#' are skipped. A row without the chosen columns (a one-column row: the file is not
tab-separated) is refused naming the file and the line.
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


def parse_pairs(text: str, path: str | Path = "<text>", source_column: int = 1, target_column: int = 2) -> list[Pair]:
    if source_column < 1 or target_column < 1:
        raise ValueError("columns are numbered from 1")
    if source_column == target_column:
        raise DataError(path, f"the source and target are both column {source_column}; choose two columns")
    need = max(source_column, target_column)
    pairs = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise DataError(path, "expected two tab-separated columns, source<TAB>target, found one "
                                  "(is the file comma- or space-separated?)", number)
        if len(cols) < need:
            raise DataError(path, f"has {len(cols)} columns; the pairs are read from columns {source_column} "
                                  f"and {target_column}", number)
        source, target = cols[source_column - 1].strip(), cols[target_column - 1].strip()
        if not source:
            raise DataError(path, f"the source (column {source_column}) is empty", number)
        if not target:
            raise DataError(path, f"the target (column {target_column}) is empty", number)
        pairs.append(Pair(source, target, number))
    return pairs


def read_pairs(path: str | Path, source_column: int = 1, target_column: int = 2) -> list[Pair]:
    """Read a pairs file; one without a single pair is refused."""
    pairs = parse_pairs(read_text_file(path, "sentence-pairs file"), path, source_column, target_column)
    if not pairs:
        raise DataError(path, "holds no source<TAB>target pairs")
    return pairs
