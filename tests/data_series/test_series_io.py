"""CSV time-series import: the real files, column choice, and a DataError naming the file,
the line and the column for every kind of bad input."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.io.errors import DataError
from workbench.io.series import read_series


def _csv(tmp_path, text: str, name: str = "s.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _error(path, **kw) -> DataError:
    with pytest.raises(DataError) as info:
        read_series(path, **kw)
    return info.value


def test_real_files(shared_data):
    folder = shared_data / "timeseries"
    air = read_series(folder / "airline-passengers.csv")
    assert len(air) == 144 and air.names == ["Passengers"] and air.time_name == "Month"
    assert air.time_kind == "month" and air.values[:3, 0].tolist() == [112, 118, 132] and air.times[-1] == "1960-12"
    sun = read_series(folder / "monthly-sunspots.csv")
    assert len(sun) == 2820 and sun.values[0, 0] == pytest.approx(58.0) and sun.values[-1, 0] == pytest.approx(33.4)
    temps = read_series(folder / "daily-min-temperatures.csv", gaps="ignore")
    assert len(temps) == 3650 and temps.values[0, 0] == pytest.approx(20.7) and temps.time_kind == "date"
    assert temps.gaps == [1462, 2922]  # 31 December 1984 and 1988 are not in the file
    error = _error(folder / "daily-min-temperatures.csv")  # gaps are an error by default
    assert error.line == 1462 and "'1984-12-30' is followed by '1985-01-01'" in str(error)
    filled = read_series(folder / "daily-min-temperatures.csv", gaps="fill")
    assert len(filled) == 3652
    i = filled.times.index("1984-12-31")
    assert filled.lines[i] == 0  # an inserted row
    assert filled.values[i, 0] == pytest.approx((filled.values[i - 1, 0] + filled.values[i + 1, 0]) / 2)


def test_column_choice_separators_and_quotes(tmp_path):
    path = _csv(tmp_path, 'when;"a";b;c\r\n1;1.5;10;x\r\n2;2.5;20;y\r\n3;3.5;30;z\r\n\r\n')
    s = read_series(path, value_columns=["b", "A"])  # names match case-insensitively too
    assert s.names == ["b", "a"] and s.time_name == "when" and s.time_kind == "number"
    assert s.values.tolist() == [[10, 1.5], [20, 2.5], [30, 3.5]]
    assert s.lines.tolist() == [2, 3, 4]
    s = read_series(path, time_column="b", value_columns=["a"])
    assert s.time_name == "b" and s.values[:, 0].tolist() == [1.5, 2.5, 3.5]
    only = read_series(_csv(tmp_path, "3\n4\n5\n", "plain.csv"))  # one column, no header, no time
    assert only.time_name is None and only.names == ["1"] and only.values[:, 0].tolist() == [3, 4, 5]


@pytest.mark.parametrize("text,line,words", [
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02",\n"1981-01-03",18.8\n', 3, ["'Temp'", "missing"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02",?0.2\n', 3, ["'Temp'", "'?0.2' is not a number"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02",nan\n', 3, ["'Temp'", "not a finite number"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n\n"1981-01-03",18.8\n', 3, ["empty", "gap"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02",19\n"1981-01-05",18.8\n"1981-01-06",18\n', 4,
     ["'Date'", "gap", "2 steps of 1 day missing"]),
    ('"Date","Temp"\n"1981-01-02",20.7\n"1981-01-01",18.8\n', 3, ["'Date'", "goes back in time"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-01",18.8\n', 3, ["'Date'", "repeats"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"yesterday",18.8\n', 3, ["'Date'", "'yesterday' is not a time"]),
    ('"Date","Temp"\n"1981-01-01",20.7\n"1981-01-02"\n', 3, ["1 field", "'Temp' is missing"]),
    ('"Month","Passengers"\n"1949-01",112\n"1949-02",118\n"1949-04",132\n"1949-05",130\n', 4,
     ["'Month'", "1 step of 1 month"]),
])
def test_bad_rows_name_file_line_and_column(tmp_path, text, line, words):
    path = _csv(tmp_path, text)
    error = _error(path)
    assert error.line == line and error.path == str(path)
    message = str(error)
    assert message.startswith(f"{path}, line {line}: ")
    for w in words:
        assert w in message, message


def test_gaps_can_be_ignored_or_filled(tmp_path):
    path = _csv(tmp_path, "t,v\n1,1.0\n2,2.0\n5,5.0\n6,6.0\n")
    assert len(read_series(path, gaps="ignore")) == 4
    filled = read_series(path, gaps="fill")
    assert filled.values[:, 0].tolist() == [1, 2, 3, 4, 5, 6] and filled.times[2:4] == ["3", "4"]
    months = _csv(tmp_path, "m,v\n2020-11,1\n2021-02,4\n2021-03,5\n", "m.csv")
    assert read_series(months, gaps="fill").times == ["2020-11", "2020-12", "2021-01", "2021-02", "2021-03"]


@pytest.mark.parametrize("content,line,words", [
    (b"", None, "empty"),
    (b"\n\n  \n", None, "empty"),
    (b'"Date","Temp"\n', 1, "no rows"),
    (b'"Date","Temp"\n"1981-01-01",\xff20\n', 2, "not UTF-8"),
    (b"PK\x03\x04\x00\x00binary", 1, "binary"),
])
def test_unreadable_files(tmp_path, content, line, words):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    error = _error(path)
    assert error.line == line and words in str(error) and str(path) in str(error)


def test_wrong_columns_list_the_columns(tmp_path, shared_data):
    path = shared_data / "timeseries" / "airline-passengers.csv"
    error = _error(path, value_columns=["Temp"])
    assert error.line == 1 and "no value column named 'Temp'" in str(error) and "'Passengers'" in str(error)
    error = _error(path, time_column="Date")
    assert "no time column named 'Date'" in str(error)
    error = _error(path, time_column="Month", value_columns=["Month"])
    assert "both the time and a value column" in str(error)
    assert "no such file" in str(_error(tmp_path / "nope.csv"))
    assert "folder" in str(_error(tmp_path))


def test_values_are_float64_in_file_units(tmp_path):
    path = _csv(tmp_path, "t,v\n1,0.1\n2,1e3\n3,-2.5\n")
    s = read_series(path)
    assert s.values.dtype == np.float64 and s.values[:, 0].tolist() == [0.1, 1000.0, -2.5]
