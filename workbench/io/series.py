"""Read a numeric time series from a CSV file: one time column and one or more value columns.

The file needs a header row naming its columns (a file whose first row is all numbers
gets the names "1", "2", ...). The separator (comma, semicolon or tab) is taken from
the header line; quoted fields and Windows line ends are handled by the csv module.

Every value must be a finite number: an empty cell, a blank line inside the series, a
row with too few fields or a value such as "?0.2" is a ``DataError`` naming the file,
the line and the column. When the time column holds dates (YYYY-MM-DD, YYYY-MM,
ISO date-times) or numbers, time must increase, and a step larger than the series'
usual step is a gap; ``gaps`` says what to do about one:

- "error" (default): a DataError naming the line after the gap;
- "ignore": use the rows as they are (e.g. the Melbourne temperatures file leaves out
  31 December in leap years);
- "fill": insert the missing steps, values interpolated linearly.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

from workbench.io.errors import DataError

GAP_MODES = ("error", "ignore", "fill")
MAX_FILE_BYTES = 512 * 1024**2


@dataclass
class Series:
    """A time series read from a file. values: [N, F] in the file's units."""

    path: str
    time_name: str | None  # None: the file has no time column
    names: list[str]  # value columns
    times: list[str]  # the time column's text per row ("" for rows inserted by gaps="fill")
    values: np.ndarray  # [N, F] float64
    lines: np.ndarray  # [N] the file line of each row (0 for inserted rows)
    time_kind: str = "none"  # "date", "month", "datetime", "number" or "none" (not parsed)
    gaps: list[int] = field(default_factory=list)  # file lines that follow a gap (ignore / fill)

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


# ----------------------------------------------------------------------------- time axis


def _parse_time(text: str) -> tuple[str, float] | None:
    """(kind, position on an even axis) for a time label, or None when not understood.
    Dates count days, months count months, date-times count seconds."""
    t = text.strip()
    if not t:
        return None
    if len(t) == 7 and t[4] == "-" and t[:4].isdigit() and t[5:].isdigit():
        month = int(t[5:])
        if 1 <= month <= 12:
            return "month", float(int(t[:4]) * 12 + month - 1)
        return None
    if len(t) == 10 and t[4] == "-" and t[7] == "-":
        try:
            return "date", float(date.fromisoformat(t).toordinal())
        except ValueError:
            return None
    if len(t) > 10 and t[4] == "-" and t[7] == "-":
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            return None
        return "datetime", dt.timestamp() if dt.tzinfo else (dt - datetime(1970, 1, 1)).total_seconds()
    if _is_number(t):
        return "number", float(t)
    return None


def _format_time(kind: str, pos: float, like: str) -> str:
    if kind == "month":
        year, month = divmod(int(round(pos)), 12)
        return f"{year:04d}-{month + 1:02d}"
    if kind == "date":
        return date.fromordinal(int(round(pos))).isoformat()
    if kind == "datetime":
        return (datetime(1970, 1, 1) + timedelta(seconds=pos)).isoformat(sep=" " if " " in like else "T")
    return f"{pos:g}"


def _describe_step(kind: str, step: float) -> str:
    unit = {"month": "month", "date": "day", "datetime": "second"}.get(kind)
    if unit is None:
        return f"{step:g}"
    return f"{step:g} {unit}{'' if step == 1 else 's'}"


# ----------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
    if path.is_dir():
        raise DataError(path, "is a folder, not a CSV file")
    if size > MAX_FILE_BYTES:
        raise DataError(path, f"is {size / 2**20:.0f} MiB: larger than the {MAX_FILE_BYTES // 2**20} MiB a CSV series may be")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise DataError(path, "is empty")
    if b"\x00" in data[:65536]:
        raise DataError(path, "is a binary file, not CSV text", 1 + data[: data.index(b"\x00")].count(b"\n"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = 1 + data[: exc.start].count(b"\n")
        raise DataError(path, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} cannot be decoded)", line) from None


def _delimiter(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def read_series(path: str | Path, time_column: str = "", value_columns: list[str] | None = None,
                gaps: str = "error") -> Series:
    """Read ``path``. ``time_column``: its name ("" = the first column, "-" = none: the
    file holds only values). ``value_columns``: names (empty = every other column)."""
    if gaps not in GAP_MODES:
        raise ValueError(f"gaps must be one of {GAP_MODES}, got {gaps!r}")
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    first = next((i for i, l in enumerate(lines) if l.strip()), None)
    if first is None:
        raise DataError(path, "is empty")
    delimiter = _delimiter(lines[first])
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    # csv.reader yields one row per record; records here never span lines (numbers and
    # short labels), so row i is file line i + 1.
    header = [h.strip() for h in rows[first]]
    has_header = not any(_is_number(h) for h in header[1:]) if len(header) > 1 else not _is_number(header[0])
    if has_header:
        names_in_file = header
        body_start = first + 1
    else:
        names_in_file = [str(i + 1) for i in range(len(header))]
        body_start = first
    if len(set(names_in_file)) != len(names_in_file):
        dup = next(n for n in names_in_file if names_in_file.count(n) > 1)
        raise DataError(path, f"the header names column {dup!r} twice", first + 1)

    def column_index(name: str, role: str) -> int:
        if name in names_in_file:
            return names_in_file.index(name)
        lowered = [n.lower() for n in names_in_file]
        if name.lower() in lowered:
            return lowered.index(name.lower())
        raise DataError(path, f"has no {role} column named {name!r} (columns: "
                              f"{', '.join(repr(n) for n in names_in_file)})", first + 1)

    if time_column == "-" or (not time_column and len(names_in_file) == 1):
        time_idx = None
    elif time_column:
        time_idx = column_index(time_column, "time")
    else:
        time_idx = 0
    if value_columns:
        value_idx = [column_index(n, "value") for n in value_columns]
    else:
        value_idx = [i for i in range(len(names_in_file)) if i != time_idx]
    if not value_idx:
        raise DataError(path, "has no value column: besides the time column "
                              f"{names_in_file[time_idx]!r} there is nothing to forecast", first + 1)
    if time_idx is not None and time_idx in value_idx:
        raise DataError(path, f"column {names_in_file[time_idx]!r} cannot be both the time and a value column", first + 1)

    # Trailing blank lines are fine; a blank line inside the series is a gap.
    last = len(rows)
    while last > body_start and not any(f.strip() for f in rows[last - 1]):
        last -= 1
    values: list[list[float]] = []
    times: list[str] = []
    line_numbers: list[int] = []
    gap_lines: list[int] = []
    width = len(names_in_file)
    needed = max(value_idx + ([time_idx] if time_idx is not None else []))
    for r in range(body_start, last):
        row = rows[r]
        line = r + 1
        if not any(f.strip() for f in row):
            if gaps == "error":
                raise DataError(path, "the line is empty: a gap in the series (remove it, or set "
                                      "data.options.gaps to 'ignore')", line)
            gap_lines.append(line)
            continue
        if len(row) <= needed:
            raise DataError(path, f"has {len(row)} field{'s' if len(row) != 1 else ''} but the header has "
                                  f"{width}: column {names_in_file[needed]!r} is missing", line)
        out = []
        for i in value_idx:
            cell = row[i].strip()
            name = names_in_file[i]
            if not cell:
                raise DataError(path, f"column {name!r}: the value is missing", line)
            try:
                number = float(cell)
            except ValueError:
                raise DataError(path, f"column {name!r}: {cell!r} is not a number", line) from None
            if not math.isfinite(number):
                raise DataError(path, f"column {name!r}: {cell!r} is not a finite number", line)
            out.append(number)
        values.append(out)
        times.append(row[time_idx].strip() if time_idx is not None else str(len(times)))
        line_numbers.append(line)
    if not values:
        raise DataError(path, "holds a header but no rows of values", first + 1)

    series = Series(path=str(path), time_name=names_in_file[time_idx] if time_idx is not None else None,
                    names=[names_in_file[i] for i in value_idx], times=times,
                    values=np.asarray(values, dtype=np.float64), lines=np.asarray(line_numbers, dtype=np.int64),
                    gaps=gap_lines)
    if time_idx is not None:
        _check_time_axis(series, gaps)
    return series


def _check_time_axis(series: Series, gaps: str) -> None:
    """Time must increase; a missing step is a gap (see the module docstring)."""
    path = series.path
    name = series.time_name
    first = _parse_time(series.times[0])
    if first is None:
        return  # free-text labels: the rows' order is the time order
    kind = first[0]
    pos = np.empty(len(series.times))
    for i, label in enumerate(series.times):
        parsed = _parse_time(label)
        if parsed is None or parsed[0] != kind:
            raise DataError(path, f"column {name!r}: {label!r} is not a time like the first row's "
                                  f"{series.times[0]!r}", int(series.lines[i]))
        pos[i] = parsed[1]
    series.time_kind = kind
    if len(pos) < 2:
        return
    diffs = np.diff(pos)
    bad = np.nonzero(diffs <= 0)[0]
    if bad.size:
        i = int(bad[0]) + 1
        word = "repeats" if diffs[i - 1] == 0 else "goes back in time after"
        raise DataError(path, f"column {name!r}: {series.times[i]!r} {word} {series.times[i - 1]!r}: "
                              f"rows must be in time order", int(series.lines[i]))
    # The series' step: its most common time difference (the smallest of equally common ones).
    steps, counts = np.unique(np.round(diffs, 9), return_counts=True)
    step = float(steps[np.argmax(counts)])
    # Calendar months and days are even steps on these axes; allow rounding in floats.
    gap_at = np.nonzero(diffs > step * 1.5 + 1e-9)[0]
    if not gap_at.size:
        return
    if gaps == "error":
        i = int(gap_at[0]) + 1
        missing = int(round(diffs[i - 1] / step)) - 1
        raise DataError(path, f"column {name!r}: a gap: {series.times[i - 1]!r} is followed by {series.times[i]!r}, "
                              f"about {missing} step{'s' if missing != 1 else ''} of {_describe_step(kind, step)} "
                              f"missing (set data.options.gaps to 'fill' to interpolate them or 'ignore' to "
                              f"use the rows as they are)", int(series.lines[i]))
    series.gaps += [int(series.lines[i + 1]) for i in gap_at]
    if gaps == "ignore":
        return
    # fill: an even grid from the first to the last time, values interpolated per column
    count = int(round((pos[-1] - pos[0]) / step)) + 1
    grid = pos[0] + step * np.arange(count)
    known = np.searchsorted(pos, grid - step * 0.25)
    is_known = (known < len(pos)) & (np.abs(pos[np.minimum(known, len(pos) - 1)] - grid) < step * 0.25)
    values = np.stack([np.interp(grid, pos, series.values[:, f]) for f in range(series.values.shape[1])], axis=1)
    times, lines = [], []
    for g, k, ok in zip(grid, known, is_known):
        times.append(series.times[k] if ok else _format_time(kind, float(g), series.times[0]))
        lines.append(int(series.lines[k]) if ok else 0)
    series.values = values
    series.times = times
    series.lines = np.asarray(lines, dtype=np.int64)
