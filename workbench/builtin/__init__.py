"""What ships inside the package: the built-in presets, the window's icons and style
sheet, and the small data files that built-in presets train on.

    workbench/builtin/presets/*.json    built-in presets (read-only; `workbench presets`)
    workbench/builtin/icons/*.svg       the window's icons (app.svg: the application's)
    workbench/builtin/style.qss         the window's style sheet
    workbench/builtin/data/             data files a preset names as ``builtin:RELATIVE``
                                        (origin and licence in data/README.md)

They are package data, found with importlib.resources wherever the package is installed
(a wheel, ``pip install .``, pipx, an editable checkout), so nothing is read from beside
the source tree. No torch, no Qt."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

# A preset's data.path that starts with this names a file under data/ (resolved by
# workbench.io.paths.resolve_data_path), so a built-in preset's data is found anywhere.
DATA_PREFIX = "builtin:"


def root() -> Path:
    """This folder on disk. pip, pipx and wheels install packages as plain files, so
    importlib.resources gives a real path here; the workbench is never run from a zip."""
    return Path(str(resources.files(__name__)))


def presets_dir() -> Path:
    return root() / "presets"


def icon_path(name: str) -> Path:
    return root() / "icons" / f"{name}.svg"


def style_sheet() -> str:
    path = root() / "style.qss"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def data_dir() -> Path:
    return root() / "data"


def data_path(name: str) -> Path:
    """The shipped data file that ``builtin:NAME`` names (``name`` without the prefix)."""
    return data_dir() / name
