"""CSV or TSV files with a text column and a label column (sequence classification).

The first row is the header naming the columns; the task's options say which column
holds the text and which the label (e.g. ``text`` and ``label``, or ``review`` and
``sentiment``). The delimiter is a tab for .tsv/.tab files, else whichever of tab,
comma and semicolon the header line uses. Quoted fields may hold delimiters and line
breaks, as CSV allows.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from workbench.io.errors import DataError
from workbench.io.text import read_text_file

csv.field_size_limit(16 * 1024 * 1024)


@dataclass
class LabelledText:
    text: str
    label: str
    line: int


def _delimiter(path: Path, header: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    counts = {d: header.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_labelled_text(path: str | Path, text_column: str, label_column: str) -> list[LabelledText]:
    """Rows of (text, label). DataError names the file and line for a missing column,
    a row with the wrong number of fields, or an empty text or label."""
    path = Path(path)
    text = read_text_file(path, "CSV/TSV file")
    header_line = text.split("\n", 1)[0]
    delimiter = _delimiter(path, header_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            shown = ", ".join(repr(h) for h in header[:12]) + (" ..." if len(header) > 12 else "")
            raise DataError(path, f"has no column {missing[0]!r} (the header row names: {shown}); set the "
                                  "task's text_column and label_column options to the right names", 1)
        ti, li = header.index(text_column), header.index(label_column)
        rows: list[LabelledText] = []
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise DataError(path, f"has {len(row)} fields where the header has {len(header)} "
                                      f"(delimiter {delimiter!r}; is a quote unbalanced?)", start)
            sample, label = row[ti].strip(), row[li].strip()
            if not sample:
                raise DataError(path, f"the text column {text_column!r} is empty", start)
            if not label:
                raise DataError(path, f"the label column {label_column!r} is empty", start)
            rows.append(LabelledText(sample, label, start))
    except csv.Error as exc:
        raise DataError(path, f"is not valid CSV: {exc}", reader.line_num) from None
    if not rows:
        raise DataError(path, "has a header but no rows")
    return rows
