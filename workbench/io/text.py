"""Plain UTF-8 text files, and the checks every text-based reader shares.

``read_text_file`` is the one gate every text importer (plain text, CoNLL-U, TSV pairs,
CSV/TSV with labels) goes through: a missing file, a folder, an empty file, a binary
file and text that is not UTF-8 are refused with a DataError naming the file and the
line. No torch here: the GUI may call it to preview a file.
"""
from __future__ import annotations

from pathlib import Path

from workbench.io.errors import DataError
from workbench.io.paths import resolve_data_path

# Refuse files beyond this size outright: a text corpus for this workbench is megabytes;
# gigabytes would not fit in memory as Python strings anyway.
MAX_TEXT_BYTES = 512 * 1024 * 1024
# Control characters that never occur in text (NUL, and the C0 codes other than
# tab, newline, vertical tab, form feed and carriage return) mark a binary file.
_BINARY_BYTES = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13))


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_text_file(path: str | Path, what: str = "text file") -> str:
    """The file's text (a UTF-8 byte-order mark dropped, line ends kept as "\\n").

    Raises DataError naming the file (and the line) when it is missing, a folder,
    empty or only whitespace, binary, or not UTF-8."""
    path = resolve_data_path(path)  # builtin:NAME: a file shipped in the package
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(path, f"the {what} does not exist") from None
    except OSError as exc:
        raise DataError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise DataError(path, f"is a folder, not a {what}")
    if size > MAX_TEXT_BYTES:
        raise DataError(path, f"is {size / 2**20:.0f} MiB; a {what} may be at most {MAX_TEXT_BYTES // 2**20} MiB")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot read the {what}: {exc.strerror or exc}") from None
    if not data.strip():
        raise DataError(path, f"the {what} is empty")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # Binary data: a control byte that text never holds (UTF-16 text has NULs too,
    # and is refused here with the same advice).
    first = min((i for i in (data.find(bytes([b])) for b in _BINARY_BYTES) if i >= 0), default=-1)
    if first >= 0:
        raise DataError(path, f"is a binary file, not a {what} (byte 0x{data[first]:02x} at offset {first}); "
                        "save it as UTF-8 text", _line_of(data, first))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(data, exc.start)
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(path, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at column {column}); "
                        "re-save it as UTF-8", line) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_train_val(text: str, val_fraction: float) -> tuple[str, str]:
    """The first (1 - val_fraction) of the text for training, the rest for validation
    (the end is held out, never shuffled: a language model must not see the future)."""
    cut = int(round(len(text) * (1.0 - val_fraction)))
    return text[:cut], text[cut:]
