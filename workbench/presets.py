"""Built-in presets (read-only, in the project's presets/ folder) and preset lookup."""
from __future__ import annotations

from pathlib import Path

from workbench import spec
from workbench.spec import Preset, SpecError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "presets"


def builtin_paths() -> list[Path]:
    return sorted(BUILTIN_DIR.glob("*.json")) if BUILTIN_DIR.is_dir() else []


def builtin_names() -> list[str]:
    return [p.stem for p in builtin_paths()]


def load_builtin(name: str) -> Preset:
    return spec.load(BUILTIN_DIR / f"{name}.json")


def resolve(name_or_path: str) -> Preset:
    """A preset file path, or the name of a built-in preset."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists() or "/" in name_or_path or "\\" in name_or_path:
        return spec.load(path)
    if (BUILTIN_DIR / f"{name_or_path}.json").exists():
        return load_builtin(name_or_path)
    known = ", ".join(builtin_names())
    raise SpecError("", f"no preset file or built-in preset named {name_or_path!r} (built-in: {known})")
