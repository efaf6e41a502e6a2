"""Where a preset's ``data.path`` points.

``builtin:NAME`` names a data file shipped inside the package (workbench/builtin/data/,
e.g. ``builtin:timeseries/airline-passengers.csv``): the built-in presets that train on
real files name them so, and train wherever the workbench is installed. Any other path is
the user's: absolute, or relative to the working folder."""
from __future__ import annotations

from pathlib import Path

from workbench import builtin


def resolve_data_path(path: str | Path) -> Path:
    """The file or folder ``path`` names. A ``builtin:`` name that ships nowhere, and any
    other path, come back as written (expanded), so errors name them as the user wrote."""
    text = str(path)
    if text.startswith(builtin.DATA_PREFIX):
        found = builtin.data_path(text[len(builtin.DATA_PREFIX):])
        return found if found.exists() else Path(text)
    return Path(path).expanduser()
