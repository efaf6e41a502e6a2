"""Where a preset's ``data.path`` points.

A relative path is read relative to the working folder first and, failing that,
relative to the project's root, so that a built-in preset naming
``../shared/data/timeseries/airline-passengers.csv`` (the layout the data README
describes) works whichever folder the workbench was started from."""
from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_data_path(path: str | Path) -> Path:
    """The file or folder ``path`` names; unchanged (so errors name it as the user
    wrote it) when it exists nowhere."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    candidate = PROJECT_ROOT / p
    if candidate.exists():
        return candidate.resolve()
    return p
